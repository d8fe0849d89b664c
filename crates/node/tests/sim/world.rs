//! The simulator's world: real nodes (the node crate's code, unchanged) with inline
//! SQLite stores in a temporary directory, on `starling_net::sim`'s network, on
//! tokio's paused clock. One seed drives everything random; the same seed replays
//! the same run.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use starling_core::{AuthorId, Identity, Post};
use starling_net::PeerId;
use starling_net::sim::{Faults, SimNetwork};
use starling_node::clock::Clock;
use starling_node::{Node, NodeConfig, Profile};
use starling_store::StoreConfig;

/// 2026-01-01, the simulated wall clock's start.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

pub struct SimNode {
    pub identity: Identity,
    dir: PathBuf,
    pub node: Option<Node>,
    /// How far this machine's clock is off (it stays off across restarts).
    pub clock_offset_ms: f64,
}

impl SimNode {
    pub fn author(&self) -> AuthorId {
        self.identity.author()
    }
    pub fn peer(&self) -> PeerId {
        self.author().peer_id()
    }
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("node is running")
    }
}

pub struct World {
    pub rng: fastrand::Rng,
    pub net: SimNetwork,
    pub nodes: Vec<SimNode>,
    pub config: NodeConfig,
    start: tokio::time::Instant,
    /// What happened, printed when a run fails.
    pub log: String,
    _dir: tempfile::TempDir,
}

/// Temporary directories on tmpfs when there is one: SQLite's syncs cost nothing.
fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("starling-sim")
            .tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("temporary directory")
}

impl World {
    /// `n` nodes (not started yet), named n0, n1, ...
    pub fn new(seed: u64, n: usize, post_ttl: Duration) -> Self {
        let dir = temp_dir();
        let mut rng = fastrand::Rng::with_seed(seed);
        let nodes = (0..n)
            .map(|i| {
                let mut secret = [0u8; 32];
                rng.fill(&mut secret);
                secret[0] = i as u8; // distinct even if the generator repeated
                SimNode {
                    identity: Identity::from_secret_bytes(secret),
                    dir: dir.path().join(format!("n{i}")),
                    node: None,
                    clock_offset_ms: 0.0,
                }
            })
            .collect();
        let config = NodeConfig {
            post_ttl,
            gc_interval: Duration::from_secs(5),
            maintenance_interval: Duration::from_secs(20),
            store: StoreConfig {
                inline: true,
                ..StoreConfig::default()
            },
            network: None,
            ..NodeConfig::default()
        };
        Self {
            net: SimNetwork::new(rng.u64(..), Faults::NONE),
            rng,
            nodes,
            config,
            start: tokio::time::Instant::now(),
            log: String::new(),
            _dir: dir,
        }
    }

    /// The true time of the simulated world, Unix ms.
    pub fn now_ms(&self) -> u64 {
        EPOCH_MS + self.start.elapsed().as_millis() as u64
    }

    pub fn note(&mut self, what: impl std::fmt::Display) {
        let t = self.start.elapsed().as_millis();
        let _ = writeln!(self.log, "{t:>8} ms  {what}");
    }

    /// Starts (or restarts, from its directory) node `i`.
    pub async fn start(&mut self, i: usize) {
        let now = self.now_ms();
        let n = &self.nodes[i];
        let profile = if n.dir.join("profile.json").exists() {
            Profile::open(&n.dir).expect("open profile")
        } else {
            Profile::create_with(&n.dir, &format!("n{i}"), n.identity.clone(), now)
                .expect("create profile")
        };
        let clock = Clock::following_tokio(now);
        clock.set_offset_ms(n.clock_offset_ms);
        let (net, events) = self.net.join(n.peer());
        let node = Node::start_on(profile, self.config.clone(), clock, net, events)
            .await
            .expect("node starts");
        self.nodes[i].node = Some(node);
        self.note(format_args!("n{i} up"));
    }

    /// Node `i`'s process dies: no shutdown, nothing flushed beyond what was
    /// committed.
    pub fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].node.take() {
            self.net.crash(self.nodes[i].peer());
            node.stop_now();
            self.note(format_args!("n{i} crashed"));
        }
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    /// Sets how far node `i`'s clock is off (it stays so across restarts).
    pub fn set_clock_offset(&mut self, i: usize, offset_ms: f64) {
        self.nodes[i].clock_offset_ms = offset_ms;
        if let Some(node) = &self.nodes[i].node {
            node.clock().set_offset_ms(offset_ms);
        }
        self.note(format_args!("n{i} clock jumps to {offset_ms:+.0} ms off"));
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.net.set_faults(faults);
        self.note(format_args!("faults {faults:?}"));
    }

    /// Lets simulated time pass (instantly, on the paused clock).
    pub async fn wait(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// A random wait of up to `max`.
    pub async fn wait_up_to(&mut self, max: Duration) {
        let ms = self.rng.u64(0..=max.as_millis() as u64);
        self.wait(Duration::from_millis(ms)).await;
    }

    /// Heals the network, brings every node back and puts every clock right.
    pub async fn heal(&mut self) {
        self.set_faults(Faults::NONE);
        for i in 0..self.nodes.len() {
            if self.nodes[i].clock_offset_ms != 0.0 {
                self.set_clock_offset(i, 0.0);
            }
            if !self.is_up(i) {
                self.start(i).await;
            }
        }
    }

    /// The unexpired posts of `author` that node `i` holds, in seq order.
    pub async fn feed(&self, i: usize, author: AuthorId, now_ms: u64) -> Vec<Post> {
        self.nodes[i]
            .node()
            .store()
            .posts_after(author, 0, now_ms, 100_000)
            .await
            .expect("read feed")
    }

    pub async fn stop_all(&mut self) {
        for n in &mut self.nodes {
            if let Some(node) = n.node.take() {
                node.shutdown().await;
            }
        }
    }
}
