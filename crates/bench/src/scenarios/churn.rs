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
    // One follow after another: all at once, the follows' announcements and
    // deliveries swamp two cores.
    let mut follows: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in &members {
        let mut others: Vec<usize> = members.iter().copied().filter(|&j| j != i).collect();
        rng.shuffle(&mut others);
        others.truncate(k);
        for &j in &others {
            c.node(i).follow(&c.members[j].author.to_string()).await?;
        }
        follows.insert(i, others);
    }
    tracing::info!("churn: follows sent");
    wait_for(
        Duration::from_secs(300),
        "follow statements delivered",
        || async {
            let mut pending = 0;
            for &i in &members {
                pending += c
                    .node(i)
                    .status()
                    .await
                    .map(|s| s.outbox_pending)
                    .unwrap_or(1);
            }
            pending == 0
        },
    )
    .await?;

    tracing::info!("churn: follows delivered");
    let run_for = Duration::from_secs(sizes.churn_secs);
    let t_start = Instant::now();
    let end = t_start + run_for;
    let mut next_switch: HashMap<usize, Instant> = members
        .iter()
        .map(|&i| (i, t_start + pareto(&mut rng, on_min, alpha)))
        .collect();
    let mut session: HashMap<usize, u64> = members.iter().map(|&i| (i, 0)).collect();
    let mut ledger: Vec<(usize, u64, Instant)> = Vec::new(); // author, seq, created
    let mut checks: Vec<Check> = Vec::new();
    let mut results: HashMap<&'static str, Vec<f64>> = HashMap::new();
    let mut duplicates = 0u64;
    let mut sessions_started = 0usize;
    let posts_per_sec = 5.0;
    let tick = Duration::from_millis(100);

    while Instant::now() < end {
        let now = Instant::now();
        // Sessions.
        for &i in &members {
            if now < next_switch[&i] {
                continue;
            }
            if c.running(i) {
                if let Ok(st) = c.node(i).status().await {
                    duplicates += st.counters.get("received.duplicate").copied().unwrap_or(0);
                }
                c.stop(i).await;
                next_switch.insert(i, Instant::now() + pareto(&mut rng, off_min, alpha));
            } else {
                let on = Instant::now();
                c.restart(i).await?;
                sessions_started += 1;
                *session.get_mut(&i).expect("member") += 1;
                next_switch.insert(i, on + pareto(&mut rng, on_min, alpha));
                for (window, after) in [("5 s", 5), ("60 s", 60)] {
                    checks.push(Check {
                        node: i,
                        session: session[&i],
                        online_at: on,
                        due: on + Duration::from_secs(after),
                        window,
                    });
                }
            }
        }
        // Posts from online nodes, about `posts_per_sec` in all.
        let online: Vec<usize> = members.iter().copied().filter(|&i| c.running(i)).collect();
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
    for &i in &members {
        if c.running(i)
            && let Ok(st) = c.node(i).status().await
        {
            duplicates += st.counters.get("received.duplicate").copied().unwrap_or(0);
        }
    }
    tracing::info!("churn: checks done");
    c.shutdown().await;
    tracing::info!("churn: nodes stopped");

    let mut table = Table::new(&[
        "within",
        "sessions checked",
        "mean held",
        "p10 held",
        "sessions holding 100%",
    ]);
    let mut data = serde_json::Map::new();
    for window in ["5 s", "60 s"] {
        let v = results.get(window).cloned().unwrap_or_default();
        let mut sorted = v.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let full = v.iter().filter(|f| **f >= 0.999_999).count();
        if v.is_empty() {
            table.row(vec![
                window.into(),
                "0".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        } else {
            table.row(vec![
                window.into(),
                v.len().to_string(),
                format!("{:.1}%", summarize(&v).mean * 100.0),
                format!("{:.1}%", quantile(&sorted, 0.10) * 100.0),
                format!("{:.0}%", full as f64 / v.len() as f64 * 100.0),
            ]);
        }
        data.insert(
            window.into(),
            json!({ "samples": v.len(), "fractions": v, "sessions_complete": full }),
        );
    }
    let notes = vec![
        format!(
            "{n} nodes (one always-on bootstrap node), each following {k} others; sessions Pareto(α={alpha}) with \
             minimum {on_min} s online and {off_min} s offline; {} s run, {} sessions started, {} posts, \
             {duplicates} duplicate posts received (already held, dropped at insert).",
            sizes.churn_secs,
            sessions_started,
            ledger.len()
        ),
        "A check counts the followees' posts created before the node came online; nodes that left before the check are not counted.".into(),
    ];
    data.insert("posts".into(), json!(ledger.len()));
    data.insert("sessions_started".into(), json!(sessions_started));
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
