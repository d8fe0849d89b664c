//! The local API's secrets, attacked the way a local program or a web page would:
//! the session cookie, a stale `api.json` after `kill -9`, logout, the error shape of
//! every status, the Host check on another loopback address, and the profile's file
//! permissions.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reqwest::header::{CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};
use starling_node::{Endpoint, ProfileDir};

use crate::harness::{Profile, stderr};

/// A client that shows redirects instead of following them, one connection per
/// request (the daemon may close one after an error, e.g. a body too large).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in with the token: the cookie set, as `(name, value)`.
async fn sign_in(url: &str, token: &str) -> (String, String) {
    let r = http()
        .get(format!("{url}/login?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "sign-in redirects");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let (name, rest) = set.split_once('=').unwrap();
    let value = rest.split(';').next().unwrap();
    (name.to_string(), value.to_string())
}

/// `GET /api/v1/whoami` with only a cookie: its status.
async fn whoami_with_cookie(url: &str, cookie: &(String, String)) -> u16 {
    http()
        .get(format!("{url}/api/v1/whoami"))
        .header(COOKIE, format!("{}={}", cookie.0, cookie.1))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Asserts the answer has `status` and the JSON error shape; returns its code.
async fn json_error(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status, "{r:?}");
    let ctype = r.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
    assert_eq!(ctype, "application/json", "{status}");
    let v: Value = r.json().await.unwrap();
    let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(!code.is_empty() && !message.is_empty(), "{status}: {v}");
    code
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_is_its_own_secret_per_profile_and_logout_is_a_post() {
    let alice = Profile::init("alice");
    let bob = Profile::init("bob");
    let a = alice.up(&["--offline"]).await;
    let b = bob.up(&["--offline"]).await;

    let ca = sign_in(a.url(), a.token()).await;
    let cb = sign_in(b.url(), b.token()).await;
    // The cookie is not the token, and the two profiles' cookies (which the browser
    // sends to every port of 127.0.0.1) neither collide nor open each other's API.
    assert_ne!(ca.1, a.token());
    assert_ne!(cb.1, b.token());
    assert_ne!(ca.0, cb.0, "one cookie name per daemon");
    assert_ne!(ca.1, cb.1);
    assert_eq!(whoami_with_cookie(a.url(), &ca).await, 200);
    assert_eq!(whoami_with_cookie(b.url(), &cb).await, 200);
    assert_eq!(
        whoami_with_cookie(b.url(), &(cb.0.clone(), ca.1.clone())).await,
        401
    );
    // The token itself is no session.
    assert_eq!(
        whoami_with_cookie(a.url(), &(ca.0.clone(), a.token().into())).await,
        401
    );

    // Logout is not a GET (an <img src=/logout> cannot sign anyone out).
    let r = http()
        .get(format!("{}/logout", a.url()))
        .header(COOKIE, format!("{}={}", ca.0, ca.1))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r, 405).await, "method_not_allowed");
    assert_eq!(whoami_with_cookie(a.url(), &ca).await, 200);
    // Nor may another site post it.
    let r = http()
        .post(format!("{}/logout", a.url()))
        .header(COOKIE, format!("{}={}", ca.0, ca.1))
        .header(ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(r, 403).await, "forbidden_origin");
    assert_eq!(whoami_with_cookie(a.url(), &ca).await, 200);
    // POST signs out: the cookie is cleared, and the session is over on the daemon
    // too (a copy of the cookie taken before is worth nothing).
    let r = http()
        .post(format!("{}/logout", a.url()))
        .header(COOKIE, format!("{}={}", ca.0, ca.1))
        .header(ORIGIN, a.url())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/");
    let cleared = r.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with(&format!("{}=;", ca.0)) && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(whoami_with_cookie(a.url(), &ca).await, 401);
    assert_eq!(
        whoami_with_cookie(b.url(), &cb).await,
        200,
        "bob is still signed in"
    );

    // Sessions are bounded: the oldest of 17 sign-ins is forgotten.
    let first = sign_in(a.url(), a.token()).await;
    let mut last = first.clone();
    for _ in 0..16 {
        last = sign_in(a.url(), a.token()).await;
    }
    assert_eq!(whoami_with_cookie(a.url(), &first).await, 401);
    assert_eq!(whoami_with_cookie(a.url(), &last).await, 200);
    let log = std::fs::read_to_string(ProfileDir::new(&alice.dir).log_path()).unwrap();
    assert!(
        log.contains("sessions_dropped=1"),
        "the bound is counted: {log}"
    );

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Web sessions outlive a restart of the daemon on the same address (they are kept
/// in the profile, for its owner only); one that signed out stays out, and a
/// daemon on another port knows none of them (its cookie has another name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_sessions_survive_a_restart_and_signing_out_survives_it_too() {
    let alice = Profile::init("alice");
    let dir = ProfileDir::new(&alice.dir);
    let api_addr = format!("127.0.0.1:{}", crate::harness::free_fixed_port());
    let args = ["--offline", "--api-addr", api_addr.as_str()];
    let a = alice.up(&args).await;
    let stays = sign_in(a.url(), a.token()).await;
    let leaves = sign_in(a.url(), a.token()).await;
    let r = http()
        .post(format!("{}/logout", a.url()))
        .header(COOKIE, format!("{}={}", leaves.0, leaves.1))
        .header(ORIGIN, a.url())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(mode(&dir.sessions_path()), 0o600);
    let kept = std::fs::read_to_string(dir.sessions_path()).unwrap();
    assert!(
        kept.contains(&stays.1) && !kept.contains(&leaves.1),
        "{kept}"
    );
    assert!(!kept.contains(a.token()), "the token is no session");

    let url = a.url().to_string();
    a.stop().await.unwrap();
    let a = alice.up(&args).await;
    assert_eq!(a.url(), url, "the same address");
    assert_eq!(whoami_with_cookie(a.url(), &stays).await, 200);
    assert_eq!(whoami_with_cookie(a.url(), &leaves).await, 401);
    // A kill -9 loses nothing either: every sign-in was written when it happened.
    let again = sign_in(a.url(), a.token()).await;
    a.kill();
    let a = alice.up(&args).await;
    assert_eq!(whoami_with_cookie(a.url(), &again).await, 200);
    assert_eq!(whoami_with_cookie(a.url(), &stays).await, 200);
    a.stop().await.unwrap();

    // On another port, the cookie the browser holds has the old port's name.
    let b = alice.up(&["--offline"]).await;
    assert_ne!(b.url(), url);
    assert_eq!(whoami_with_cookie(b.url(), &stays).await, 401);
    b.stop().await.unwrap();
}

/// A listener standing in for whatever program took a dead daemon's port.
struct Impostor {
    listener: TcpListener,
}

impl Impostor {
    fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Self { listener }
    }

    fn url(&self) -> String {
        format!("http://{}", self.listener.local_addr().unwrap())
    }

    /// Everything received so far, once the clients that connected have exited:
    /// (connections, bytes).
    fn received(&self) -> (usize, Vec<u8>) {
        let (mut conns, mut bytes) = (0, Vec::new());
        while let Ok((mut s, _)) = self.listener.accept() {
            conns += 1;
            s.set_nonblocking(false).unwrap();
            // The client is gone: what it sent is buffered, then end of stream.
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let _ = s.read_to_end(&mut bytes);
        }
        (conns, bytes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_endpoint_after_kill_never_gets_the_token() {
    let alice = Profile::init("alice");
    let dir = ProfileDir::new(&alice.dir);
    let daemon = alice.up(&["--offline"]).await;
    let (token, pid) = (daemon.token().to_string(), daemon.pid());
    daemon.kill();
    let stale = dir.endpoint().expect("kill -9 leaves api.json behind");
    assert_eq!(stale.pid, pid);

    // Another program now listens where api.json points.
    let impostor = Impostor::bind();
    dir.write_endpoint(&Endpoint {
        url: impostor.url(),
        pid,
    })
    .unwrap();
    for args in [
        &["post", "secret plans"][..],
        &["status"][..],
        &["--json", "ui"][..],
    ] {
        let out = alice.cli(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains("no daemon running for this profile"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let (conns, bytes) = impostor.received();
    let leaked = String::from_utf8_lossy(&bytes).contains(&token);
    assert_eq!(
        (conns, leaked),
        (0, false),
        "{}",
        String::from_utf8_lossy(&bytes)
    );

    // A daemon started again takes over, and clients find it.
    let daemon = alice.up(&["--offline"]).await;
    let out = alice.cli(&["post", "back again"]);
    assert!(out.status.success(), "{}", stderr(&out));
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status_has_the_json_shape() {
    let alice = Profile::init("alice");
    let d = alice.up(&["--offline"]).await;
    let (url, token) = (d.url().to_string(), d.token().to_string());
    let c = http();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (c.get(format!("{url}/nope")), 404, "not_found"),
        (
            c.get(format!("{url}/api/v1/nope")).bearer_auth(&token),
            404,
            "not_found",
        ),
        (
            c.get(format!("{url}/api/v1/posts")).bearer_auth(&token),
            405,
            "method_not_allowed",
        ),
        (
            c.delete(format!("{url}/api/v1/timeline"))
                .bearer_auth(&token),
            405,
            "method_not_allowed",
        ),
        (c.post(format!("{url}/app.js")), 405, "method_not_allowed"),
        (c.get(format!("{url}/logout")), 405, "method_not_allowed"),
        (c.get(format!("{url}/api/v1/whoami")), 401, "unauthorized"),
        (
            c.get(format!("{url}/api/v1/whoami"))
                .bearer_auth(&token)
                .header(HOST, "evil.example"),
            403,
            "forbidden_host",
        ),
        // Rejections axum makes before any handler runs.
        (
            c.get(format!("{url}/login?token=a&token=b")),
            400,
            "bad_request",
        ),
        (
            c.post(format!("{url}/api/v1/archive/%FF/repost"))
                .bearer_auth(&token)
                .json(&json!({})),
            400,
            "bad_request",
        ),
        (
            c.post(format!("{url}/api/v1/posts"))
                .bearer_auth(&token)
                .header(CONTENT_TYPE, "text/plain")
                .body("{\"body\": \"hi\"}"),
            415,
            "unsupported_media_type",
        ),
        (
            c.post(format!("{url}/api/v1/posts"))
                .bearer_auth(&token)
                .header(CONTENT_TYPE, "application/json")
                .body(format!("{{\"body\": \"{}\"}}", "a".repeat(100_000))),
            413,
            "too_large",
        ),
    ];
    for (req, status, code) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(json_error(r, status).await, code, "{status}");
    }
    // The 405 still names the methods allowed.
    let r = c
        .get(format!("{url}/api/v1/posts"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    d.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_another_loopback_address() {
    let alice = Profile::init("alice");
    let d = alice.up(&["--offline", "--api-addr", "127.0.0.2:0"]).await;
    assert!(d.url().starts_with("http://127.0.0.2:"), "{}", d.url());
    // The kit, the CLI and the web sign-in all reach it.
    assert_eq!(d.get("/whoami").await.unwrap()["handle"], "alice");
    let out = alice.cli(&["post", "from 127.0.0.2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cookie = sign_in(d.url(), d.token()).await;
    assert_eq!(whoami_with_cookie(d.url(), &cookie).await, 200);
    // Names it is not reached by are still refused.
    let port = d.url().rsplit(':').next().unwrap().to_string();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "127.0.0.2".into(),
    ] {
        let r = http()
            .get(format!("{}/api/v1/whoami", d.url()))
            .bearer_auth(d.token())
            .header(HOST, host.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(json_error(r, 403).await, "forbidden_host", "{host}");
    }
    d.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("alice");
    // A directory made beforehand with the usual 0755.
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .env_remove("STARLING_DATA_DIR")
        .env_remove("STARLING_PROFILE")
        .arg("--data-dir")
        .arg(&path)
        .args(["init", "--name", "alice"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&path), 0o700, "init tightens the directory");
    let alice = Profile::at(&path);
    let dir = ProfileDir::new(&path);
    let db = dir.db_path();
    let wal = path.join("starling.db-wal");
    let shm = path.join("starling.db-shm");

    let d = alice.up(&["--offline"]).await;
    let out = alice.cli(&["post", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for p in [&db, &wal, &shm, &dir.log_path()] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    d.stop().await.unwrap();

    // An older profile: directory 0755, database 0644. Starting fixes both.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = alice.up(&["--offline"]).await;
    let out = alice.cli(&["post", "hello again"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&path), 0o700);
    for p in [&db, &wal, &shm] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    d.stop().await.unwrap();
}
