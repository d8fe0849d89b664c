//! Memory: resident memory per node, idle and under load, as separate daemons and in
//! one process; and how it grows with the number of followed authors.

use std::time::{Duration, Instant};

use serde_json::json;
use starling_core::{FollowContent, FollowStatement, Identity};
use starling_node::Profile;
use starling_store::{Store, StoreConfig};

use crate::cluster::{Cluster, Mem, daemon_mem, self_rss_kib, start_daemon, wait_for};

/// `starling-bench memprobe N SETTLE_SECS POSTS`: starts N nodes in this (fresh)
/// process and prints its memory growth per node, idle and after POSTS posts, as JSON.
pub async fn probe(n: usize, settle: Duration, posts: usize) -> anyhow::Result<()> {
    let before = self_rss_kib();
    let c = Cluster::start(n, Duration::from_secs(24 * 3600)).await?;
    tokio::time::sleep(settle).await;
    let idle = self_rss_kib().saturating_sub(before) as f64 / n as f64;
    let author = c.node(0).author().to_string();
    for i in 1..n {
        c.node(i).follow(&author).await?;
    }
    for i in 0..posts {
        c.node(0).post(&format!("load {i}")).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = self_rss_kib().saturating_sub(before) as f64 / n as f64;
    c.shutdown().await;
    println!(
        "{}",
        json!({ "nodes": n, "before_kib": before, "idle_kib_per_node": idle, "loaded_kib_per_node": loaded })
    );
    Ok(())
}
use crate::report::{ScenarioResult, Table};

fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

/// A table row for daemons: mean RSS, PSS and anonymous memory, and the largest RSS.
fn mem_row(setup: String, mems: &[Mem]) -> Vec<String> {
    let col = |f: fn(&Mem) -> u64| mems.iter().map(f).collect::<Vec<u64>>();
    vec![
        setup,
        mems.len().to_string(),
        mib(mean(&col(|m| m.rss_kib))),
        mib(mean(&col(|m| m.pss_kib))),
        mib(mean(&col(|m| m.anon_kib))),
        mib(col(|m| m.rss_kib).into_iter().max().unwrap_or(0) as f64),
    ]
}

/// A profile that follows `count` (made-up, never online) authors.
async fn profile_following(root: &std::path::Path, name: &str, count: usize) -> anyhow::Result<()> {
    let dir = root.join(name);
    let profile = Profile::create(&dir, name, starling_node::clock::system_ms())?;
    let store = Store::open(&profile.db_path(), StoreConfig::default())?;
    let mut hlc = starling_core::Hlc::new();
    for i in 0..count {
        let mut seed = [9u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let followee = Identity::from_secret_bytes(seed).author();
        let st = FollowStatement::sign(
            FollowContent {
                follower: profile.identity.author(),
                followee,
                following: true,
                ts: hlc.now(starling_node::clock::system_ms()),
            },
            &profile.identity,
        )?;
        store
            .put_following(st, None, starling_node::clock::system_ms())
            .await?;
    }
    store.close().await;
    Ok(())
}

pub async fn run(sizes: &super::Sizes) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let settle = Duration::from_secs(if sizes.memory_procs <= 2 { 2 } else { 5 });
    let root = tempfile::Builder::new()
        .prefix("starling-bench-mem-")
        .tempdir()?;
    let mut table = Table::new(&[
        "setup",
        "nodes",
        "RSS MiB",
        "PSS MiB",
        "anonymous MiB",
        "max RSS MiB",
    ]);
    let mut data = serde_json::Map::new();

    // Daemons, idle.
    let k = sizes.memory_procs.max(2);
    let first = start_daemon(root.path(), "p0", &[]).await?;
    let boot = first.bootstrap_addr().await?;
    let mut procs = vec![first];
    for i in 1..k {
        procs.push(
            start_daemon(
                root.path(),
                &format!("p{i}"),
                &["--bootstrap".into(), boot.clone()],
            )
            .await?,
        );
    }
    tokio::time::sleep(settle).await;
    let idle: Vec<Mem> = procs.iter().filter_map(daemon_mem).collect();
    table.row(mem_row("daemon, idle".into(), &idle));
    data.insert("process_idle".into(), json!(idle));

    // Daemons under load: everyone follows p0, which posts 100 times at 20/s.
    let author = procs[0].author().to_string();
    for p in &procs[1..] {
        p.post("/follow", &json!({ "target": author })).await?;
    }
    wait_for(Duration::from_secs(60), "follows", || async {
        procs[0]
            .get("/status")
            .await
            .map(|s| s["followers"].as_u64() == Some((k - 1) as u64))
            .unwrap_or(false)
    })
    .await?;
    for i in 0..sizes.memory_load_posts {
        procs[0]
            .post("/posts", &json!({ "body": format!("load {i}") }))
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded: Vec<Mem> = procs.iter().filter_map(daemon_mem).collect();
    table.row(mem_row(
        format!(
            "daemon, after {} posts pushed to the others",
            sizes.memory_load_posts
        ),
        &loaded,
    ));
    data.insert("process_loaded".into(), json!(loaded));
    futures::future::join_all(procs.into_iter().map(starling_cli::kit::Daemon::stop)).await;

    // In one process: a fresh child process starts the nodes, so the growth is theirs.
    let m = sizes.memory_inproc.max(2);
    let probe = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "memprobe",
            &m.to_string(),
            &settle.as_secs().to_string(),
            &sizes.memory_load_posts.to_string(),
        ])
        .env("RUST_LOG", "error")
        .output()
        .await?;
    anyhow::ensure!(
        probe.status.success(),
        "memory probe failed: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let p: serde_json::Value = serde_json::from_slice(&probe.stdout)?;
    let per = |key: &str| p[key].as_f64().unwrap_or(0.0);
    let (idle_per_node, loaded_per_node) = (per("idle_kib_per_node"), per("loaded_kib_per_node"));
    let dash = || "-".to_string();
    table.row(vec![
        "in one process, idle (growth / nodes)".into(),
        m.to_string(),
        mib(idle_per_node),
        dash(),
        dash(),
        dash(),
    ]);
    table.row(vec![
        format!(
            "in one process, after {} posts to all (growth / nodes)",
            sizes.memory_load_posts
        ),
        m.to_string(),
        mib(loaded_per_node),
        dash(),
        dash(),
        dash(),
    ]);
    data.insert("inproc".into(), p);

    // Growth with the number of followed authors (a daemon each).
    let mut growth = Vec::new();
    for &count in &sizes.memory_follow_counts {
        let name = format!("follows{count}");
        profile_following(root.path(), &name, count).await?;
        let p = start_daemon(root.path(), &name, &[]).await?;
        tokio::time::sleep(settle).await;
        let m = daemon_mem(&p).unwrap_or_default();
        table.row(mem_row(format!("daemon following {count} authors"), &[m]));
        growth.push(json!({ "following": count, "rss_kib": m.rss_kib, "anon_kib": m.anon_kib }));
        let _ = p.stop().await;
    }
    let mut notes = vec![
        "From /proc/<pid>/smaps_rollup. Most of a daemon's RSS is the executable's code, mapped from the file and shared by every daemon on the machine (PSS divides it among them); anonymous memory (heap, stacks) is what each node adds. In one process: the process's growth divided by the nodes started.".to_string(),
    ];
    if let (Some(first), Some(last)) = (growth.first(), growth.last()) {
        let (c0, c1) = (
            first["following"].as_f64().unwrap_or(0.0),
            last["following"].as_f64().unwrap_or(0.0),
        );
        let (a0, a1) = (
            first["anon_kib"].as_f64().unwrap_or(0.0),
            last["anon_kib"].as_f64().unwrap_or(0.0),
        );
        if c1 > c0 {
            notes.push(format!(
                "Growth with followed authors: about {:.1} KiB of anonymous memory per followed author ({} → {} authors).",
                (a1 - a0) / (c1 - c0),
                c0,
                c1
            ));
        }
    }
    data.insert("growth".into(), json!(growth));
    Ok(ScenarioResult {
        id: "memory".into(),
        title: "6. Memory per node".into(),
        table,
        data: serde_json::Value::Object(data),
        notes,
        plot: None,
        more: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
