//! The scenarios. Each returns a [`ScenarioResult`](crate::report::ScenarioResult)
//! built only from what it measured.

pub mod attack;
pub mod catchup;
pub mod churn;
pub mod dht;
pub mod ingest;
pub mod memory;
pub mod propagation;
pub mod timeline;

/// How big each scenario runs.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub prop_followers: Vec<usize>,
    pub prop_proc_followers: Vec<usize>,
    pub prop_posts: usize,
    pub prop_rate: f64,
    /// Propagation in one process over emulated links (`netlab`): followers (0:
    /// none), one-way delay, loss.
    pub link_followers: usize,
    pub link_delay: std::time::Duration,
    pub link_loss: f64,
    pub catchup_posts: usize,
    pub churn_nodes: usize,
    pub churn_follows: usize,
    pub churn_secs: u64,
    pub ingest_posts: usize,
    pub timeline_posts: usize,
    pub timeline_authors: usize,
    pub timeline_queries: usize,
    pub memory_procs: usize,
    pub memory_inproc: usize,
    pub memory_load_posts: usize,
    pub memory_follow_counts: Vec<usize>,
    pub dht_nodes: Vec<usize>,
    pub dht_lookups: usize,
    pub attack_followers: usize,
    pub attack_posts: usize,
    pub attack_rate: f64,
}

/// Open files one in-process node may need at its busiest (database files, listener,
/// connections during the DHT queries of its first seconds), counting both ends of
/// in-process connections.
pub const FDS_PER_NODE: u64 = 160;

impl Sizes {
    /// Drops the in-process sizes the open-file limit cannot hold ("where the machine
    /// allows"); returns the sizes kept and a description of each one dropped.
    pub fn fit(mut self, fd_limit: u64) -> (Self, Vec<String>) {
        let max_nodes = (fd_limit / FDS_PER_NODE) as usize;
        let mut dropped = Vec::new();
        self.prop_followers.retain(|&f| {
            let fits = f < max_nodes;
            if !fits {
                dropped.push(format!("propagation in one process with F={f}"));
            }
            fits
        });
        self.dht_nodes.retain(|&n| {
            let fits = n <= max_nodes;
            if !fits {
                dropped.push(format!("DHT with {n} nodes"));
            }
            fits
        });
        self.churn_nodes = self.churn_nodes.min(max_nodes);
        (self, dropped)
    }

    pub fn default_profile() -> Self {
        Self {
            prop_followers: vec![10, 100, 500],
            prop_proc_followers: vec![10, 100],
            prop_posts: 200,
            prop_rate: 20.0,
            link_followers: 20,
            link_delay: std::time::Duration::from_millis(50),
            link_loss: 0.01,
            catchup_posts: 10_000,
            churn_nodes: 100,
            churn_follows: 20,
            churn_secs: 90,
            ingest_posts: 100_000,
            timeline_posts: 1_000_000,
            timeline_authors: 1_000,
            timeline_queries: 2_000,
            memory_procs: 5,
            memory_inproc: 20,
            memory_load_posts: 100,
            memory_follow_counts: vec![0, 100, 1_000],
            dht_nodes: vec![100, 500],
            dht_lookups: 300,
            attack_followers: 10,
            attack_posts: 100,
            attack_rate: 5.0,
        }
    }

    pub fn quick() -> Self {
        Self {
            prop_followers: vec![5],
            prop_proc_followers: vec![3],
            prop_posts: 20,
            prop_rate: 20.0,
            link_followers: 3,
            link_delay: std::time::Duration::from_millis(50),
            link_loss: 0.01,
            catchup_posts: 500,
            churn_nodes: 10,
            churn_follows: 3,
            churn_secs: 18,
            ingest_posts: 2_000,
            timeline_posts: 10_000,
            timeline_authors: 100,
            timeline_queries: 200,
            memory_procs: 2,
            memory_inproc: 3,
            memory_load_posts: 20,
            memory_follow_counts: vec![0, 50],
            dht_nodes: vec![10],
            dht_lookups: 30,
            attack_followers: 3,
            attack_posts: 10,
            attack_rate: 5.0,
        }
    }
}
