//! Atom feeds of the timeline and of one's own posts, read by a real feed parser
//! (Python's `feedparser`) through the links `starling ui` prints, as a feed reader
//! would; their key opens the feeds and nothing else.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Profile, addr, wait_acknowledged, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// Parses a feed; prints what a reader shows of it.
const PARSE: &str = r#"
import json, sys
import feedparser
f = feedparser.parse(sys.stdin.buffer.read())
print(json.dumps({
    "bozo": bool(f.bozo), "problem": str(f.get("bozo_exception", "")),
    "version": f.version, "title": f.feed.get("title"), "id": f.feed.get("id"),
    "updated": f.feed.get("updated"),
    "entries": [{"id": e.id, "title": e.title, "content": e.content[0].value,
                 "content_type": e.content[0].type, "author": e.author,
                 "published": e.published} for e in f.entries],
}))
"#;

async fn fetch(url: &str) -> (u16, Vec<u8>, String) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, r.bytes().await.unwrap().to_vec(), ctype)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atom_feeds_of_the_timeline_and_of_own_posts() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up(&[]).await;
    let b = bob.up(&["--bootstrap", &addr(&a).await]).await;
    bob.cli_json(&["follow", &a.author().to_string()]);
    wait_acknowledged(&bob, "bob's follow").await;
    let tricky = "<b>not bold</b> & \"quoted\" ]]> café\nsecond line";
    alice.cli_json(&["post", "first from alice"]);
    alice.cli_json(&["post", tricky]);
    bob.cli_json(&["post", "bob's own"]);
    wait_for(WAIT, "alice's posts to reach bob", || async {
        bob.cli_json(&["timeline"])["posts"]
            .as_array()
            .unwrap()
            .len()
            == 3
    })
    .await
    .unwrap();

    let ui = bob.cli_json(&["ui"]);
    let timeline_url = ui["feeds"]["timeline"].as_str().unwrap().to_string();
    let posts_url = ui["feeds"]["posts"].as_str().unwrap().to_string();
    assert!(timeline_url.starts_with(b.url()), "{timeline_url}");

    let (status, body, ctype) = fetch(&timeline_url).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/atom+xml"), "{ctype}");
    let feed: Value = crate::pytools::json(PARSE, &[], &body);
    assert_eq!(feed["bozo"], false, "{feed}");
    assert_eq!(feed["version"], "atom10");
    assert_eq!(feed["title"], "@bob's timeline");
    let entries = feed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{feed}");
    // Newest first, the text exactly as posted (markup is text, not markup).
    assert_eq!(entries[0]["content"], "bob's own");
    assert_eq!(entries[1]["content"], tricky);
    assert_eq!(entries[1]["content_type"], "text/plain");
    assert_eq!(entries[1]["title"], "<b>not bold</b> & \"quoted\" ]]> café");
    // Bob followed alice by key: her handle shows once bob has learned it.
    let fingerprint = a.get("/whoami").await.unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let author = entries[1]["author"].as_str().unwrap();
    assert!(
        author == "@alice" || author == format!("key {fingerprint}"),
        "{author}"
    );
    assert_eq!(entries[2]["content"], "first from alice");
    let ids: std::collections::HashSet<_> =
        entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "entry ids are unique");
    assert!(
        entries[1]["id"]
            .as_str()
            .unwrap()
            .contains(&a.author().to_string())
    );

    let (status, body, _) = fetch(&posts_url).await;
    assert_eq!(status, 200);
    let own: Value = crate::pytools::json(PARSE, &[], &body);
    assert_eq!(own["bozo"], false, "{own}");
    let entries = own["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{own}");
    assert_eq!(entries[0]["content"], "bob's own");
    assert_eq!(entries[0]["author"], "@bob");

    // The key reads the feeds and nothing else; a wrong key reads nothing.
    let key = timeline_url.split("key=").nth(1).unwrap();
    let (status, _, _) = fetch(&format!("{}/api/v1/timeline?key={key}", b.url())).await;
    assert_eq!(status, 401);
    let wrong = timeline_url.replace(key, &"0".repeat(key.len()));
    let (status, _, _) = fetch(&wrong).await;
    assert_eq!(status, 401);
    // With the token, as any API route.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("{}/api/v1/feeds/posts.atom?limit=1", b.url()))
        .bearer_auth(b.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
