//! Ingest: posts per second verified and stored by one node through its one intake,
//! the path every transport takes (decode, check, batch-verify signatures, one
//! insert transaction per batch). The intake checks the next batch while the store
//! commits the previous one, as gossip's taker does.

use std::time::Instant;

use serde_json::json;
use std::time::Duration;

use starling_core::intake::Holdings;
use starling_core::limits::DEFAULT_POST_TTL;
use starling_core::{
    AuthorId, Channel, Identity, Intake, Limits, Post, PostContent, PostRef, Timestamp, Verdict,
};
use starling_node::{Node, Profile};

use crate::report::{ScenarioResult, Table};

pub const BATCH: usize = 256;

/// `n` valid posts by `authors` authors, signed on every core, as wire bytes.
pub fn make_posts(n: usize, authors: usize, now_ms: u64, spread_ms: u64) -> Vec<Vec<u8>> {
    let ids: Vec<Identity> = (0..authors)
        .map(|a| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(a as u64).to_be_bytes());
            Identity::from_secret_bytes(seed)
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let ids = &ids;
                s.spawn(move || {
                    let mut out = Vec::with_capacity(per);
                    for k in t * per..((t + 1) * per).min(n) {
                        let a = k % authors;
                        let seq = (k / authors) as u64 + 1;
                        // Spread over the past `spread_ms`, newest last.
                        let ms = now_ms - spread_ms + (k as u64 * spread_ms / n as u64);
                        let ts = Timestamp::from_parts(ms, (k % 65_536) as u16);
                        let post = Post::sign(
                            PostContent {
                                author: ids[a].author(),
                                seq,
                                ts,
                                expires_at: ms + 48 * 3600 * 1000,
                                body: format!("benchmark post {k} by author {a}: a short text of a typical length."),
                                repost_of: None,
                            },
                            &ids[a],
                        )
                        .expect("own key");
                        out.push(post.into_bytes());
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signer"))
            .collect()
    })
}

pub async fn run(sizes: &super::Sizes) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let n = sizes.ingest_posts;
    let now = starling_node::clock::system_ms();
    let wire = make_posts(n, 100, now, 3_600_000);
    let limits = Limits::default();

    let authors: Vec<AuthorId> = wire
        .iter()
        .map(|b| Post::decode(b).map(|p| p.author))
        .collect::<Result<_, _>>()?;
    let intake = Intake::new(limits);

    // The checks alone: core's intake (decode, content and time rules, one batch
    // signature verification), nothing held.
    let t = Instant::now();
    let cpu = crate::probe::self_cpu_secs();
    let mut verified = 0;
    for (chunk, who) in wire.chunks(BATCH).zip(authors.chunks(BATCH)) {
        let verdicts = intake.check(
            chunk
                .iter()
                .zip(who)
                .map(|(b, a)| (b.as_slice(), Channel::Sync(*a))),
            &TakesAll,
            now,
        );
        verified += verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Fresh(_)))
            .count();
    }
    let verify_s = t.elapsed().as_secs_f64();
    let verify_cpu = crate::probe::self_cpu_secs() - cpu;

    // The whole path, as gossip and sync take it: a node's one intake (checks, the
    // held-post read when needed, counters, one insert transaction per batch,
    // announcing) into a fresh store. The node follows the 100 authors.
    let dir = tempfile::tempdir()?;
    let node = following_node(&dir.path().join("ingest"), &authors, now).await?;
    let from = node.author().peer_id();
    let batches: Vec<Vec<(Vec<u8>, Channel)>> = wire
        .chunks(BATCH)
        .zip(authors.chunks(BATCH))
        .map(|(chunk, who)| {
            chunk
                .iter()
                .zip(who)
                .map(|(b, a)| (b.clone(), Channel::Sync(*a)))
                .collect()
        })
        .collect();
    let t = Instant::now();
    let cpu = crate::probe::self_cpu_secs();
    let stored = node
        .ingest(from, batches)
        .await
        .iter()
        .filter(|v| matches!(v, Verdict::Fresh(_)))
        .count();
    let total_s = t.elapsed().as_secs_f64();
    // The store's writer and checkpointer threads included.
    let total_cpu = crate::probe::self_cpu_secs() - cpu;
    let counted = node.store().post_counts(now).await?.0 as usize;
    node.shutdown().await;
    anyhow::ensure!(
        stored == n && counted == n && verified == n,
        "stored {stored}, counted {counted}, verified {verified} of {n}"
    );

    // One post at a time, each waiting for the one before to commit: what a
    // follower does with posts that arrive apart (one transaction each).
    let one = (n / 20).max(1);
    let node = following_node(&dir.path().join("one"), &authors, now).await?;
    let t = Instant::now();
    let cpu = crate::probe::self_cpu_secs();
    let mut one_stored = 0;
    for (b, a) in wire.iter().zip(&authors).take(one) {
        let v = node
            .ingest(from, [vec![(b.clone(), Channel::Topic(*a))]])
            .await;
        one_stored += v.iter().filter(|v| matches!(v, Verdict::Fresh(_))).count();
    }
    let one_s = t.elapsed().as_secs_f64();
    let one_cpu = crate::probe::self_cpu_secs() - cpu;
    node.shutdown().await;
    anyhow::ensure!(
        one_stored == one,
        "one at a time: stored {one_stored} of {one}"
    );

    let mut table = Table::new(&["step", "posts", "seconds", "posts/s", "CPU µs / post"]);
    for (step, posts, secs, cpu) in [
        (
            "checks: decode + rules + batch verify",
            n,
            verify_s,
            verify_cpu,
        ),
        (
            "a node's intake: … + store (256 per transaction)",
            n,
            total_s,
            total_cpu,
        ),
        (
            "a node's intake, one post at a time (a transaction each)",
            one,
            one_s,
            one_cpu,
        ),
    ] {
        table.row(vec![
            step.into(),
            posts.to_string(),
            format!("{secs:.2}"),
            format!("{:.0}", posts as f64 / secs),
            format!("{:.1}", cpu * 1e6 / posts as f64),
        ]);
    }
    Ok(ScenarioResult {
        id: "ingest".into(),
        title: "4. Ingest: posts per second through a node's one intake into its store".into(),
        table,
        data: json!({
            "posts": n, "batch": BATCH, "verify_seconds": verify_s, "verify_rate_per_s": n as f64 / verify_s,
            "ingest_seconds": total_s, "ingest_rate_per_s": n as f64 / total_s, "stored": stored,
            "verify_cpu_seconds": verify_cpu, "ingest_cpu_seconds": total_cpu,
            "one_at_a_time_posts": one, "one_at_a_time_seconds": one_s, "one_at_a_time_cpu_seconds": one_cpu,
        }),
        notes: vec![
            "The steps run one after the other. The intake takes batches as gossip does: it checks the next batch on its task while the store's writer thread commits the previous ones (at most 8 batches queued). One post at a time: each waits for the one before to commit, as a follower's posts that arrive apart do.".into(),
            "CPU: the process's user + system time during the step (the store's writer and checkpointer threads included), per post; the clock ticks are 10 ms.".into(),
        ],
        plot: None,
        more: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A fresh node in `dir` that follows `authors`.
async fn following_node(
    dir: &std::path::Path,
    authors: &[AuthorId],
    now: u64,
) -> anyhow::Result<Node> {
    let profile = Profile::create(dir, "ingest", now)?;
    let node = Node::start(
        profile,
        crate::cluster::config(None, DEFAULT_POST_TTL, Duration::from_secs(3600)),
    )
    .await?;
    let followed: std::collections::BTreeSet<AuthorId> = authors.iter().copied().collect();
    for a in &followed {
        node.follow(&a.to_string()).await?;
    }
    Ok(node)
}

/// Holdings of a node that takes every author's posts and holds none yet.
struct TakesAll;

impl Holdings for TakesAll {
    fn takes(&self, _: &AuthorId) -> bool {
        true
    }
    fn held(&self, _: &PostRef) -> Option<&[u8]> {
        None
    }
}
