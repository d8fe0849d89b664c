//! One node on its own: posting, timeline, expiry, archive, repost, durability, and
//! bad input, through the real binary and its HTTP API.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Profile, get_raw, post_raw, stderr, stdout, timeline, wait_for};
use reqwest::Method;
use starling_node::ProfileDir;

fn bodies(page: &Value) -> Vec<String> {
    page["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["body"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_timeline_expiry_archive_and_repost() {
    let alice = Profile::init("alice");
    // Long enough for the checks below (a CLI process each) on a loaded machine.
    let daemon = alice
        .up(&["--post-ttl", "10s", "--gc-interval", "1s"])
        .await;

    for text in ["first", "second", "third"] {
        let out = alice.cli(&["post", text]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).starts_with("Posted #"), "{}", stdout(&out));
    }
    let tl = alice.cli_json(&["timeline"]);
    assert_eq!(bodies(&tl), ["third", "second", "first"]);
    let seqs: Vec<u64> = tl["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2, 1]);
    assert_eq!(tl["posts"][0]["handle"], "alice");
    // Human output lists them newest first too.
    let text = stdout(&alice.cli(&["timeline"]));
    let (i3, i1) = (text.find("third").unwrap(), text.find("first").unwrap());
    assert!(i3 < i1, "{text}");

    // Paging with the cursor.
    let page1 = alice.cli_json(&["timeline", "--limit", "2"]);
    assert_eq!(bodies(&page1), ["third", "second"]);
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let page2 = alice.cli_json(&["timeline", "--limit", "2", "--before", &cursor]);
    assert_eq!(bodies(&page2), ["first"]);

    // After the 10 s lifetime the posts leave the timeline and fill the archive.
    wait_for(Duration::from_secs(60), "posts to expire", || async {
        bodies(&alice.cli_json(&["timeline"])).is_empty()
    })
    .await
    .unwrap();
    let archive = alice.cli_json(&["archive"]);
    assert_eq!(bodies(&archive), ["third", "second", "first"]);
    assert!(stdout(&alice.cli(&["archive"])).contains("starling repost 1"));

    // Repost #2: a new post (seq 4) naming the original, back in the timeline.
    let rp = alice.cli_json(&["repost", "2"]);
    assert_eq!(rp["seq"], 4);
    assert_eq!(rp["body"], "second");
    assert_eq!(rp["repost_of"]["seq"], 2);
    let tl = alice.cli_json(&["timeline"]);
    assert_eq!(bodies(&tl), ["second"]);
    assert_eq!(tl["posts"][0]["seq"], 4);
    assert!(stdout(&alice.cli(&["timeline"])).contains("reposted from #2"));

    // A post that is not archived (#4 is live) or does not exist cannot be reposted.
    let out = alice.cli(&["repost", "4"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has not expired yet"),
        "{}",
        stderr(&out)
    );
    let out = alice.cli(&["repost", "99"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not in your archive"),
        "{}",
        stderr(&out)
    );

    let st = alice.cli_json(&["status"]);
    assert_eq!(st["head_seq"], 4);
    assert_eq!(st["handle"], "alice");
    assert!(st["store"]["disk_bytes"].as_u64().unwrap() > 0, "{st}");
    let text = stdout(&alice.cli(&["status"]));
    assert!(
        text.contains("MiB on disk; keeps at most 10000 posts per followed user"),
        "{text}"
    );
    let who = alice.cli_json(&["whoami"]);
    assert!(who["peer_id"].as_str().unwrap().starts_with("12D3KooW"));

    assert!(daemon.stop().await.unwrap().success());
    // Stopped cleanly: the endpoint file is gone and clients say so.
    let out = alice.cli(&["timeline"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no daemon running for this profile"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_posts_survive_kill_9() {
    let alice = Profile::init("alice");
    let daemon = alice.up(&[]).await;
    let api = daemon.client().clone();

    // 500 posts, 10 in flight at a time (so the writer batches them), each
    // acknowledged before the next of its lane.
    let mut lanes = Vec::new();
    for lane in 0..10 {
        let api = api.clone();
        lanes.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..50 {
                let body = json!({ "body": format!("post {lane}-{i}") });
                let (s, v) = api.raw(Method::POST, "/posts", Some(&body)).await.unwrap();
                assert_eq!(s, 201, "{v}");
                acked.push(v["seq"].as_u64().unwrap());
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for l in lanes {
        acked.extend(l.await.unwrap());
    }
    daemon.kill(); // right after the last acknowledgement
    acked.sort();
    assert_eq!(acked, (1..=500).collect::<Vec<u64>>());

    // The database on disk: sound, and holding all 500.
    let db = rusqlite::Connection::open(ProfileDir::new(&alice.dir).db_path()).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let n: i64 = db
        .query_row("SELECT count(*) FROM posts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 500);
    drop(db);

    // Restarted, the node serves them all and continues the sequence.
    let daemon = alice.up(&[]).await;
    let st = daemon.get("/status").await.unwrap();
    assert_eq!(st["posts_stored"], 500);
    assert_eq!(st["head_seq"], 500);
    let (s, p) = post_raw(&daemon, "/posts", &json!({ "body": "after the crash" })).await;
    assert_eq!(s, 201);
    assert_eq!(p["seq"], 501);
    assert_eq!(timeline(&daemon).await.len(), 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_daemon_keeps_serving() {
    // A bad handle, at init.
    let tmp = tempfile::tempdir().unwrap();
    for (bad, expect) in [
        ("Al", "only lowercase a-z"),
        ("a", "too short"),
        ("al-ice", "only lowercase a-z"),
    ] {
        let out = std::process::Command::new(crate::harness::BIN)
            .args(["--data-dir"])
            .arg(tmp.path().join("x"))
            .args(["init", "--name", bad])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expect), "{bad}: {}", stderr(&out));
    }
    let long = "x".repeat(41);
    let out = std::process::Command::new(crate::harness::BIN)
        .arg("--data-dir")
        .arg(tmp.path().join("y"))
        .args(["init", "--name", &long])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("41 characters long"),
        "{}",
        stderr(&out)
    );

    let alice = Profile::init("alice");
    // An existing profile.
    let out = alice.cli(&["init", "--name", "alice"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    // No daemon yet.
    let out = alice.cli(&["post", "hello"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no daemon running"),
        "{}",
        stderr(&out)
    );

    let daemon = alice.up(&[]).await;
    // A second daemon on the same profile is refused.
    let out = alice.cli(&["up", "--api-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    // A daemon that cannot start is reported with the end of its log.
    let bob = Profile::init("bob");
    let Err(e) = bob.try_up(&["--bootstrap", "nowhere"]).await else {
        panic!("a daemon with a bad --bootstrap started");
    };
    let e = format!("{e:#}");
    assert!(
        e.contains("exited") && e.contains("is not a multiaddr"),
        "{e}"
    );

    // Empty and 281-character posts, through the CLI and the API.
    let out = alice.cli(&["post", ""]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("a post cannot be empty"));
    let out = alice.cli(&["post", &"a".repeat(281)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("at most 280 characters; this one has 281"),
        "{}",
        stderr(&out)
    );
    let (s, v) = post_raw(&daemon, "/posts", &json!({"body": "   "})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("empty_body")));
    let (s, v) = post_raw(&daemon, "/posts", &json!({"body": "é".repeat(281)})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("body_too_long"))
    );

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |p: &str| format!("{}{p}", daemon.url());
    // Missing and wrong tokens.
    let r = http
        .post(url("/api/v1/posts"))
        .json(&json!({"body": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing API token")
    );
    let r = http
        .get(url("/api/v1/timeline"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A foreign Host header (DNS rebinding), even with the token.
    let r = http
        .get(url("/api/v1/whoami"))
        .bearer_auth(daemon.token())
        .header("Host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Malformed JSON, a wrong field, a wrong content type, an oversized body.
    for (body, ctype) in [
        ("{\"body\": ", "application/json"),
        ("{\"text\": \"hi\"}", "application/json"),
        ("{\"body\": \"hi\"}", "text/plain"),
    ] {
        let r = http
            .post(url("/api/v1/posts"))
            .bearer_auth(daemon.token())
            .header("Content-Type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert!((400..500).contains(&status), "{body}: {status} {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = http
        .post(url("/api/v1/posts"))
        .bearer_auth(daemon.token())
        .header("Content-Type", "application/json")
        .body(format!("{{\"body\": \"{}\"}}", "a".repeat(100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Bad paging parameters and an unknown route.
    let (s, v) = get_raw(&daemon, "/timeline?before=garbage").await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid cursor")
    );
    let (s, _) = get_raw(&daemon, "/timeline?limit=0").await;
    assert_eq!(s, 400);
    let (s, _) = get_raw(&daemon, "/timeline?limit=abc").await;
    assert_eq!(s, 400);
    let (s, _) = post_raw(&daemon, "/archive/abc/repost", &json!({})).await;
    assert_eq!(s, 400);
    let (s, _) = get_raw(&daemon, "/nope").await;
    assert_eq!(s, 404);

    // Through all of it the daemon kept serving.
    let (s, p) = post_raw(&daemon, "/posts", &json!({"body": "still here"})).await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["seq"], 1);
    assert_eq!(bodies(&alice.cli_json(&["timeline"])), ["still here"]);
}

/// A user's page through the API, on a node of its own: itself by handle, `@handle`
/// or key; a key it knows nothing of; and every bad request a clear 4xx, the limit
/// checked before anything is looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_pages_by_handle_or_key_and_clear_errors() {
    let alice = Profile::init("alice");
    let d = alice.up(&["--offline"]).await;
    let me = d.author().to_string();
    for body in ["older", "newer"] {
        d.post("/posts", &json!({ "body": body })).await.unwrap();
    }
    for target in ["alice", "%40alice", me.as_str()] {
        let (s, u) = get_raw(&d, &format!("/users/{target}")).await;
        assert_eq!(s, 200, "{target}: {u}");
        assert_eq!(u["peer_id"], me.as_str());
        assert_eq!(u["handle"], "alice");
        assert_eq!(u["fingerprint"], d.author().fingerprint());
        assert_eq!(
            (&u["me"], &u["following"], &u["pending"], &u["follows_me"]),
            (&json!(true), &json!(false), &json!(false), &json!(false))
        );
        let (s, page) = get_raw(&d, &format!("/users/{target}/posts?limit=1")).await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(bodies(&page), ["newer"]);
        let cursor = page["next_cursor"].as_str().unwrap();
        let (_, page) = get_raw(
            &d,
            &format!("/users/{target}/posts?limit=500&before={cursor}"),
        )
        .await;
        assert_eq!(bodies(&page), ["older"]);
        assert!(page["next_cursor"].is_null());
    }

    // Someone known only by key: no handle (the network is off: nobody to ask), no
    // relation, no posts here.
    let bob = starling_node::Profile::open(&Profile::init("bob").dir)
        .unwrap()
        .identity
        .author();
    let (s, u) = get_raw(&d, &format!("/users/{bob}")).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(
        (&u["handle"], &u["me"], &u["following"], &u["follows_me"]),
        (&Value::Null, &json!(false), &json!(false), &json!(false))
    );
    assert_eq!(u["fingerprint"], bob.fingerprint());
    let (s, page) = get_raw(&d, &format!("/users/{bob}/posts")).await;
    assert_eq!(s, 200);
    assert!(bodies(&page).is_empty());

    // Neither a handle nor a key.
    for bad in [
        "Alice",
        "a",
        "al-ice",
        "%F0%9F%90%A6",
        &"x".repeat(41),
        "12D3KooWnotakey",
    ] {
        for path in [format!("/users/{bad}"), format!("/users/{bad}/posts")] {
            let (s, v) = get_raw(&d, &path).await;
            assert_eq!(
                (s, v["error"]["code"].as_str()),
                (422, Some("bad_target")),
                "{path}: {v}"
            );
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("neither a handle"),
                "{v}"
            );
        }
    }
    // A path that is not UTF-8.
    let (s, v) = get_raw(&d, "/users/%FF").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    // Pages: 1-500 posts, a cursor the node made; checked first.
    for q in [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=many",
        "before=nonsense",
    ] {
        for target in ["alice", "Not_a_handle"] {
            let (s, v) = get_raw(&d, &format!("/users/{target}/posts?{q}")).await;
            assert_eq!(
                (s, v["error"]["code"].as_str()),
                (400, Some("bad_request")),
                "{q}: {v}"
            );
        }
    }
    let (_, v) = get_raw(&d, "/users/alice/posts?limit=501").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 500"),
        "{v}"
    );
    // A handle never seen, while the network is off: it cannot be looked up now.
    let (s, v) = get_raw(&d, "/users/nobody_seen").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("network")),
        "{v}"
    );

    // The document states the limits.
    let doc = crate::harness::openapi(&d).await;
    let op = &doc["paths"]["/api/v1/users/{target}/posts"]["get"];
    let limit = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(
        (
            limit["schema"]["minimum"].as_f64(),
            limit["schema"]["maximum"].as_f64()
        ),
        (Some(1.0), Some(500.0)),
        "{limit}"
    );
    for op in [op, &doc["paths"]["/api/v1/users/{target}"]["get"]] {
        for (status, r) in op["responses"].as_object().unwrap() {
            assert!(
                !r["description"].as_str().unwrap_or("").is_empty(),
                "{status} has no description"
            );
        }
    }
    d.stop().await.unwrap();
}
