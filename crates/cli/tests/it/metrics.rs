//! Prometheus metrics on the local API, scraped as Prometheus would (with the token)
//! and read with Prometheus' own parser for the format (`prometheus_client`'s
//! OpenMetrics parser, in Python; strict: a malformed exposition fails it).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Daemon, Profile, addr, wait_acknowledged, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// Parses an exposition into `name{label=value,...} -> value`.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;

async fn scrape(d: &Daemon) -> BTreeMap<String, f64> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .get(format!("{}/api/v1/metrics", d.url()))
        .bearer_auth(d.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let text = resp.text().await.unwrap();
    let parsed: Value = crate::pytools::json(PARSE, &[], text.as_bytes());
    parsed
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect()
}

/// The value of the one sample named `name` (labels ignored: their sum).
fn sum(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.split('{').next() == Some(name))
        .map(|(_, v)| v)
        .sum()
}

fn has_prefix(m: &BTreeMap<String, f64>, prefix: &str) -> bool {
    m.keys().any(|k| k.starts_with(prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_behind_the_token() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up(&[]).await;
    let b = bob.up(&["--bootstrap", &addr(&a).await]).await;
    bob.cli_json(&["follow", &a.author().to_string()]);
    wait_acknowledged(&bob, "bob's follow").await;
    alice.cli_json(&["post", "counted"]);
    wait_for(WAIT, "the post to reach bob", || async {
        bob.cli_json(&["timeline"])["posts"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["body"] == "counted"))
    })
    .await
    .unwrap();

    // Without the token: refused, like every other route.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let bare = http
        .get(format!("{}/api/v1/metrics", a.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);

    let am = scrape(&a).await;
    let bm = scrape(&b).await;
    // The author: one follower, its post held, peers, a store on disk, quotas.
    assert_eq!(sum(&am, "starling_followers"), 1.0, "{am:#?}");
    assert!(sum(&am, "starling_posts_live") >= 1.0);
    assert_eq!(sum(&am, "starling_own_head_seq"), 1.0);
    assert!(sum(&am, "starling_peers_connected") >= 1.0);
    assert!(sum(&am, "starling_store_disk_bytes") > 0.0);
    assert!(sum(&am, "starling_store_quota_per_author_posts") > 0.0);
    assert!(
        am.contains_key("starling_clock_offset_seconds{}"),
        "{am:#?}"
    );
    assert!(am.contains_key("starling_outbox_pending{}"));
    assert!(
        am.keys()
            .any(|k| k.starts_with("starling_node{") && k.contains("handle=alice")),
        "{am:#?}"
    );
    // The follower: following one, the post received (by push or catch-up).
    assert_eq!(sum(&bm, "starling_following"), 1.0);
    let received = bm
        .get("starling_events_total{event=gossip.accepted}")
        .copied()
        .unwrap_or(0.0)
        + bm.get("starling_events_total{event=sync.accepted}")
            .copied()
            .unwrap_or(0.0);
    assert!(received >= 1.0, "{bm:#?}");
    // libp2p's own metrics: the swarm's connections, identify, Kademlia, gossipsub.
    for m in [&am, &bm] {
        assert!(
            sum(m, "libp2p_swarm_connections_established_total") >= 1.0,
            "{m:#?}"
        );
        assert!(has_prefix(m, "libp2p_identify_"), "{m:#?}");
        assert!(has_prefix(m, "libp2p_kad_"), "{m:#?}");
        assert!(has_prefix(m, "gossipsub_"), "{m:#?}");
    }
    // Each scrape reads the node anew: the uptime goes on.
    let later = {
        let mut later = scrape(&a).await;
        let deadline = std::time::Instant::now() + WAIT;
        while sum(&later, "starling_uptime_seconds") <= sum(&am, "starling_uptime_seconds") {
            assert!(std::time::Instant::now() < deadline, "uptime stands still");
            tokio::time::sleep(Duration::from_millis(200)).await;
            later = scrape(&a).await;
        }
        later
    };
    assert!(sum(&later, "starling_uptime_seconds") > sum(&am, "starling_uptime_seconds"));
}
