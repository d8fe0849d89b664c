//! Propagation: one author, F followers, posts at a steady rate; latency from the
//! author's call to the post being stored at each follower, in one process (on
//! loopback, and over emulated links with delay and loss) and as separate processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use starling_node::NodeEvent;

use starling_node::trace::{Stage, Stamp, mono_ns};

use crate::breakdown::{self, Breakdown};
use crate::cluster::{Cluster, settle_daemons, start_daemon, wait_for};
use crate::netlab::{Lab, LinkSpec};
use crate::probe::{self, MachineCpu};
use crate::report::{ScenarioResult, Table};
use crate::stats::{Summary, ms, summarize};
use crate::svg;
use starling_cli::kit::Daemon;

/// The longest wait for the start-up DHT work (announcements, bootstraps) to end
/// before measuring: the figures are for a network at rest, not one still joining.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// How long the nodes' CPU time is measured at rest before the posts.
const IDLE_PROBE: Duration = Duration::from_secs(5);

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
    /// What the operating system and the nodes' counters said of the run.
    pub measures: Measures,
    /// Anything else the report should say of it (the emulated links' switch).
    pub note: Option<String>,
}

/// Costs of a run, from the first post to the last delivery (or the wait's end).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Measures {
    /// CPU time (user + system) of every node, seconds: in one process, the whole
    /// process (the harness's own share is small: it only waits).
    pub cpu_s: f64,
    /// The share of the machine's cores busy meanwhile (0..=1).
    pub utilisation: f64,
    /// Open files per node: mean and largest (in one process: the process's
    /// growth over its count before the nodes started, divided by the nodes).
    pub open_files_mean: f64,
    pub open_files_max: usize,
    /// Post copies the followers' networks received (duplicates included), per
    /// delivered post; and bytes of them.
    pub copies_per_delivery: Option<f64>,
    pub bytes_per_delivery: Option<f64>,
    /// Durable commits (each an fsync) and checkpoints (each one or two) of every
    /// node's store.
    pub fsyncs: u64,
    /// The filesystem of the data directories.
    pub filesystem: String,
    /// DHT queries the nodes started meanwhile, by kind (none is needed to deliver a
    /// post).
    pub dht_queries: std::collections::BTreeMap<String, u64>,
    /// As processes: the share of a core each node used at rest (nothing posted),
    /// measured just before the posts.
    pub idle_cpu_per_node: f64,
    pub breakdown: Option<Breakdown>,
}

impl Measures {
    /// CPU time per delivered post, µs.
    pub fn cpu_us_per_delivery(&self, delivered: usize) -> f64 {
        self.cpu_s * 1e6 / delivered.max(1) as f64
    }
}

/// Sums a counter over node statuses (JSON, as the API serves them): the node's
/// own counters, then its network's.
fn counter_sum(statuses: &[serde_json::Value], name: &str) -> u64 {
    statuses
        .iter()
        .map(|st| {
            st["counters"][name]
                .as_u64()
                .or_else(|| st["network"]["counters"][name].as_u64())
                .unwrap_or(0)
        })
        .sum()
}

impl Run {
    fn ratio(&self) -> f64 {
        self.delivered as f64 / (self.followers * self.posts).max(1) as f64
    }
}

/// One process, real nodes; on loopback, or over emulated `links` (each node in a
/// network namespace of its own behind a switch that delays and drops frames).
pub async fn in_process(
    followers: usize,
    posts: usize,
    rate: f64,
    links: Option<LinkSpec>,
) -> anyhow::Result<Run> {
    let fds_before = probe::self_open_files();
    let ttl = Duration::from_secs(24 * 3600);
    let (cluster, label) = match links {
        None => (
            Cluster::start_traced(followers + 1, ttl).await?,
            format!("in-process, F={followers}"),
        ),
        Some(spec) => (
            Cluster::start_over(followers + 1, ttl, Lab::new(followers + 1, spec)?).await?,
            format!(
                "emulated links ({} ms one-way, {}% loss), F={followers}",
                spec.delay.as_millis(),
                spec.loss * 100.0
            ),
        ),
    };
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
    // Only the measured posts' stamps count.
    for i in 0..=followers {
        cluster.node(i).take_trace();
    }
    let before = statuses_in(&cluster, followers).await?;
    let (cpu0, machine0) = (probe::self_cpu_secs(), MachineCpu::now());
    let mut fds_peak = probe::self_open_files();
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    for k in 0..posts {
        tokio::time::sleep_until((start + period * k as u32).into()).await;
        let (t0, api) = (Instant::now(), mono_ns());
        let p = author
            .post(&format!("post {k} of the propagation benchmark"))
            .await?;
        author.stamp(p.seq, Stage::Api, api);
        sent.insert(p.seq, t0);
        if k % 16 == 0 {
            fds_peak = fds_peak.max(probe::self_open_files());
        }
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
    let (cpu_s, utilisation) = (
        probe::self_cpu_secs() - cpu0,
        machine0.utilisation_until(&MachineCpu::now()),
    );
    let after = statuses_in(&cluster, followers).await?;
    let author_stamps = breakdown::by_seq(&author.take_trace());
    let follower_stamps: Vec<_> = (1..=followers)
        .map(|i| breakdown::by_seq(&cluster.node(i).take_trace()))
        .collect();
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
    let nodes = followers + 1;
    let measures = Measures {
        cpu_s,
        utilisation,
        open_files_mean: fds_peak.saturating_sub(fds_before) as f64 / nodes as f64,
        open_files_max: 0,
        filesystem: probe::filesystem_of(cluster.root()),
        breakdown: Some(breakdown::compute(&author_stamps, &follower_stamps)),
        ..counted(&before, &after, latencies.len())
    };
    let note = cluster.lab.as_ref().map(|lab| {
        let st = &lab.stats;
        format!(
            "{label}: the switch forwarded {} frames, dropped {} at random and {} for want of buffer, in the whole run (set-up and follows included).",
            st.forwarded.load(std::sync::atomic::Ordering::Relaxed),
            st.lost.load(std::sync::atomic::Ordering::Relaxed),
            st.overflowed.load(std::sync::atomic::Ordering::Relaxed),
        )
    });
    cluster.shutdown().await;
    Ok(Run {
        note,
        label,
        followers,
        posts,
        delivered: latencies.len(),
        latencies_ms: latencies,
        duplicates,
        settled,
        measures,
    })
}

/// Every member's status as the API would serve it (JSON), author first.
async fn statuses_in(
    cluster: &Cluster,
    followers: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::with_capacity(followers + 1);
    for i in 0..=followers {
        out.push(serde_json::to_value(cluster.node(i).status().await?)?);
    }
    Ok(out)
}

/// The counted measures between two sets of statuses (copies, bytes, fsyncs).
fn counted(
    before: &[serde_json::Value],
    after: &[serde_json::Value],
    delivered: usize,
) -> Measures {
    let delta = |name: &str| counter_sum(after, name).saturating_sub(counter_sum(before, name));
    let per = |n: u64| (n > 0).then(|| n as f64 / delivered.max(1) as f64);
    Measures {
        copies_per_delivery: per(delta(COPIES)),
        bytes_per_delivery: per(delta(COPY_BYTES)),
        fsyncs: delta("store.fsyncs"),
        dht_queries: [
            "dht_get_record",
            "dht_put_record",
            "dht_start_providing",
            "dht_get_providers",
            "dht_find_peer",
        ]
        .iter()
        .map(|k| (k.to_string(), delta(k)))
        .filter(|(_, n)| *n > 0)
        .collect(),
        ..Measures::default()
    }
}

/// The nodes' counters of post copies received by push (duplicates included), and
/// of their bytes.
const COPIES: &str = "gossip_copies_received";
const COPY_BYTES: &str = "gossip_copy_bytes_received";

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
    let traced = "--trace-latency".to_string();
    let author = start_daemon(root.path(), "author", std::slice::from_ref(&traced)).await?;
    let boot = author.bootstrap_addr().await?;
    let mut procs = Vec::new();
    for chunk in (0..followers).collect::<Vec<_>>().chunks(10) {
        let started = futures::future::join_all(chunk.iter().map(|i| {
            let extra = vec!["--bootstrap".to_string(), boot.clone(), traced.clone()];
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
    for d in &all {
        d.get("/trace").await?;
    }
    let mut before = Vec::new();
    for d in &all {
        before.push(d.get("/status").await?);
    }
    let cpu_of = |all: &[&Daemon]| -> f64 {
        all.iter()
            .map(|d| probe::cpu_secs(d.pid()).unwrap_or(0.0))
            .sum()
    };
    // At rest first: what the nodes spend with nothing to deliver.
    let idle0 = cpu_of(&all);
    tokio::time::sleep(IDLE_PROBE).await;
    let idle_cpu_s = cpu_of(&all) - idle0;
    let (cpu_before, machine0) = (cpu_of(&all), MachineCpu::now());
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
    let cpu_s = cpu_of(&all) - cpu_before;
    let utilisation = machine0.utilisation_until(&MachineCpu::now());
    let fds: Vec<usize> = all
        .iter()
        .map(|d| probe::open_files(d.pid()).unwrap_or(0))
        .collect();
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
    let author_stamps = breakdown::by_seq(&stamps_of(&author).await?);
    let mut follower_stamps = Vec::new();
    for p in &procs {
        follower_stamps.push(breakdown::by_seq(&stamps_of(p).await?));
    }
    let all_len = all.len();
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
    let after: Vec<serde_json::Value> = statuses.iter().map(|(_, v)| v.clone()).collect();
    let measures = Measures {
        cpu_s,
        utilisation,
        open_files_mean: fds.iter().sum::<usize>() as f64 / fds.len().max(1) as f64,
        open_files_max: fds.iter().copied().max().unwrap_or(0),
        filesystem: probe::filesystem_of(root.path()),
        idle_cpu_per_node: idle_cpu_s / IDLE_PROBE.as_secs_f64() / all_len as f64,
        breakdown: Some(breakdown::compute(&author_stamps, &follower_stamps)),
        ..counted(&before, &after, latencies.len())
    };
    let run = Run {
        note: None,
        label: format!("processes, F={followers}"),
        followers,
        posts,
        delivered: latencies.len(),
        latencies_ms: latencies,
        duplicates,
        settled,
        measures,
    };
    let extras = Extras {
        rss_kib,
        cpu_s,
        statuses,
        flood,
    };
    Ok((run, extras))
}

/// The stage stamps a daemon kept (`/api/v1/trace`), taken.
async fn stamps_of(d: &Daemon) -> anyhow::Result<Vec<Stamp>> {
    Ok(serde_json::from_value(d.get("/trace").await?)?)
}

pub async fn run(sizes: &super::Sizes, out: &std::path::Path) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for &f in sizes.prop_followers.iter().filter(|&&f| f > 0) {
        match in_process(f, sizes.prop_posts, sizes.prop_rate, None).await {
            Ok(r) => runs.push(r),
            Err(e) => skipped.push(format!("in-process F={f} did not complete: {e:#}")),
        }
    }
    if sizes.link_followers > 0 {
        let (f, spec) = (
            sizes.link_followers,
            LinkSpec {
                delay: sizes.link_delay,
                loss: sizes.link_loss,
            },
        );
        match in_process(f, sizes.prop_posts, sizes.prop_rate, Some(spec)).await {
            Ok(r) => runs.push(r),
            Err(e) => skipped.push(format!("emulated links F={f} did not complete: {e:#}")),
        }
    }
    for &f in sizes.prop_proc_followers.iter().filter(|&&f| f > 0) {
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
        "copies / delivery",
        "CPU µs / delivery",
        "open files / node",
        "machine busy",
        "settled after",
    ]);
    let mut data = Vec::new();
    let mut more = Vec::new();
    let mut idle_notes = Vec::new();
    for r in &runs {
        let s: Summary = summarize(&r.latencies_ms);
        let m = &r.measures;
        table.row(vec![
            r.label.clone(),
            format!("{} at {}/s", r.posts, sizes.prop_rate),
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max),
            format!("{:.2}%", r.ratio() * 100.0),
            m.copies_per_delivery
                .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            format!("{:.0}", m.cpu_us_per_delivery(r.delivered)),
            if m.open_files_max > 0 {
                format!("{:.0} (max {})", m.open_files_mean, m.open_files_max)
            } else {
                format!("{:.0}", m.open_files_mean)
            },
            format!(
                "{:.0}%{}",
                m.utilisation * 100.0,
                if m.utilisation > probe::BUSY_MACHINE {
                    " (over 70%: latencies include waiting for a core)"
                } else {
                    ""
                }
            ),
            r.settled.map_or_else(
                || format!("busy at {} s", SETTLE_LIMIT.as_secs()),
                |d| format!("{:.1} s", d.as_secs_f64()),
            ),
        ]);
        if let Some(b) = &m.breakdown {
            let mut t = Table::new(&["step", "p50 ms", "p99 ms", "mean in the slowest 1%, ms"]);
            for st in &b.steps {
                t.row(vec![
                    st.step.clone(),
                    ms(st.p50_ms),
                    ms(st.p99_ms),
                    ms(st.slowest_mean_ms),
                ]);
            }
            let dominant = b.dominant.as_ref().map_or_else(
                || "no delivery fully stamped".to_string(),
                |(step, wins, of)| {
                    format!("the longest step in {wins} of the slowest {of} deliveries: {step}")
                },
            );
            more.push((
                format!(
                    "Where the time goes, {} ({} deliveries stamped at every stage; {}):",
                    r.label, b.deliveries, dominant
                ),
                t,
            ));
        }
        if !m.dht_queries.is_empty() {
            idle_notes.push(format!(
                "{}: DHT queries started by the nodes while posts were delivered: {:?}; fsyncs: {}.",
                r.label, m.dht_queries, m.fsyncs
            ));
        }
        if m.idle_cpu_per_node > 0.0 {
            idle_notes.push(format!(
                "{}: at rest, each node used {:.2}% of a core.",
                r.label,
                m.idle_cpu_per_node * 100.0
            ));
        }
        data.push(json!({
            "setup": r.label, "followers": r.followers, "posts": r.posts, "rate_per_s": sizes.prop_rate,
            "latency_ms": s, "delivered": r.delivered, "expected": r.followers * r.posts,
            "delivery_ratio": r.ratio(), "duplicates_stored": r.duplicates,
            "settled_s": r.settled.map(|d| d.as_secs_f64()),
            "cpu_us_per_delivery": m.cpu_us_per_delivery(r.delivered),
            "measures": m,
        }));
    }
    let mut notes = skipped;
    notes.extend(idle_notes);
    notes.extend(runs.iter().filter_map(|r| r.note.clone()));
    if let Some(r) = runs.first() {
        notes.push(format!(
            "Data directories on {}; CPU is user + system time of every node from the \
             first post to the last delivery, divided by the deliveries; copies are post \
             copies the followers' networks took in, duplicates included; machine busy is \
             the share of all cores in use meanwhile, whoever used them.",
            r.measures.filesystem
        ));
    }
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
        more,
        seconds: started.elapsed().as_secs_f64(),
    })
}
