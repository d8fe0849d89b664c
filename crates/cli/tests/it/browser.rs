//! The web UI in a real browser: headless Chromium (Debian's package) driven through
//! chromedriver, against a devnet. Screenshots of each page land in
//! `target/screenshots/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::harness::{Devnet, Process, wait_for};

const WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Chromedriver {
    _process: Process,
    port: u16,
    _profiles: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn chromedriver() -> Chromedriver {
    let exe = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "chromedriver is not installed (Debian package chromium-driver; .ci/run installs it)",
        );
    let port = free_port();
    let process = Process::spawn(
        Command::new(exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("start chromedriver");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/status");
    wait_for(WAIT, "chromedriver", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await
    .unwrap();
    Chromedriver {
        _process: process,
        port,
        _profiles: tempfile::tempdir().unwrap(),
    }
}

/// A fresh headless browser that reaches nothing but loopback.
pub(crate) async fn browser(cd: &Chromedriver, name: &str) -> Client {
    let profile = cd._profiles.path().join(name);
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--window-size=1000,900",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", cd.port))
        .await
        .expect("a browser session")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(name), png).unwrap();
}

/// Texts of the elements matching `css`.
async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
        out.push(e.text().await.unwrap_or_default());
    }
    out
}

pub(crate) async fn wait_text(c: &Client, css: &str, needle: &str) {
    wait_for(WAIT, &format!("{css} to show {needle:?}"), || async {
        texts(c, css).await.iter().any(|t| t.contains(needle))
    })
    .await
    .unwrap();
}

async fn post_in_ui(c: &Client, text: &str) {
    let box_ = c.find(Locator::Id("compose-body")).await.unwrap();
    box_.clear().await.unwrap();
    box_.send_keys(text).await.unwrap();
    c.find(Locator::Id("compose-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "#timeline .post .body", text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_posts_live_unfollows_reposts_and_refuses_long_posts() {
    let devnet = Devnet::start(&["--nodes", "3", "--post-ttl", "12s"]);
    let (alice, bob, carol) = (
        devnet.node("alice").clone(),
        devnet.node("bob").clone(),
        devnet.node("carol").clone(),
    );
    let cd = chromedriver().await;

    // Without the sign-in link there is no app, only directions.
    let stranger = browser(&cd, "stranger").await;
    stranger.goto(&alice.origin()).await.unwrap();
    wait_text(&stranger, "body", "use the link the node printed").await;
    assert!(stranger.find(Locator::Id("compose")).await.is_err());
    shot(&stranger, "00-sign-in-required.png").await;
    stranger.close().await.unwrap();

    let a = browser(&cd, "alice").await;
    let b = browser(&cd, "bob").await;
    a.goto(&alice.web_ui).await.unwrap();
    b.goto(&bob.web_ui).await.unwrap();
    for c in [&a, &b] {
        wait_text(c, "#live", "live").await;
    }
    assert_eq!(
        a.current_url().await.unwrap().path(),
        "/",
        "the token left the address bar"
    );
    wait_text(&a, "#me", "@alice").await;

    // alice posts in her UI; it appears in bob's open page without reload.
    post_in_ui(&a, "Hello from alice's browser").await;
    wait_text(&b, "#timeline .post .body", "Hello from alice's browser").await;
    wait_text(&b, "#timeline .post .who", "@alice").await;
    shot(&b, "01-bob-timeline-live.png").await;
    shot(&a, "02-alice-timeline.png").await;

    // bob unfollows alice on his People page.
    b.goto(&format!("{}/#/people", bob.origin())).await.unwrap();
    let row = format!(
        "#following li[data-peer='{}'] .unfollow-button",
        alice.peer_id
    );
    wait_for(WAIT, "alice in bob's following list", || async {
        b.find(Locator::Css(&row)).await.ok()
    })
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_text(&b, "#follow-message", "No longer following @alice").await;
    wait_for(WAIT, "alice to leave bob's list", || async {
        b.find(Locator::Css(&row)).await.is_err().then_some(())
    })
    .await
    .unwrap();
    shot(&b, "03-bob-people.png").await;

    // alice's next post reaches carol but not bob.
    b.goto(&format!("{}/#/timeline", bob.origin()))
        .await
        .unwrap();
    wait_text(&b, "#live", "live").await;
    post_in_ui(&a, "Posted after bob unfollowed").await;
    let carol_api = carol.client();
    wait_for(WAIT, "carol to receive it", || async {
        let tl: serde_json::Value = carol_api.get("/timeline").await.ok()?;
        tl["posts"]
            .as_array()?
            .iter()
            .any(|p| p["body"] == "Posted after bob unfollowed")
            .then_some(())
    })
    .await
    .unwrap();
    let bob_tl: serde_json::Value = bob.client().get("/timeline").await.unwrap();
    assert!(
        !bob_tl.to_string().contains("Posted after bob unfollowed"),
        "bob unfollowed alice but got her post"
    );
    assert!(
        !texts(&b, "#timeline .post .body")
            .await
            .iter()
            .any(|t| t.contains("after bob unfollowed"))
    );

    // A 281-character post is refused, visibly.
    let box_ = a.find(Locator::Id("compose-body")).await.unwrap();
    box_.send_keys(&"a".repeat(281)).await.unwrap();
    wait_text(
        &a,
        "#compose-error",
        "at most 280 characters; this one has 281",
    )
    .await;
    wait_text(&a, "#counter", "281 / 280").await;
    assert!(
        !a.find(Locator::Id("compose-submit"))
            .await
            .unwrap()
            .is_enabled()
            .await
            .unwrap()
    );
    shot(&a, "04-alice-too-long.png").await;
    box_.clear().await.unwrap();

    // The archive reposts an expired post (the devnet greeting expires after 12 s).
    a.goto(&format!("{}/#/archive", alice.origin()))
        .await
        .unwrap();
    let button = wait_for(
        Duration::from_secs(60),
        "an expired post in alice's archive",
        || async {
            if let Ok(b) = a.find(Locator::Css("#archive .repost-button")).await {
                return Some(b);
            }
            // Reload the page's list (expiry happens while we wait).
            let _ = a
                .execute(
                    "location.hash = '#/status'; location.hash = '#/archive';",
                    vec![],
                )
                .await;
            None
        },
    )
    .await
    .unwrap();
    shot(&a, "05-alice-archive.png").await;
    button.click().await.unwrap();
    wait_text(&a, "#archive-message", "Reposted #").await;
    a.goto(&format!("{}/#/timeline", alice.origin()))
        .await
        .unwrap();
    wait_text(&a, "#timeline .post .repost", "reposted #").await;
    shot(&a, "06-alice-timeline-repost.png").await;

    // The status panel.
    a.goto(&format!("{}/#/status", alice.origin()))
        .await
        .unwrap();
    wait_text(&a, "#status dd", "registered").await;
    wait_text(&a, "#status", "Peers connected").await;
    shot(&a, "07-alice-status.png").await;

    // Signing out (a POST from the page) ends the session: the app is gone, also
    // after a reload.
    a.find(Locator::Css("#logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&a, "body", "use the link the node printed").await;
    a.goto(&alice.origin()).await.unwrap();
    wait_text(&a, "body", "use the link the node printed").await;
    assert!(a.find(Locator::Id("compose")).await.is_err());
    shot(&a, "08-alice-signed-out.png").await;

    a.close().await.unwrap();
    b.close().await.unwrap();
    assert!(devnet.stop().await.success());
}
