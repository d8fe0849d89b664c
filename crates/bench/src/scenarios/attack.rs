//! Under attack: an author posts to F followers (separate processes) while one
//! hostile peer, built on the network crate and speaking the real protocols, floods
//! every node: forged posts (bad signatures) and valid-looking ones (signed by the
//! flooder, on the author's topic) by gossip, sync requests, DHT PUTs of ever newer
//! profile versions, and provider announcements for random feeds. The same run
//! without the flood comes first; both are reported side by side, with what became
//! of the flooder and every node's memory and CPU time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use starling_core::records::{feed_key, profile_key};
use starling_core::{
    AuthorId, Identity, Post, PostContent, ProfileContent, ProfileRecord, Timestamp,
};
use starling_net::{MessageAcceptance, Net, NetConfig, NetEvent, PeerId, SyncRequest};
use starling_node::clock::system_ms;
use tokio::sync::watch;

use super::propagation::{self, Extras, Run};
use crate::report::{ScenarioResult, Table};
use crate::stats::{ms, summarize};

/// Each kind of flood message, per second (five kinds: 2,500 messages/s in all). The
/// flooder runs on this machine, sharing its two cores with the nodes: a fixed rate
/// keeps it from simply starving them of CPU, which a remote attacker could not do.
const PER_KIND_PER_SEC: u64 = 500;
/// Sync requests waiting for answers at once.
const SYNCS_IN_FLIGHT: usize = 32;
/// The flood never outlives this, whatever happens to the run.
const FLOOD_LIMIT: Duration = Duration::from_secs(300);

/// What the flooder sent, and what it got back.
#[derive(Debug, Default)]
pub struct FloodCounts {
    pub forged: AtomicU64,
    pub foreign: AtomicU64,
    pub syncs_sent: AtomicU64,
    pub syncs_answered: AtomicU64,
    pub puts: AtomicU64,
    pub provides: AtomicU64,
    pub dials_refused: AtomicU64,
}

pub struct Flood {
    net: Net,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counts: Arc<FloodCounts>,
    targets: Vec<PeerId>,
    started: Instant,
}

/// What became of the flood.
pub struct FloodOutcome {
    pub seconds: f64,
    pub sent: Value,
    /// Targets still connected to the flooder at the end.
    pub still_connected: usize,
}

fn post_by(id: &Identity, seq: u64, body: String) -> Vec<u8> {
    let ts = system_ms();
    Post::sign(
        PostContent {
            author: id.author(),
            seq,
            ts: Timestamp::from_parts(ts, 0),
            expires_at: ts + 3_600_000,
            body,
            repost_of: None,
        },
        id,
    )
    .expect("a short post signs")
    .into_bytes()
}

impl Flood {
    /// Connects to every target (`/ip4/.../p2p/<id>`) and starts flooding.
    pub async fn start(targets: &[String], author: AuthorId) -> anyhow::Result<Self> {
        let id = Identity::generate();
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            bootstrap: Vec::new(),
            periodic_bootstrap: None,
            ..NetConfig::default()
        };
        let (net, mut events) = Net::start(&id, config).await?;
        let mut addrs = Vec::new();
        let mut peers = Vec::new();
        for t in targets {
            let addr: starling_net::Multiaddr = t.parse()?;
            let peer = t
                .rsplit('/')
                .next()
                .and_then(|p| p.parse::<PeerId>().ok())
                .ok_or_else(|| anyhow::anyhow!("{t} has no peer id"))?;
            net.dial(addr.clone()).await?;
            addrs.push(addr);
            peers.push(peer);
        }
        let (stop, stopped) = watch::channel(false);
        let counts = Arc::new(FloodCounts::default());
        let mut tasks = Vec::new();

        // The flooder's own events: gossip ignored (it forwards nothing), requests
        // left unanswered.
        let n = net.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let NetEvent::Gossip { id, source, .. } = ev {
                    let _ = n
                        .report(vec![(id, source, MessageAcceptance::Ignore)])
                        .await;
                }
            }
        }));

        let period = Duration::from_micros(1_000_000 / PER_KIND_PER_SEC);
        let every = move || {
            let mut t = tokio::time::interval(period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            t
        };
        let runs = move |stopped: &watch::Receiver<bool>, started: Instant| {
            !*stopped.borrow() && started.elapsed() < FLOOD_LIMIT
        };
        let started = Instant::now();

        // Gossip on the author's topic: forged "author" posts, and posts signed by the
        // flooder itself.
        {
            let (net, counts, stopped, id) =
                (net.clone(), counts.clone(), stopped.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = every();
                let mut i = 0u64;
                while runs(&stopped, started) {
                    tick.tick().await;
                    i += 1;
                    let mut forged = post_by(&id, i, format!("forged {i}"));
                    forged[1..33].copy_from_slice(author.as_bytes());
                    if net.publish(author, forged).await.is_ok() {
                        counts.forged.fetch_add(1, Ordering::Relaxed);
                    }
                    let foreign = post_by(&id, i, format!("valid-looking {i}"));
                    if net.publish(author, foreign).await.is_ok() {
                        counts.foreign.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        // Sync requests, round robin over the targets.
        {
            let (net, counts, stopped, peers) =
                (net.clone(), counts.clone(), stopped.clone(), peers.clone());
            tasks.push(tokio::spawn(async move {
                let slots = Arc::new(tokio::sync::Semaphore::new(SYNCS_IN_FLIGHT));
                let mut tick = every();
                let mut i = 0usize;
                while runs(&stopped, started) {
                    tick.tick().await;
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let peer = peers[i % peers.len()];
                    i += 1;
                    let (net, counts) = (net.clone(), counts.clone());
                    counts.syncs_sent.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let req = SyncRequest {
                            author: author.as_bytes().to_vec(),
                            after_seq: 0,
                            limit: 256,
                        };
                        if net.sync(peer, req).await.is_ok() {
                            counts.syncs_answered.fetch_add(1, Ordering::Relaxed);
                        }
                        drop(permit);
                    });
                }
            }));
        }
        // DHT: ever newer profile versions, and provider announcements for random
        // feeds. Each is a Kademlia query of its own (bounded by the swarm's limits).
        {
            let (net, counts, stopped, id) =
                (net.clone(), counts.clone(), stopped.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = every();
                let mut v = system_ms() << 16;
                while runs(&stopped, started) {
                    tick.tick().await;
                    v += 1;
                    let Ok(profile) = ProfileRecord::sign(
                        ProfileContent {
                            owner: id.author(),
                            version: v,
                            handle: None,
                            head_seq: v,
                            updated_at: system_ms(),
                        },
                        &id,
                    ) else {
                        continue;
                    };
                    let (n, c) = (net.clone(), counts.clone());
                    let key = profile_key(&id.author());
                    tokio::spawn(async move {
                        if n.put_record(key, profile.into_bytes()).await.is_ok() {
                            c.puts.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    let (n, c) = (net.clone(), counts.clone());
                    let key = feed_key(&Identity::generate().author());
                    tokio::spawn(async move {
                        if n.start_providing(key).await.is_ok() {
                            c.provides.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            }));
        }
        // A banned or disconnected flooder keeps knocking.
        {
            let (net, counts, mut stopped) = (net.clone(), counts.clone(), stopped.clone());
            tasks.push(tokio::spawn(async move {
                while runs(&stopped, started) {
                    for a in &addrs {
                        if net.dial(a.clone()).await.is_err() {
                            counts.dials_refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stopped.changed() => {}
                    }
                }
            }));
        }
        Ok(Self {
            net,
            stop,
            tasks,
            counts,
            targets: peers,
            started,
        })
    }

    pub async fn stop(self) -> FloodOutcome {
        let _ = self.stop.send(true);
        let seconds = self.started.elapsed().as_secs_f64();
        let connected = self
            .net
            .status()
            .await
            .map(|s| s.connected_peers)
            .unwrap_or_default();
        let still_connected = self
            .targets
            .iter()
            .filter(|p| connected.contains(p))
            .count();
        self.net.shutdown().await;
        for t in self.tasks {
            t.abort();
        }
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FloodOutcome {
            seconds,
            still_connected,
            sent: json!({
                "forged_posts": get(&c.forged),
                "valid_looking_posts": get(&c.foreign),
                "sync_requests": get(&c.syncs_sent),
                "sync_answered": get(&c.syncs_answered),
                "dht_puts_acknowledged": get(&c.puts),
                "provider_adds_acknowledged": get(&c.provides),
                "dials_refused": get(&c.dials_refused),
            }),
        }
    }
}

fn counter(st: &Value, path: &[&str]) -> u64 {
    path.iter().fold(st, |v, p| &v[*p]).as_u64().unwrap_or(0)
}

/// What every node did about the flood, summed over the nodes.
fn fate(statuses: &[(String, Value)]) -> Value {
    let sum = |path: &[&str]| -> u64 { statuses.iter().map(|(_, s)| counter(s, path)).sum() };
    json!({
        "peers_banned": sum(&["network", "counters", "peers_banned"]),
        "rejected_bad_signature": sum(&["rejected", "bad_signature"]),
        "rejected_wrong_author": sum(&["rejected", "wrong_author"]) + sum(&["rejected", "wrong_topic"]),
        "ignored_throttled": sum(&["counters", "ignored.throttled"]),
        "dht_writes_throttled": sum(&["network", "counters", "dht_writes_throttled"]),
        "records_refused": sum(&["network", "counters", "records_refused"]),
        "providers_evicted": sum(&["network", "counters", "providers_evicted"]),
        "connections_refused_banned": sum(&["network", "counters", "connections_refused_ip_banned"]),
    })
}

pub async fn run(sizes: &super::Sizes) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let f = sizes.attack_followers;
    let (posts, rate) = (sizes.attack_posts, sizes.attack_rate);
    let quiet = propagation::processes_with(f, posts, rate, false).await?;
    let attacked = propagation::processes_with(f, posts, rate, true).await?;

    let mut table = Table::new(&[
        "run",
        "p50 ms",
        "p99 ms",
        "delivered",
        "CPU ms per delivered post, all nodes",
        "largest node RSS MiB",
        "mean node RSS MiB",
    ]);
    let row = |label: &str, (r, x): &(Run, Extras)| {
        let s = summarize(&r.latencies_ms);
        let rss: Vec<u64> = x.rss_kib.iter().map(|(_, k)| *k).collect();
        let max = rss.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
        let mean = rss.iter().sum::<u64>() as f64 / rss.len().max(1) as f64 / 1024.0;
        vec![
            label.to_string(),
            ms(s.p50),
            ms(s.p99),
            format!("{}/{}", r.delivered, r.followers * r.posts),
            format!("{:.2}", x.cpu_s * 1000.0 / r.delivered.max(1) as f64),
            format!("{max:.1}"),
            format!("{mean:.1}"),
        ]
    };
    table.row(row("quiet", &quiet));
    table.row(row("under attack", &attacked));

    let (qs, as_) = (
        summarize(&quiet.0.latencies_ms),
        summarize(&attacked.0.latencies_ms),
    );
    let ratio = as_.p99 / qs.p99.max(0.001);
    let flood = attacked.1.flood.as_ref();
    let fate = fate(&attacked.1.statuses);
    let mut notes = vec![
        format!(
            "{f} followers as processes, {posts} posts at {rate}/s. The flooder (in the \
             bench's process, on the same two cores) sent up to {PER_KIND_PER_SEC} messages \
             of each kind per second to all {} nodes, from just before the first post to \
             the end of the run.",
            f + 1,
        ),
        format!(
            "p99 under attack / quiet: {ratio:.2}x (target: within 2x){}.",
            if ratio <= 2.0 { ", met" } else { ", NOT met" }
        ),
    ];
    if let Some(fl) = flood {
        notes.push(format!(
            "The flooder, over {:.0} s: sent {}; at the end still connected to {} of {} nodes. \
             The nodes: {}.",
            fl.seconds,
            fl.sent,
            fl.still_connected,
            f + 1,
            fate
        ));
    }
    let data = json!({
        "followers": f, "posts": posts, "rate_per_s": rate,
        "quiet": {"latency_ms": qs, "delivered": quiet.0.delivered, "cpu_s": quiet.1.cpu_s,
                  "rss_kib": quiet.1.rss_kib},
        "attack": {"latency_ms": as_, "delivered": attacked.0.delivered, "cpu_s": attacked.1.cpu_s,
                   "rss_kib": attacked.1.rss_kib,
                   "flood": flood.map(|fl| json!({"seconds": fl.seconds, "sent": fl.sent,
                       "still_connected": fl.still_connected})),
                   "fate": fate},
        "p99_ratio": ratio,
    });
    Ok(ScenarioResult {
        id: "attack".into(),
        title: "8. Under attack: one peer floods while an author posts".into(),
        table,
        data,
        notes,
        plot: None,
        more: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
