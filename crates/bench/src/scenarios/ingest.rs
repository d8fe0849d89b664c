//! Ingest: posts per second verified and stored by one node, the way received posts
//! are handled (decode, check, batch-verify signatures, one insert transaction per
//! batch), one step after the other, so one core at a time does the work.

use std::time::Instant;

use serde_json::json;
use starling_core::{Identity, Limits, Post, PostContent, Timestamp};
use starling_store::{Store, StoreConfig};

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

    // Verification alone.
    let t = Instant::now();
    let mut verified = 0;
    for chunk in wire.chunks(BATCH) {
        let posts: Vec<Post> = chunk
            .iter()
            .map(|b| Post::decode(b).expect("valid"))
            .collect();
        for p in &posts {
            p.validate_unsigned(now, &limits).expect("valid");
        }
        verified += Post::verify_many(&posts).iter().filter(|ok| **ok).count();
    }
    let verify_s = t.elapsed().as_secs_f64();

    // The whole path into a fresh store.
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("ingest.db"), StoreConfig::default())?;
    let t = Instant::now();
    let mut stored = 0;
    for chunk in wire.chunks(BATCH) {
        let posts: Vec<Post> = chunk
            .iter()
            .map(|b| Post::decode(b).expect("valid"))
            .collect();
        for p in &posts {
            p.validate_unsigned(now, &limits).expect("valid");
        }
        let ok = Post::verify_many(&posts);
        let good: Vec<Post> = posts
            .into_iter()
            .zip(ok)
            .filter(|(_, ok)| *ok)
            .map(|(p, _)| p)
            .collect();
        stored += store
            .insert_received(good, now)
            .await?
            .0
            .iter()
            .filter(|r| **r == starling_store::Inserted::New)
            .count();
    }
    let total_s = t.elapsed().as_secs_f64();
    let counted = store.post_counts(now).await?.0 as usize;
    store.close().await;
    anyhow::ensure!(
        stored == n && counted == n && verified == n,
        "stored {stored}, counted {counted}, verified {verified} of {n}"
    );

    let mut table = Table::new(&["step", "posts", "seconds", "posts/s"]);
    table.row(vec![
        "decode + check + batch verify".into(),
        n.to_string(),
        format!("{verify_s:.2}"),
        format!("{:.0}", n as f64 / verify_s),
    ]);
    table.row(vec![
        "… + insert (256 per transaction)".into(),
        n.to_string(),
        format!("{total_s:.2}"),
        format!("{:.0}", n as f64 / total_s),
    ]);
    Ok(ScenarioResult {
        id: "ingest".into(),
        title: "4. Ingest: verified posts per second into one store".into(),
        table,
        data: json!({
            "posts": n, "batch": BATCH, "verify_seconds": verify_s, "verify_rate_per_s": n as f64 / verify_s,
            "ingest_seconds": total_s, "ingest_rate_per_s": n as f64 / total_s, "stored": stored,
        }),
        notes: vec!["Steps run one after the other on one task; the store's writer thread runs while the task waits for it.".into()],
        plot: None,
        seconds: started.elapsed().as_secs_f64(),
    })
}
