//! DHT: handle resolution latency (one Kademlia lookup of a name claim) on N nodes,
//! with every node up and with 10% of them dead.

use std::time::{Duration, Instant};

use serde_json::json;
use starling_core::records::name_key;
use starling_core::{Handle, NameClaim};
use starling_net::GetMode;
use starling_node::HandleState;

use crate::cluster::{Cluster, handle, wait_for};
use crate::report::{ScenarioResult, Table};
use crate::stats::{ms, summarize};
use crate::svg;

struct Lookups {
    latencies: Vec<f64>,
    ok: usize,
    tried: usize,
}

async fn lookups(c: &Cluster, alive: &[usize], count: usize, rng: &mut fastrand::Rng) -> Lookups {
    let mut out = Lookups {
        latencies: Vec::with_capacity(count),
        ok: 0,
        tried: 0,
    };
    for _ in 0..count {
        let from = alive[rng.usize(..alive.len())];
        let mut to = from;
        while to == from {
            to = rng.usize(1..c.members.len());
        }
        let key = name_key(&Handle::parse(&handle(to)).expect("valid"));
        let net = c.node(from).net().expect("network").clone();
        let t = Instant::now();
        let found = net.get_record(key, GetMode::First).await;
        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
        out.tried += 1;
        let right = found
            .ok()
            .and_then(|v| v.into_iter().next())
            .and_then(|a| NameClaim::decode(&a.value).ok())
            .is_some_and(|claim| claim.owner == c.members[to].author);
        if right {
            out.ok += 1;
            out.latencies.push(elapsed);
        }
    }
    out
}

pub async fn run(sizes: &super::Sizes, out: &std::path::Path) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let mut table = Table::new(&[
        "nodes", "dead", "lookups", "resolved", "p50 ms", "p99 ms", "max ms",
    ]);
    let mut data = Vec::new();
    let mut series = Vec::new();
    let mut notes = Vec::new();
    let mut rng = fastrand::Rng::with_seed(11);
    for &n in &sizes.dht_nodes {
        let mut c = match Cluster::start(n, Duration::from_secs(24 * 3600)).await {
            Ok(c) => c,
            Err(e) => {
                notes.push(format!(
                    "{n} nodes could not be started on this machine: {e:#}"
                ));
                continue;
            }
        };
        let setup = Instant::now();
        let registered = wait_for(
            Duration::from_secs(300),
            "every handle registered",
            || async { (1..n).all(|i| c.node(i).handle_state() == HandleState::Registered) },
        )
        .await;
        if let Err(e) = registered {
            notes.push(format!("{n} nodes: {e}"));
        }
        let registered_after = setup.elapsed();
        // Measure a network at rest, not one still announcing itself.
        let settled = c.settle(Duration::from_secs(30)).await;
        notes.push(format!(
            "{n} nodes: all handles registered {:.1} s after the last node started; {}.",
            registered_after.as_secs_f64(),
            settled.map_or_else(
                || "DHT still busy 30 s later (measured anyway)".to_string(),
                |d| format!("no DHT query in flight {:.1} s later", d.as_secs_f64())
            )
        ));
        let alive: Vec<usize> = (0..n).collect();
        let all_up = lookups(&c, &alive, sizes.dht_lookups, &mut rng).await;
        // Kill 10% (not the bootstrap node); the others still list them.
        let mut victims: Vec<usize> = (1..n).collect();
        rng.shuffle(&mut victims);
        victims.truncate((n / 10).max(1));
        for &v in &victims {
            c.stop(v).await;
        }
        let alive: Vec<usize> = (0..n).filter(|i| c.running(*i)).collect();
        let some_dead = lookups(&c, &alive, sizes.dht_lookups, &mut rng).await;
        for (dead, r) in [(0, &all_up), (victims.len(), &some_dead)] {
            let s = summarize(&r.latencies);
            table.row(vec![
                n.to_string(),
                format!("{dead} ({:.0}%)", dead as f64 * 100.0 / n as f64),
                r.tried.to_string(),
                format!("{:.1}%", r.ok as f64 * 100.0 / r.tried.max(1) as f64),
                ms(s.p50),
                ms(s.p99),
                ms(s.max),
            ]);
            data.push(json!({ "nodes": n, "dead": dead, "tried": r.tried, "resolved": r.ok, "latency_ms": s }));
            series.push((format!("{n} nodes, {dead} dead"), r.latencies.clone()));
        }
        c.shutdown().await;
    }
    let up: Vec<String> = data
        .iter()
        .filter(|d| d["dead"] == 0)
        .map(|d| {
            format!(
                "{} nodes p99 {} ms",
                d["nodes"],
                ms(d["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN))
            )
        })
        .collect();
    if up.len() >= 2 {
        notes.push(format!(
            "Lookup latency vs network size, all up: {}.",
            up.join(", ")
        ));
    }
    notes.push("A lookup is resolved when the first valid claim returned names the right key (a node holding the record answers from its own store).".into());
    let plot = "dht.svg".to_string();
    std::fs::write(
        out.join(&plot),
        svg::cdf(
            "Handle resolution (Kademlia get_record)",
            "latency (ms, log scale)",
            &series,
        ),
    )?;
    Ok(ScenarioResult {
        id: "dht".into(),
        title: "7. DHT: handle resolution".into(),
        table,
        data: json!(data),
        notes,
        plot: Some(plot),
        more: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
