//! Timeline read: the latest 50 posts for a user following many authors, with many
//! posts stored; through the node (query, decoding, views) as the API serves it.

use std::time::{Duration, Instant};

use serde_json::json;
use starling_core::Post;
use starling_node::{Node, NodeConfig, Profile};
use starling_store::{Cursor, Store, StoreConfig};

use crate::report::{ScenarioResult, Table};
use crate::stats::{ms, summarize};
use crate::svg;

pub async fn run(sizes: &super::Sizes, out: &std::path::Path) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let (n, authors, q) = (
        sizes.timeline_posts,
        sizes.timeline_authors,
        sizes.timeline_queries,
    );
    let root = tempfile::tempdir()?;
    let dir = root.path().join("reader");
    let profile = Profile::create(&dir, "reader", starling_node::clock::system_ms())?;
    let now = starling_node::clock::system_ms();

    // Fill the store: n posts by `authors` authors over the last 20 hours.
    let t = Instant::now();
    let wire = super::ingest::make_posts(n, authors, now, 20 * 3600 * 1000);
    let sign_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    {
        let store = Store::open(&profile.db_path(), StoreConfig::default())?;
        for chunk in wire.chunks(10_000) {
            let posts: Vec<Post> = chunk
                .iter()
                .map(|b| Post::decode(b).expect("valid"))
                .collect();
            store.insert_received(posts, now).await?;
        }
        store.close().await;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let sample: Vec<Cursor> = wire
        .iter()
        .step_by((n / 1000).max(1))
        .map(|b| Cursor::of(&Post::decode(b).expect("valid")))
        .collect();
    drop(wire);

    let node = Node::start(
        profile,
        NodeConfig {
            network: None,
            gc_interval: Duration::from_secs(3600),
            ..NodeConfig::default()
        },
    )
    .await?;
    // Warm the cache as a running node would be.
    for _ in 0..20 {
        node.timeline(50, None).await?;
    }
    let mut latest = Vec::with_capacity(q);
    for _ in 0..q {
        let t = Instant::now();
        let page = node.timeline(50, None).await?;
        latest.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(page.posts.len() == 50, "a page of {}", page.posts.len());
    }
    let mut rng = fastrand::Rng::with_seed(3);
    let mut paged = Vec::with_capacity(q);
    for _ in 0..q {
        let c = sample[rng.usize(..sample.len())];
        let t = Instant::now();
        node.timeline(50, Some(c)).await?;
        paged.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let stored = node.status().await?.posts_stored;
    node.shutdown().await;

    let (a, b) = (summarize(&latest), summarize(&paged));
    let mut table = Table::new(&[
        "query",
        "stored posts",
        "authors",
        "queries",
        "p50 ms",
        "p99 ms",
        "max ms",
    ]);
    table.row(vec![
        "latest 50".into(),
        stored.to_string(),
        authors.to_string(),
        q.to_string(),
        ms(a.p50),
        ms(a.p99),
        ms(a.max),
    ]);
    table.row(vec![
        "50 before a random cursor".into(),
        stored.to_string(),
        authors.to_string(),
        q.to_string(),
        ms(b.p50),
        ms(b.p99),
        ms(b.max),
    ]);
    let plot = "timeline.svg".to_string();
    std::fs::write(
        out.join(&plot),
        svg::cdf(
            &format!("Timeline page of 50 with {stored} posts stored"),
            "query latency (ms, log scale)",
            &[
                ("latest 50".into(), latest.clone()),
                ("random page".into(), paged.clone()),
            ],
        ),
    )?;
    Ok(ScenarioResult {
        id: "timeline".into(),
        title: format!("5. Timeline read: latest 50 of {authors} followed authors, {stored} posts"),
        table,
        data: json!({ "stored": stored, "authors": authors, "latest": a, "random_page": b, "fill_seconds": fill_s, "sign_seconds": sign_s }),
        notes: vec![format!(
            "Measured through Node::timeline (SQLite query on the (ts, author, seq) index, decoding, views), as the API serves it. Setup: signing {:.0} s, inserting {:.0} s.",
            sign_s, fill_s
        )],
        plot: Some(plot),
        more: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
