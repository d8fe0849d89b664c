//! Catch-up: a follower is offline while its followee posts N times; on restart it
//! catches up (a) from the author, (b) with the author offline, from other followers.

use std::time::{Duration, Instant};

use serde_json::json;
use starling_core::{Hlc, Post, PostContent};
use starling_node::Profile;
use starling_store::{Store, StoreConfig};

use crate::cluster::{Cluster, wait_for};
use crate::report::{ScenarioResult, Table};
use crate::stats::ms;

const BOOT: usize = 0;
const AUTHOR: usize = 1;
const ONLINE: usize = 2; // follows throughout
const FOLLOWER_A: usize = 3; // offline during the posts; restarts with the author online
const FOLLOWER_B: usize = 4; // offline during the posts; restarts with the author offline

pub struct Measure {
    pub first_ms: f64,
    pub all_ms: f64,
    pub posts: usize,
}

impl Measure {
    fn rate(&self) -> f64 {
        self.posts as f64 / ((self.all_ms - self.first_ms).max(0.001) / 1000.0)
    }
    fn overall_rate(&self) -> f64 {
        self.posts as f64 / (self.all_ms / 1000.0)
    }
}

/// Writes `n` new posts of the (stopped) member into its own database, as if it had
/// posted them: signed by its key, consecutive seqs, increasing HLC timestamps.
async fn post_offline(dir: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let profile = Profile::open(dir)?;
    let store = Store::open(&profile.db_path(), StoreConfig::default())?;
    let me = profile.identity.author();
    let head = store.head(me).await?;
    let mut hlc = Hlc::new();
    let first = head.as_ref().map_or(0, |h| h.seq) + 1;
    if let Some(h) = head {
        hlc = Hlc::starting_after(h.ts);
    }
    let mut batch = Vec::with_capacity(1000);
    for (k, seq) in (first..).take(n).enumerate() {
        let ts = hlc.now(starling_node::clock::system_ms());
        batch.push(Post::sign(
            PostContent {
                author: me,
                seq,
                ts,
                expires_at: ts.millis() + 24 * 3600 * 1000,
                body: format!("catch-up benchmark post {k}: while you were away"),
                repost_of: None,
            },
            &profile.identity,
        )?);
        if batch.len() == 1000 {
            store
                .insert_posts(
                    std::mem::take(&mut batch),
                    starling_node::clock::system_ms(),
                )
                .await?;
        }
    }
    store
        .insert_posts(batch, starling_node::clock::system_ms())
        .await?;
    store.close().await;
    Ok(())
}

/// Restarts member `i` and times how long until it holds `target` posts.
async fn time_restart(c: &mut Cluster, i: usize, target: u64) -> anyhow::Result<Measure> {
    let dir = c.members[i].dir.clone();
    let before = {
        let s = Store::open(
            &starling_node::ProfileDir::new(&dir).db_path(),
            StoreConfig::default(),
        )?;
        let n = s.post_counts(starling_node::clock::system_ms()).await?.0;
        s.close().await;
        n
    };
    let t0 = Instant::now();
    c.restart(i).await?;
    let node = c.node(i).clone();
    let mut first = None;
    let deadline = t0 + Duration::from_secs(300);
    loop {
        let n = node.store().post_counts(node.clock().now_ms()).await?.0;
        if n > before && first.is_none() {
            first = Some(t0.elapsed());
        }
        if n >= target {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "caught up {n} of {target} posts in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all = t0.elapsed();
    Ok(Measure {
        first_ms: first.unwrap_or(all).as_secs_f64() * 1000.0,
        all_ms: all.as_secs_f64() * 1000.0,
        posts: (target - before) as usize,
    })
}

pub async fn run(sizes: &super::Sizes) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let n = sizes.catchup_posts;
    let mut c = Cluster::start(5, Duration::from_secs(24 * 3600)).await?;
    let author_key = c.members[AUTHOR].author.to_string();
    for f in [ONLINE, FOLLOWER_A, FOLLOWER_B] {
        c.node(f).follow(&author_key).await?;
    }
    c.node(AUTHOR).post("before the break").await?;
    for f in [ONLINE, FOLLOWER_A, FOLLOWER_B] {
        let node = c.node(f).clone();
        wait_for(Duration::from_secs(60), "the first post", || async {
            node.store()
                .post_counts(node.clock().now_ms())
                .await
                .map(|x| x.0 >= 1)
                .unwrap_or(false)
        })
        .await?;
    }
    // Two followers go offline; the author posts N times (offline too, straight into
    // its own store, so setting up does not dominate the run), then comes back.
    c.stop(FOLLOWER_A).await;
    c.stop(FOLLOWER_B).await;
    c.stop(AUTHOR).await;
    post_offline(&c.members[AUTHOR].dir.clone(), n).await?;
    let target = n as u64 + 1;
    // The follower that stayed online catches up when the author reconnects.
    let online = {
        let t0 = Instant::now();
        c.restart(AUTHOR).await?;
        let node = c.node(ONLINE).clone();
        wait_for(
            Duration::from_secs(300),
            "the online follower to catch up",
            || async {
                node.store()
                    .post_counts(node.clock().now_ms())
                    .await
                    .map(|x| x.0 >= target)
                    .unwrap_or(false)
            },
        )
        .await?;
        t0.elapsed().as_secs_f64() * 1000.0
    };
    // (a) From the author.
    let a = time_restart(&mut c, FOLLOWER_A, target).await?;
    // (b) The author offline: from the other followers (providers of the feed).
    c.stop(AUTHOR).await;
    let b = time_restart(&mut c, FOLLOWER_B, target).await?;
    let bootstrap_alive = c.running(BOOT);
    c.shutdown().await;

    let mut table = Table::new(&[
        "source",
        "missed posts",
        "first post after restart",
        "all caught up",
        "rate (after first)",
        "rate (whole)",
    ]);
    for (label, m) in [
        ("(a) the author", &a),
        ("(b) other followers (author offline)", &b),
    ] {
        table.row(vec![
            label.to_string(),
            m.posts.to_string(),
            format!("{} ms", ms(m.first_ms)),
            format!("{} ms", ms(m.all_ms)),
            format!("{:.0} posts/s", m.rate()),
            format!("{:.0} posts/s", m.overall_rate()),
        ]);
    }
    let notes = vec![
        format!(
            "The follower that stayed online caught up {n} posts {} ms after the author restarted (restart included).",
            ms(online)
        ),
        "Times start before the follower's node starts (store open, network start, bootstrap, sync).".to_string(),
    ];
    Ok(ScenarioResult {
        id: "catchup".into(),
        title: format!("2. Catch-up after missing {n} posts"),
        table,
        data: json!({
            "missed_posts": n,
            "from_author": { "first_ms": a.first_ms, "all_ms": a.all_ms, "posts": a.posts, "rate_per_s": a.rate(), "overall_rate_per_s": a.overall_rate() },
            "from_followers": { "first_ms": b.first_ms, "all_ms": b.all_ms, "posts": b.posts, "rate_per_s": b.rate(), "overall_rate_per_s": b.overall_rate() },
            "online_follower_on_author_restart_ms": online,
            "bootstrap_alive": bootstrap_alive,
        }),
        notes,
        plot: None,
        more: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
