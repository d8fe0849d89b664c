//! Availability under churn: nodes following ~k others go on and off line with
//! heavy-tailed (Pareto) sessions while online nodes post; when a node comes online,
//! how many of its followees' unexpired posts does it hold 5 s and 60 s later?

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use starling_core::PostRef;

use crate::cluster::{Cluster, wait_for};
use crate::report::{ScenarioResult, Table};
use crate::stats::{quantile, summarize};

/// Pareto(xmin, alpha): heavy-tailed; most sessions short, a few very long.
fn pareto(rng: &mut fastrand::Rng, xmin: f64, alpha: f64) -> Duration {
    let u = rng.f64().max(1e-9);
    Duration::from_secs_f64(xmin / u.powf(1.0 / alpha))
}

struct Check {
    node: usize,
    session: u64,
    online_at: Instant,
    due: Instant,
    window: &'static str,
}

pub async fn run(sizes: &super::Sizes) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let n = sizes.churn_nodes;
    let k = sizes.churn_follows.min(n.saturating_sub(2));
    let quick = sizes.churn_secs < 60;
    let (on_min, off_min, alpha) = if quick {
        (5.5, 1.5, 1.5)
    } else {
        (10.0, 5.0, 1.5)
    };
    let mut rng = fastrand::Rng::with_seed(7);
    // Short sessions: reconnect and rediscover every 15 s rather than every minute.
    let mut c =
        Cluster::start_with(n, Duration::from_secs(24 * 3600), Duration::from_secs(15)).await?;

    tracing::info!(n, "churn: nodes started");
    // Member 0 is the bootstrap node: always on, outside the follow graph.
    let members: Vec<usize> = (1..n).collect();
    let mut follows: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in &members {
        let mut others: Vec<usize> = members.iter().copied().filter(|&j| j != i).collect();
        rng.shuffle(&mut others);
        others.truncate(k);
        follows.insert(i, others);
    }
    // The follows start on a quiet network: handles registered, first lookups over.
    let started_quiet = c.settle(Duration::from_secs(180)).await;
    tracing::info!(?started_quiet, "churn: quiet after the start");
    // Every node sends its follows in one batch, all nodes at once; timed until every
    // statement is acknowledged by its followee.
    let follows_started = Instant::now();
    let batches = futures::future::join_all(members.iter().map(|&i| {
        let targets: Vec<String> = follows[&i]
            .iter()
            .map(|&j| c.members[j].author.to_string())
            .collect();
        let node = c.node(i);
        async move { node.follow_many(&targets).await }
    }))
    .await;
    for results in batches {
        for r in results? {
            r?;
        }
    }
    let statements = members.len() * k;
    let follows_sent = follows_started.elapsed();
    tracing::info!(statements, "churn: follows sent");
    wait_for(
        Duration::from_secs(300),
        "follow statements delivered",
        // A store count per node, all at once: `status` waits for every subsystem,
        // and a busy network would make the poll itself the slowest part.
        || {
            let c = &c;
            let members = &members;
            async move {
                let pending =
                    futures::future::join_all(members.iter().map(|&i| async move {
                        c.node(i).store().outbox_len().await.unwrap_or(1)
                    }))
                    .await;
                let pending: u64 = pending.iter().sum();
                tracing::debug!(pending, at = ?follows_started.elapsed(), "churn: follow statements pending");
                pending == 0
            }
        },
    )
    .await?;
    let follows_acked = follows_started.elapsed();
    tracing::info!(?follows_acked, "churn: follows delivered");
    // The phases start on a quiet network: announcements and first catch-ups over.
    let settled = c.settle(Duration::from_secs(180)).await;
    tracing::info!(?settled, "churn: settled");

    let mut ledger: Vec<(usize, u64, Instant)> = Vec::new(); // author, seq, created
    let mut phases = Vec::new();
    for mode in [Mode::Pareto, Mode::Offline(0.3)] {
        let phase = run_phase(
            &mut c,
            &members,
            &follows,
            &mut ledger,
            &mut rng,
            mode,
            Duration::from_secs(sizes.churn_secs),
            (on_min, off_min, alpha),
        )
        .await?;
        phases.push((mode, phase));
    }
    let mut duplicates: u64 = phases.iter().map(|(_, p)| p.duplicates).sum();
    for &i in members.iter().filter(|&&i| c.running(i)) {
        duplicates += duplicates_received(c.node(i)).await;
    }
    tracing::info!("churn: checks done");
    c.shutdown().await;
    tracing::info!("churn: nodes stopped");

    let mut table = Table::new(&[
        "sessions",
        "within",
        "sessions checked",
        "mean held",
        "p10 held",
        "sessions holding 100%",
        "offline (mean)",
    ]);
    let mut data = serde_json::Map::new();
    let mut sessions_started = 0;
    for (mode, phase) in &phases {
        sessions_started += phase.sessions_started;
        let mut per_window = serde_json::Map::new();
        for window in ["5 s", "60 s"] {
            let v = phase.results.get(window).cloned().unwrap_or_default();
            let mut sorted = v.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            let full = v.iter().filter(|f| **f >= 0.999_999).count();
            let offline = format!("{:.0}%", phase.offline_mean * 100.0);
            if v.is_empty() {
                table.row(vec![
                    mode.to_string(),
                    window.into(),
                    "0".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    offline,
                ]);
            } else {
                table.row(vec![
                    mode.to_string(),
                    window.into(),
                    v.len().to_string(),
                    format!("{:.1}%", summarize(&v).mean * 100.0),
                    format!("{:.1}%", quantile(&sorted, 0.10) * 100.0),
                    format!("{:.0}%", full as f64 / v.len() as f64 * 100.0),
                    offline,
                ]);
            }
            per_window.insert(
                window.into(),
                json!({ "samples": v.len(), "fractions": v, "sessions_complete": full }),
            );
        }
        per_window.insert("offline_mean".into(), json!(phase.offline_mean));
        per_window.insert("sessions_started".into(), json!(phase.sessions_started));
        data.insert(mode.key().into(), serde_json::Value::Object(per_window));
    }
    let notes = vec![
        format!(
            "Follow statements: {statements} ({k} per node, each node's in one batch, all nodes at once, once \
             the DHT was quiet after the start ({})): all sent after {:.1} s, all acknowledged by their followees \
             after {:.1} s (polled: up to a few seconds late); the DHT was quiet {}.",
            match started_quiet {
                Some(d) => format!("{:.1} s after the nodes started", d.as_secs_f64()),
                None => "not within 180 s".into(),
            },
            follows_sent.as_secs_f64(),
            follows_acked.as_secs_f64(),
            match settled {
                Some(d) => format!("{:.1} s later", d.as_secs_f64()),
                None => "not within 180 s".into(),
            }
        ),
        format!(
            "{n} nodes (one always-on bootstrap node), each following {k} others; two phases of {} s each. \
             Pareto sessions: on and off times Pareto(α={alpha}) with minimum {on_min} s online and {off_min} s \
             offline. 30% offline: 30% of the nodes are offline at every moment (off times Pareto with minimum \
             {off_min} s); each node coming back takes the place of one that leaves, chosen at random. \
             {sessions_started} sessions started, {} posts, {duplicates} duplicate posts received (already held, \
             dropped at insert).",
            sizes.churn_secs,
            ledger.len()
        ),
        "A check counts the followees' posts created before the node came online; nodes that left before the check are not counted.".into(),
    ];
    data.insert("posts".into(), json!(ledger.len()));
    data.insert("sessions_started".into(), json!(sessions_started));
    data.insert("follow_statements".into(), json!(statements));
    data.insert(
        "follows_sent_secs".into(),
        json!(follows_sent.as_secs_f64()),
    );
    data.insert(
        "follows_acknowledged_secs".into(),
        json!(follows_acked.as_secs_f64()),
    );
    data.insert("duplicates_received".into(), json!(duplicates));
    Ok(ScenarioResult {
        id: "churn".into(),
        title: format!("3. Availability under churn ({n} nodes, ~{k} follows each)"),
        table,
        data: serde_json::Value::Object(data),
        notes,
        plot: None,
        more: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Posts a node received in this session that it already held.
async fn duplicates_received(node: &starling_node::Node) -> u64 {
    match node.status().await {
        Ok(st) => st.counters.get("received.duplicate").copied().unwrap_or(0),
        Err(_) => 0,
    }
}

/// Stops node `i`; returns the duplicate posts it received in its session.
async fn stop(c: &mut Cluster, i: usize) -> u64 {
    let dup = duplicates_received(c.node(i)).await;
    c.stop(i).await;
    dup
}

/// How nodes go on and off line in a phase.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Each node alternates Pareto-long sessions online and offline.
    Pareto,
    /// This fraction of the nodes is offline at every moment: a node whose time off
    /// is over comes back and a random online one leaves in its place.
    Offline(f64),
}

impl Mode {
    fn key(&self) -> &'static str {
        match self {
            Mode::Pareto => "pareto",
            Mode::Offline(_) => "fixed_offline",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Pareto => write!(f, "Pareto sessions"),
            Mode::Offline(x) => write!(f, "{:.0}% offline", x * 100.0),
        }
    }
}

struct Phase {
    results: HashMap<&'static str, Vec<f64>>,
    sessions_started: usize,
    /// Posts received that were already held, counted by the nodes that stopped.
    duplicates: u64,
    /// Mean fraction of the members offline, sampled every tick.
    offline_mean: f64,
}

/// One phase of churn: sessions switch per `mode` while online nodes post about 5
/// times a second in all; each node coming online is checked 5 s and 60 s later.
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    c: &mut Cluster,
    members: &[usize],
    follows: &HashMap<usize, Vec<usize>>,
    ledger: &mut Vec<(usize, u64, Instant)>,
    rng: &mut fastrand::Rng,
    mode: Mode,
    run_for: Duration,
    (on_min, off_min, alpha): (f64, f64, f64),
) -> anyhow::Result<Phase> {
    let never = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let mut duplicates = 0u64;
    // Everyone online at the start of a phase.
    for &i in members {
        if !c.running(i) {
            c.restart(i).await?;
        }
    }
    let mut next_switch: HashMap<usize, Instant> = HashMap::new();
    match mode {
        Mode::Pareto => {
            let now = Instant::now();
            for &i in members {
                next_switch.insert(i, now + pareto(rng, on_min, alpha));
            }
        }
        Mode::Offline(fraction) => {
            let mut order = members.to_vec();
            rng.shuffle(&mut order);
            let away = (members.len() as f64 * fraction).round() as usize;
            for (n, &i) in order.iter().enumerate() {
                if n < away {
                    duplicates += stop(c, i).await;
                    next_switch.insert(i, Instant::now() + pareto(rng, off_min, alpha));
                } else {
                    next_switch.insert(i, never);
                }
            }
        }
    }
    let mut session: HashMap<usize, u64> = members.iter().map(|&i| (i, 0)).collect();
    let mut checks: Vec<Check> = Vec::new();
    let mut results: HashMap<&'static str, Vec<f64>> = HashMap::new();
    let mut sessions_started = 0usize;
    let (mut offline_sum, mut samples) = (0.0, 0u64);
    let posts_per_sec = 5.0;
    let tick = Duration::from_millis(100);
    // Timed from here: the nodes taken offline at the start are not part of it.
    let end = Instant::now() + run_for;
    while Instant::now() < end {
        let now = Instant::now();
        // Sessions.
        for &i in members {
            if now < next_switch[&i] {
                continue;
            }
            if c.running(i) {
                duplicates += stop(c, i).await;
                next_switch.insert(i, Instant::now() + pareto(rng, off_min, alpha));
                continue;
            }
            let on = Instant::now();
            c.restart(i).await?;
            sessions_started += 1;
            *session.get_mut(&i).expect("member") += 1;
            for (window, after) in [("5 s", 5), ("60 s", 60)] {
                checks.push(Check {
                    node: i,
                    session: session[&i],
                    online_at: on,
                    due: on + Duration::from_secs(after),
                    window,
                });
            }
            match mode {
                Mode::Pareto => {
                    next_switch.insert(i, on + pareto(rng, on_min, alpha));
                }
                Mode::Offline(_) => {
                    next_switch.insert(i, never);
                    // One online node leaves in its place.
                    let online: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&j| j != i && c.running(j))
                        .collect();
                    if !online.is_empty() {
                        let j = online[rng.usize(..online.len())];
                        duplicates += stop(c, j).await;
                        next_switch.insert(j, Instant::now() + pareto(rng, off_min, alpha));
                    }
                }
            }
        }
        // Posts from online nodes, about `posts_per_sec` in all.
        let online: Vec<usize> = members.iter().copied().filter(|&i| c.running(i)).collect();
        offline_sum += 1.0 - online.len() as f64 / members.len().max(1) as f64;
        samples += 1;
        if !online.is_empty() {
            let p = posts_per_sec * tick.as_secs_f64() / online.len() as f64;
            for &i in &online {
                if rng.f64() < p {
                    let v = c.node(i).post(&format!("churn post by {i}")).await?;
                    ledger.push((i, v.seq, Instant::now()));
                }
            }
        }
        // Due checks, for nodes still in the same session.
        let now = Instant::now();
        let (due, later): (Vec<Check>, Vec<Check>) =
            checks.into_iter().partition(|ch| ch.due <= now);
        checks = later;
        for ch in due {
            if !c.running(ch.node) || session[&ch.node] != ch.session {
                continue; // went offline before the check
            }
            let followees = &follows[&ch.node];
            let expected: Vec<PostRef> = ledger
                .iter()
                .filter(|(a, _, t)| followees.contains(a) && *t < ch.online_at)
                .map(|(a, s, _)| PostRef {
                    author: c.members[*a].author,
                    seq: *s,
                })
                .collect();
            if expected.is_empty() {
                continue;
            }
            let held = c
                .node(ch.node)
                .store()
                .posts_raw(expected.clone())
                .await?
                .len();
            results
                .entry(ch.window)
                .or_default()
                .push(held as f64 / expected.len() as f64);
        }
        tokio::time::sleep(tick).await;
    }
    Ok(Phase {
        results,
        sessions_started,
        duplicates,
        offline_mean: offline_sum / samples.max(1) as f64,
    })
}
