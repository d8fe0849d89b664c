//! Propagation: one author, F followers, posts at a steady rate; latency from the
//! author's call to the post being stored at each follower, in one process and as
//! separate processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use starling_node::NodeEvent;

use crate::cluster::{Cluster, settle_daemons, start_daemon, wait_for};
use crate::report::{ScenarioResult, Table};
use crate::stats::{Summary, ms, summarize};
use crate::svg;
use starling_cli::kit::Daemon;

/// The longest wait for the start-up DHT work (announcements, bootstraps) to end
/// before measuring: the figures are for a network at rest, not one still joining.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Arrival times: (follower index, seq) -> instant.
type Arrivals = Arc<Mutex<HashMap<(usize, u64), Instant>>>;

pub struct Run {
    pub label: String,
    pub followers: usize,
    pub posts: usize,
    pub latencies_ms: Vec<f64>,
    pub delivered: usize,
    pub duplicates: u64,
    /// How long the network took to finish its start-up DHT work before the
    /// measurement began (`None`: still busy at the limit; measured anyway).
    pub settled: Option<Duration>,
}

impl Run {
    fn ratio(&self) -> f64 {
        self.delivered as f64 / (self.followers * self.posts).max(1) as f64
    }
}

/// One process, real nodes.
pub async fn in_process(followers: usize, posts: usize, rate: f64) -> anyhow::Result<Run> {
    let cluster = Cluster::start(followers + 1, Duration::from_secs(24 * 3600)).await?;
    let author = cluster.node(0).clone();
    let author_key = author.author().to_string();
    // Everyone follows the author (by key: no handle lookup involved).
    futures::future::try_join_all((1..=followers).map(|i| {
        let (n, k) = (cluster.node(i).clone(), author_key.clone());
        async move { n.follow(&k).await }
    }))
    .await?;
    tracing::info!(followers, "in-process: follows sent");
    wait_for(
        Duration::from_secs(120),
        "every follow to be acknowledged",
        || async {
            author
                .status()
                .await
                .map(|s| s.followers as usize == followers)
                .unwrap_or(false)
        },
    )
    .await?;
    tracing::info!("in-process: follows acknowledged");
    let settled = cluster.settle(SETTLE_LIMIT).await;

    let arrivals: Arrivals = Arc::default();
    let mut listeners = Vec::new();
    for i in 1..=followers {
        let mut rx = cluster.node(i).subscribe();
        let (arrivals, author_id) = (arrivals.clone(), author.author());
        listeners.push(tokio::spawn(async move {
            while let Ok(ev) = rx.recv().await {
                if let NodeEvent::Post(p) = ev
                    && p.author == author_id
                {
                    arrivals
                        .lock()
                        .unwrap()
                        .entry((i, p.seq))
                        .or_insert_with(Instant::now);
                }
            }
        }));
    }
    // Warm-up: the mesh is ready when a post reaches everyone.
    let warm = author.post("warm-up").await?.seq;
    wait_for(
        Duration::from_secs(60),
        "the warm-up post everywhere",
        || async {
            let a = arrivals.lock().unwrap();
            (1..=followers).all(|i| a.contains_key(&(i, warm)))
        },
    )
    .await?;

    tracing::info!("in-process: warm-up delivered");
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    for k in 0..posts {
        tokio::time::sleep_until((start + period * k as u32).into()).await;
        let t0 = Instant::now();
        let p = author
            .post(&format!("post {k} of the propagation benchmark"))
            .await?;
        sent.insert(p.seq, t0);
    }
    let expected = followers * posts;
    let _ = wait_for(Duration::from_secs(30), "every post everywhere", || async {
        let a = arrivals.lock().unwrap();
        sent.keys()
            .map(|s| {
                (1..=followers)
                    .filter(|i| a.contains_key(&(*i, *s)))
                    .count()
            })
            .sum::<usize>()
            >= expected
    })
    .await;
    tracing::info!("in-process: posts delivered");
    let a = arrivals.lock().unwrap().clone();
    let mut latencies = Vec::with_capacity(expected);
    for (seq, t0) in &sent {
        for i in 1..=followers {
            if let Some(t) = a.get(&(i, *seq)) {
                latencies.push(t.duration_since(*t0).as_secs_f64() * 1000.0);
            }
        }
    }
    let mut duplicates = 0;
    for i in 1..=followers {
        let st = cluster.node(i).status().await?;
        duplicates += st.counters.get("received.duplicate").copied().unwrap_or(0);
    }
    for l in listeners {
        l.abort();
    }
    cluster.shutdown().await;
    Ok(Run {
        label: format!("in-process, F={followers}"),
        followers,
        posts,
        delivered: latencies.len(),
        latencies_ms: latencies,
        duplicates,
        settled,
    })
}

/// What a run as processes measured besides latency.
pub struct Extras {
    /// Each daemon's resident memory at the end, KiB (author first).
    pub rss_kib: Vec<(String, u64)>,
    /// CPU time of all daemons from the first post to the last delivery, seconds.
    pub cpu_s: f64,
    /// Each daemon's `/status` at the end.
    pub statuses: Vec<(String, serde_json::Value)>,
    /// Under attack: what became of the flood.
    pub flood: Option<super::attack::FloodOutcome>,
}

/// Separate daemons; arrival = the follower's event stream announcing the post.
pub async fn processes(followers: usize, posts: usize, rate: f64) -> anyhow::Result<Run> {
    Ok(processes_with(followers, posts, rate, false).await?.0)
}

/// [`processes`], with a flood of hostile traffic at every node while the author
/// posts when `attack` (see [`super::attack`]).
pub async fn processes_with(
    followers: usize,
    posts: usize,
    rate: f64,
    attack: bool,
) -> anyhow::Result<(Run, Extras)> {
    let root = tempfile::Builder::new()
        .prefix("starling-bench-procs-")
        .tempdir()?;
    let author = start_daemon(root.path(), "author", &[]).await?;
    let boot = author.bootstrap_addr().await?;
    let mut procs = Vec::new();
    for chunk in (0..followers).collect::<Vec<_>>().chunks(10) {
        let started = futures::future::join_all(chunk.iter().map(|i| {
            let extra = vec!["--bootstrap".to_string(), boot.clone()];
            let root = root.path().to_path_buf();
            async move { start_daemon(&root, &format!("f{i:03}"), &extra).await }
        }))
        .await;
        for p in started {
            procs.push(p?);
        }
    }
    let author_key = author.author().to_string();
    for p in &procs {
        p.post("/follow", &json!({ "target": author_key })).await?;
    }
    wait_for(
        Duration::from_secs(120),
        "every follow to be acknowledged",
        || async {
            author
                .get("/status")
                .await
                .map(|s| s["followers"].as_u64() == Some(followers as u64))
                .unwrap_or(false)
        },
    )
    .await?;

    let all: Vec<&Daemon> = std::iter::once(&author).chain(procs.iter()).collect();
    let settled = settle_daemons(&all, SETTLE_LIMIT).await;
    let arrivals: Arrivals = Arc::default();
    let mut listeners = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let resp = p.client().events().await?;
        let (arrivals, author_key) = (arrivals.clone(), author_key.clone());
        listeners.push(tokio::spawn(async move {
            let mut stream = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = stream.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    for line in event.lines() {
                        if let Some(data) = line.strip_prefix("data: ")
                            && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
                            && v["type"] == "post"
                            && v["author"] == author_key.as_str()
                            && let Some(seq) = v["seq"].as_u64()
                        {
                            arrivals
                                .lock()
                                .unwrap()
                                .entry((i, seq))
                                .or_insert_with(Instant::now);
                        }
                    }
                }
            }
        }));
    }
    let warm = author.post("/posts", &json!({"body": "warm-up"})).await?["seq"]
        .as_u64()
        .unwrap_or(0);
    wait_for(
        Duration::from_secs(60),
        "the warm-up post everywhere",
        || async {
            let a = arrivals.lock().unwrap();
            (0..followers).all(|i| a.contains_key(&(i, warm)))
        },
    )
    .await?;

    let mut targets = Vec::new();
    for d in &all {
        targets.push(d.bootstrap_addr().await?);
    }
    let cpu_before: u64 = all.iter().map(|d| cpu_ticks(d.pid())).sum();
    let flood = if attack {
        Some(super::attack::Flood::start(&targets, author_key.parse()?).await?)
    } else {
        None
    };
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    for k in 0..posts {
        tokio::time::sleep_until((start + period * k as u32).into()).await;
        let t0 = Instant::now();
        let v = author
            .post(
                "/posts",
                &json!({"body": format!("post {k} of the propagation benchmark")}),
            )
            .await?;
        sent.insert(v["seq"].as_u64().unwrap_or(0), t0);
    }
    let expected = followers * posts;
    let _ = wait_for(Duration::from_secs(30), "every post everywhere", || async {
        let a = arrivals.lock().unwrap();
        sent.keys()
            .map(|s| (0..followers).filter(|i| a.contains_key(&(*i, *s))).count())
            .sum::<usize>()
            >= expected
    })
    .await;
    let cpu_s =
        (all.iter().map(|d| cpu_ticks(d.pid())).sum::<u64>() - cpu_before) as f64 / TICKS_PER_SEC;
    let flood = match flood {
        Some(f) => Some(f.stop().await),
        None => None,
    };
    let mut rss_kib = Vec::new();
    let mut statuses = Vec::new();
    for (i, d) in all.iter().enumerate() {
        let name = if i == 0 {
            "author".to_string()
        } else {
            format!("f{:03}", i - 1)
        };
        rss_kib.push((
            name.clone(),
            crate::cluster::daemon_mem(d).map_or(0, |m| m.rss_kib),
        ));
        statuses.push((name, d.get("/status").await?));
    }
    drop(all);
    let a = arrivals.lock().unwrap().clone();
    let mut latencies = Vec::new();
    for (seq, t0) in &sent {
        for i in 0..followers {
            if let Some(t) = a.get(&(i, *seq)) {
                latencies.push(t.duration_since(*t0).as_secs_f64() * 1000.0);
            }
        }
    }
    let mut duplicates = 0;
    for p in &procs {
        duplicates += p.get("/status").await?["counters"]["received.duplicate"]
            .as_u64()
            .unwrap_or(0);
    }
    for l in listeners {
        l.abort();
    }
    futures::future::join_all(
        procs
            .into_iter()
            .chain(std::iter::once(author))
            .map(Daemon::stop),
    )
    .await;
    let run = Run {
        label: format!("processes, F={followers}"),
        followers,
        posts,
        delivered: latencies.len(),
        latencies_ms: latencies,
        duplicates,
        settled,
    };
    let extras = Extras {
        rss_kib,
        cpu_s,
        statuses,
        flood,
    };
    Ok((run, extras))
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`: 100 on
/// Linux everywhere this runs).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time a process has used (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

pub async fn run(sizes: &super::Sizes, out: &std::path::Path) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for &f in &sizes.prop_followers {
        match in_process(f, sizes.prop_posts, sizes.prop_rate).await {
            Ok(r) => runs.push(r),
            Err(e) => skipped.push(format!("in-process F={f} did not complete: {e:#}")),
        }
    }
    for &f in &sizes.prop_proc_followers {
        match processes(f, sizes.prop_posts, sizes.prop_rate).await {
            Ok(r) => runs.push(r),
            Err(e) => skipped.push(format!("processes F={f} did not complete: {e:#}")),
        }
    }
    let mut table = Table::new(&[
        "setup",
        "posts",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "delivered",
        "duplicates stored",
        "settled after",
    ]);
    let mut data = Vec::new();
    for r in &runs {
        let s: Summary = summarize(&r.latencies_ms);
        table.row(vec![
            r.label.clone(),
            format!("{} at {}/s", r.posts, sizes.prop_rate),
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max),
            format!("{:.2}%", r.ratio() * 100.0),
            r.duplicates.to_string(),
            r.settled.map_or_else(
                || format!("busy at {} s", SETTLE_LIMIT.as_secs()),
                |d| format!("{:.1} s", d.as_secs_f64()),
            ),
        ]);
        data.push(json!({
            "setup": r.label, "followers": r.followers, "posts": r.posts, "rate_per_s": sizes.prop_rate,
            "latency_ms": s, "delivered": r.delivered, "expected": r.followers * r.posts,
            "delivery_ratio": r.ratio(), "duplicates_stored": r.duplicates,
            "settled_s": r.settled.map(|d| d.as_secs_f64()),
        }));
    }
    let mut notes = skipped;
    let in_proc: Vec<&Run> = runs
        .iter()
        .filter(|r| r.label.starts_with("in-process"))
        .collect();
    if in_proc.len() >= 2 {
        let trend: Vec<String> = in_proc
            .iter()
            .map(|r| {
                format!(
                    "F={} p99 {} ms",
                    r.followers,
                    ms(summarize(&r.latencies_ms).p99)
                )
            })
            .collect();
        notes.push(format!(
            "Latency vs followers (one process): {}.",
            trend.join(", ")
        ));
    }
    let plot = "propagation.svg".to_string();
    let series: Vec<(String, Vec<f64>)> = runs
        .iter()
        .map(|r| (r.label.clone(), r.latencies_ms.clone()))
        .collect();
    std::fs::write(
        out.join(&plot),
        svg::cdf(
            "Post propagation: author's call to stored at each follower",
            "latency (ms, log scale)",
            &series,
        ),
    )?;
    Ok(ScenarioResult {
        id: "propagation".into(),
        title: "1. Propagation: one author, F followers".into(),
        table,
        data: json!(data),
        notes,
        plot: Some(plot),
        seconds: started.elapsed().as_secs_f64(),
    })
}
