//! The web UI in a real browser: headless Chromium (Debian's package) driven through
//! chromedriver, against a devnet or a daemon of its own. Screenshots of each page
//! land in `target/screenshots/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::harness::{Devnet, Process, Profile, free_fixed_port, wait_for};

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

/// Types `keys` as a person would, into whatever has the focus.
async fn press(c: &Client, keys: &str) {
    let mut typed = KeyActions::new("keyboard".into());
    for ch in keys.chars() {
        typed = typed
            .then(KeyAction::Down { value: ch })
            .then(KeyAction::Up { value: ch });
    }
    c.perform_actions(typed).await.unwrap();
}

/// The value of a script run in the page.
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// The part of the address after `#`.
async fn fragment(c: &Client) -> String {
    c.current_url()
        .await
        .unwrap()
        .fragment()
        .unwrap_or("")
        .to_string()
}

async fn wait_fragment(c: &Client, want: &str) {
    wait_for(WAIT, &format!("the address to end in #{want}"), || async {
        fragment(c).await == want
    })
    .await
    .unwrap();
}

/// Whether the element with this id is shown (present and not hidden).
async fn shown(c: &Client, id: &str) -> bool {
    match c.find(Locator::Id(id)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// The key of the post the keyboard selected (and focused), if any.
async fn selected_post(c: &Client) -> Option<String> {
    js(
        c,
        "const a = document.activeElement; \
         return a && a.matches('li.post.selected') ? a.dataset.key : null;",
    )
    .await
    .as_str()
    .map(String::from)
}

/// The keys (`author/seq`) of the posts in a list, top to bottom.
async fn post_keys(c: &Client, list: &str) -> Vec<String> {
    let v = js(
        c,
        &format!(
            "return [...document.querySelectorAll('#{list} > li.post')].map((li) => li.dataset.key);"
        ),
    )
    .await;
    serde_json::from_value(v).unwrap()
}

/// An XPath to the `li` of the post with this exact text (no quotes in it) in a list.
fn post_with(list: &str, body: &str) -> String {
    format!(
        "//ol[@id='{list}']/li[contains(@class, 'post')][div[contains(@class, 'body')][. = '{body}']]"
    )
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

/// Whether the node behind `api` follows `key` (by its own `/following`).
async fn follows(api: &starling_cli::kit::Client, key: &str) -> bool {
    let list: Value = api.get("/following").await.unwrap();
    list.as_array().unwrap().iter().any(|f| f["peer_id"] == key)
}

async fn wait_follows(api: &starling_cli::kit::Client, key: &str, want: bool) {
    wait_for(WAIT, &format!("following {key} to be {want}"), || async {
        follows(api, key).await == want
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_pages_from_handle_links_follow_buttons_ticking_times_and_shortcuts() {
    let devnet = Devnet::start(&["--nodes", "3"]);
    let (alice, bob, carol) = (
        devnet.node("alice").clone(),
        devnet.node("bob").clone(),
        devnet.node("carol").clone(),
    );
    let (alice_api, bob_api, carol_api) = (alice.client(), bob.client(), carol.client());
    // Everyone follows everyone in a devnet: alice stops following carol, so that
    // carol's page has something to offer her.
    alice_api
        .post::<Value, _>("/unfollow", &json!({"target": carol.peer_id}))
        .await
        .unwrap();
    let carols = "carol was here before alice came back";
    carol_api
        .post::<Value, _>("/posts", &json!({"body": carols}))
        .await
        .unwrap();
    let mention = "Say hello to @carol, everyone";
    bob_api
        .post::<Value, _>("/posts", &json!({"body": mention}))
        .await
        .unwrap();
    let cd = chromedriver().await;
    let a = browser(&cd, "alice-pages").await;
    a.goto(&alice.web_ui).await.unwrap();
    wait_text(&a, "#live", "live").await;
    wait_text(&a, "#timeline .post .body", mention).await;

    // The mention in bob's post is a link to carol's page; the rest is plain text.
    let bobs_post = post_with("timeline", mention);
    let link = a
        .find(Locator::XPath(&format!(
            "{bobs_post}//a[contains(@class, 'mention')]"
        )))
        .await
        .unwrap();
    assert_eq!(link.text().await.unwrap(), "@carol");
    assert_eq!(
        a.find_all(Locator::XPath(&format!(
            "{bobs_post}//div[contains(@class, 'body')]/*"
        )))
        .await
        .unwrap()
        .len(),
        1,
        "only the mention is an element"
    );
    link.click().await.unwrap();
    wait_fragment(&a, "/u/carol").await;
    wait_text(&a, "#user-title", "@carol").await;
    let carol_me: Value = carol_api.get("/whoami").await.unwrap();
    wait_text(
        &a,
        "#user-fingerprint",
        carol_me["fingerprint"].as_str().unwrap(),
    )
    .await;
    wait_text(&a, "#user-key", &carol.peer_id).await;
    wait_text(&a, "#user-badges", "Follows you").await;
    wait_text(&a, "#user-relation", "You do not follow @carol").await;
    wait_text(&a, "#user-note", "follow @carol to see theirs").await;
    let button = a.find(Locator::Id("user-follow")).await.unwrap();
    assert_eq!(button.text().await.unwrap(), "Follow");
    assert!(texts(&a, "#user-posts .post").await.is_empty());
    shot(&a, "user-page-not-following.png").await;

    // Follow, from her page: really followed, and her posts come to the open page.
    button.click().await.unwrap();
    wait_follows(&alice_api, &carol.peer_id, true).await;
    wait_text(&a, "#user-follow", "Unfollow").await;
    wait_text(&a, "#user-message", "You follow @carol").await;
    wait_text(&a, "#user-posts .post .body", carols).await;
    assert!(!shown(&a, "user-note").await);
    for who in texts(&a, "#user-posts .post .who").await {
        assert_eq!(who, "@carol", "only carol's posts on her page");
    }
    let seen: Value = alice_api.get("/users/carol").await.unwrap();
    assert_eq!(
        (&seen["peer_id"], &seen["following"], &seen["follows_me"]),
        (&json!(carol.peer_id), &json!(true), &json!(true))
    );
    wait_text(&a, "#user-badges", "Following").await;
    shot(&a, "user-page.png").await;

    // The author of a post links to their page too; unfollow and follow again there.
    press(&a, "gh").await;
    wait_fragment(&a, "/timeline").await;
    wait_text(&a, "#timeline .post .body", mention).await;
    a.find(Locator::XPath(&format!(
        "{bobs_post}//a[contains(@class, 'who')]"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_fragment(&a, &format!("/u/{}", bob.peer_id)).await;
    wait_text(&a, "#user-title", "@bob").await;
    wait_text(&a, "#user-posts .post .body", mention).await;
    wait_text(&a, "#user-follow", "Unfollow").await;
    a.find(Locator::Id("user-follow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_follows(&alice_api, &bob.peer_id, false).await;
    wait_text(&a, "#user-follow", "Follow").await;
    wait_text(&a, "#user-message", "no longer follow @bob").await;
    // The page reloads the list after the button and the message.
    wait_for(WAIT, "bob's posts to leave his page", || async {
        texts(&a, "#user-posts .post")
            .await
            .is_empty()
            .then_some(())
    })
    .await
    .unwrap();
    a.find(Locator::Id("user-follow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_follows(&alice_api, &bob.peer_id, true).await;
    wait_text(&a, "#user-posts .post .body", mention).await;

    // Relative times move on by themselves; the exact time is in the tooltip.
    press(&a, "gh").await;
    wait_fragment(&a, "/timeline").await;
    let fresh = "What time is it";
    post_in_ui(&a, fresh).await;
    let time = format!("{}//time", post_with("timeline", fresh));
    let t = a.find(Locator::XPath(&time)).await.unwrap();
    assert_eq!(t.text().await.unwrap(), "just now");
    let posted: Value = alice_api.get("/timeline?limit=1").await.unwrap();
    let ts_ms = posted["posts"][0]["ts_ms"].as_u64().unwrap();
    let datetime = t.attr("datetime").await.unwrap().unwrap();
    let at = humantime::parse_rfc3339(&datetime).unwrap();
    assert_eq!(
        at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
        ts_ms
    );
    let title = t.attr("title").await.unwrap().unwrap();
    assert!(title.contains(':'), "the exact time: {title}");
    let later = wait_for(WAIT, "the post's time to read \"N s ago\"", || async {
        let text = a
            .find(Locator::XPath(&time))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let secs: u64 = text.strip_suffix(" s ago")?.parse().ok()?;
        Some((text, secs))
    })
    .await
    .unwrap();
    let age = SystemTime::now().duration_since(at).unwrap().as_secs();
    assert!(
        (10..=age + 1).contains(&later.1),
        "{later:?} for a post {age} s old"
    );

    // Keyboard: ? shows the shortcuts, Esc closes them.
    press(&a, "?").await;
    wait_for(WAIT, "the shortcuts to open", || async {
        js(&a, "return document.getElementById('shortcuts').open").await == json!(true)
    })
    .await
    .unwrap();
    wait_text(&a, "#shortcuts", "Next / previous post").await;
    shot(&a, "keyboard-help.png").await;
    press(&a, &char::from(Key::Escape).to_string()).await;
    wait_for(WAIT, "the shortcuts to close", || async {
        js(&a, "return document.getElementById('shortcuts').open").await == json!(false)
    })
    .await
    .unwrap();
    // j and k move through the posts.
    let keys = post_keys(&a, "timeline").await;
    assert!(keys.len() >= 3, "{keys:?}");
    press(&a, "j").await;
    assert_eq!(selected_post(&a).await.as_ref(), Some(&keys[0]));
    press(&a, "jj").await;
    assert_eq!(selected_post(&a).await.as_ref(), Some(&keys[2]));
    press(&a, "k").await;
    assert_eq!(selected_post(&a).await.as_ref(), Some(&keys[1]));
    shot(&a, "keyboard-selection.png").await;
    // o opens the selected post's author.
    let author = keys[1].split('/').next().unwrap().to_string();
    press(&a, "o").await;
    wait_fragment(&a, &format!("/u/{author}")).await;
    // g u: one's own page.
    press(&a, "gu").await;
    wait_fragment(&a, &format!("/u/{}", alice.peer_id)).await;
    wait_text(&a, "#user-title", "@alice").await;
    wait_text(&a, "#user-relation", "This is you").await;
    assert!(!shown(&a, "user-follow").await, "no following oneself");
    // g p: People.
    press(&a, "gp").await;
    wait_fragment(&a, "/people").await;
    // n: the compose box, on the timeline; keys typed there are text, not shortcuts.
    press(&a, "n").await;
    wait_fragment(&a, "/timeline").await;
    let active = || async { js(&a, "return document.activeElement.id").await };
    assert_eq!(active().await, json!("compose-body"));
    press(&a, "jk?gp").await;
    assert_eq!(
        js(&a, "return document.getElementById('compose-body').value").await,
        json!("jk?gp")
    );
    assert_eq!(fragment(&a).await, "/timeline");
    assert_eq!(
        js(&a, "return document.getElementById('shortcuts').open").await,
        json!(false)
    );
    // Esc leaves the box; shortcuts work again.
    press(&a, &char::from(Key::Escape).to_string()).await;
    assert_ne!(active().await, json!("compose-body"));
    press(&a, "j").await;
    assert!(selected_post(&a).await.is_some());

    a.close().await.unwrap();
    assert!(devnet.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_when_its_node_goes_away_and_comes_back_signed_in() {
    let alice = Profile::init("alice");
    // The browser's session cookie is named after the port: the node comes back on
    // the same one, as a user's node does (127.0.0.1:7420 by default).
    let api_addr = format!("127.0.0.1:{}", free_fixed_port());
    let args = ["--offline", "--api-addr", api_addr.as_str()];
    let mut daemon = Some(alice.up(&args).await);
    let d = daemon.as_ref().unwrap();
    let cd = chromedriver().await;
    let c = browser(&cd, "alice-restarts").await;
    c.goto(&format!("{}/login?token={}", d.url(), d.token()))
        .await
        .unwrap();
    wait_text(&c, "#live", "live").await;
    post_in_ui(&c, "Before the restart").await;
    assert!(!shown(&c, "conn-lost").await && !shown(&c, "conn-back").await);
    // The session is kept in the profile, for the owner only.
    let sessions = starling_node::ProfileDir::new(&alice.dir).sessions_path();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&sessions).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    for how in ["stopped", "killed"] {
        let old = daemon.take().unwrap();
        match how {
            "stopped" => assert!(old.stop().await.unwrap().success()),
            _ => old.kill(),
        }
        wait_text(
            &c,
            "#conn-lost",
            "Lost the connection to your Starling node",
        )
        .await;
        assert!(shown(&c, "conn-lost").await);
        wait_text(&c, "#live", "offline").await;
        // What is tried meanwhile fails, and says why.
        let box_ = c.find(Locator::Id("compose-body")).await.unwrap();
        box_.send_keys("Into the void").await.unwrap();
        c.find(Locator::Id("compose-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(&c, "#compose-error", "Cannot reach your Starling node").await;
        shot(&c, &format!("connection-lost-{how}.png")).await;
        if how == "stopped" {
            shot(&c, "connection-lost.png").await;
        }

        // Back on the same address: the page notices by itself, and catches up with
        // what happened while it was away.
        daemon = Some(alice.up(&args).await);
        let d = daemon.as_ref().unwrap();
        let missed = format!("Posted while the page was away ({how})");
        d.post("/posts", &json!({"body": missed})).await.unwrap();
        wait_text(&c, "#conn-back", "Connected to your Starling node again").await;
        assert!(shown(&c, "conn-back").await);
        assert!(!shown(&c, "conn-lost").await);
        wait_text(&c, "#live", "live").await;
        wait_text(&c, "#timeline .post .body", &missed).await;
        wait_for(WAIT, "the stale error to leave", || async {
            texts(&c, "#compose-error").await == [""]
        })
        .await
        .unwrap();
        shot(&c, &format!("connection-back-{how}.png")).await;
        if how == "stopped" {
            shot(&c, "connection-back.png").await;
        }
        // Still signed in (the session outlived the daemon): posting works.
        let after = format!("After the node was {how}");
        post_in_ui(&c, &after).await;
        let tl: Value = d.get("/timeline").await.unwrap();
        assert!(
            tl["posts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["body"] == after.as_str()),
            "{tl}"
        );
        assert_eq!(c.current_url().await.unwrap().path(), "/");
    }

    c.close().await.unwrap();
    assert!(daemon.take().unwrap().stop().await.unwrap().success());
}
