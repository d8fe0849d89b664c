//! Nodes for the scenarios: in this process ([`Cluster`], real `Node`s with their
//! own store and swarm), or as separate daemons ([`start_daemon`]: this executable
//! running the embedded `starling up`, through `starling_cli::kit`). Everything
//! listens on 127.0.0.1 with port 0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use starling_cli::kit::Daemon;
pub use starling_cli::kit::wait_for;
use starling_core::AuthorId;
use starling_net::{Multiaddr, NetConfig};
use starling_node::{Node, NodeConfig, Profile, ProfileDir};

use crate::netlab::Lab;

pub fn handle(i: usize) -> String {
    format!("n{i:04}")
}

/// [`wait_for`] `check`, returning how long the wait took, or `None` at the limit.
pub async fn timed_wait<F, Fut>(limit: Duration, what: &str, check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    wait_for(limit, what, check)
        .await
        .ok()
        .map(|()| t.elapsed())
}

/// [`config`] for member `k`, listening on its lab address when `over` emulated
/// links.
fn config_at(
    k: usize,
    over: bool,
    bootstrap: Option<&Multiaddr>,
    ttl: Duration,
    maintenance: Duration,
) -> NodeConfig {
    let mut c = config(bootstrap, ttl, maintenance);
    if over && let Some(net) = c.network.as_mut() {
        net.listen = vec![
            format!("/ip4/{}/tcp/0", Lab::addr(k))
                .parse()
                .expect("an address"),
        ];
    }
    c
}

pub fn config(bootstrap: Option<&Multiaddr>, ttl: Duration, maintenance: Duration) -> NodeConfig {
    NodeConfig {
        post_ttl: ttl,
        maintenance_interval: maintenance,
        network: Some(NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("literal")],
            bootstrap: bootstrap.cloned().into_iter().collect(),
            periodic_bootstrap: None,
            // Every member shares 127.0.0.1.
            max_connections_per_ip: 0,
            ..NetConfig::default()
        }),
        ..NodeConfig::default()
    }
}

/// One in-process member: its profile, and its node while it runs.
pub struct Member {
    pub dir: PathBuf,
    pub author: AuthorId,
    pub node: Option<Node>,
    /// Over emulated links: dropping it ends the thread the node runs on.
    thread: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Nodes in this process. Member 0 is the bootstrap node. Dropping the cluster
/// without [`Cluster::shutdown`] (a scenario failed) still stops every node.
pub struct Cluster {
    pub members: Vec<Member>,
    pub boot: Multiaddr,
    pub ttl: Duration,
    pub maintenance: Duration,
    /// Nodes keep stage stamps (`starling_node::trace`).
    pub trace: bool,
    /// Emulated links: each node in a namespace of its own behind the lab's switch.
    pub lab: Option<Arc<Lab>>,
    _root: tempfile::TempDir,
}

/// Starts member `k`'s node: in this runtime, or, over emulated links, on a thread
/// and runtime of its own inside its namespace (its sockets are created there).
async fn start_member(
    lab: Option<&Arc<Lab>>,
    k: usize,
    dir: &Path,
    config: NodeConfig,
) -> anyhow::Result<(Node, Option<tokio::sync::oneshot::Sender<()>>)> {
    let Some(lab) = lab else {
        return Ok((Node::start(Profile::open(dir)?, config).await?, None));
    };
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (lab, dir) = (lab.clone(), dir.to_path_buf());
    std::thread::Builder::new()
        .name(format!("node-{k}"))
        .spawn(move || {
            let runtime = lab.enter(k).and_then(|()| {
                Ok(tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?)
            });
            let runtime = match runtime {
                Ok(r) => r,
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let node = match Profile::open(&dir) {
                    Ok(p) => Node::start(p, config).await.map_err(anyhow::Error::from),
                    Err(e) => Err(e.into()),
                };
                let ok = node.is_ok();
                let _ = started_tx.send(node);
                if ok {
                    // Until the member is stopped (its sender dropped).
                    let _ = stop_rx.await;
                }
            });
        })?;
    let node = started_rx.await.context("node thread ended")??;
    Ok((node, Some(stop_tx)))
}

impl Cluster {
    /// Creates `n` profiles and starts them all (16 at a time), with the daemon's
    /// default maintenance period.
    pub async fn start(n: usize, ttl: Duration) -> anyhow::Result<Self> {
        Self::start_with(n, ttl, NodeConfig::default().maintenance_interval).await
    }

    /// Like [`Cluster::start`], every node keeping the stage stamps of posts
    /// (`starling_node::trace`) for the latency breakdown.
    pub async fn start_traced(n: usize, ttl: Duration) -> anyhow::Result<Self> {
        Self::start_opts(n, ttl, NodeConfig::default().maintenance_interval, true).await
    }

    /// Like [`Cluster::start`], with maintenance rounds (reconnection, follower
    /// discovery) every `maintenance`.
    pub async fn start_with(
        n: usize,
        ttl: Duration,
        maintenance: Duration,
    ) -> anyhow::Result<Self> {
        Self::start_opts(n, ttl, maintenance, false).await
    }

    /// Like [`Cluster::start_traced`], over emulated links: every node in a network
    /// namespace of its own behind `lab`'s switch.
    pub async fn start_over(n: usize, ttl: Duration, lab: Lab) -> anyhow::Result<Self> {
        let maintenance = NodeConfig::default().maintenance_interval;
        Self::start_opts_in(n, ttl, maintenance, true, Some(Arc::new(lab))).await
    }

    async fn start_opts(
        n: usize,
        ttl: Duration,
        maintenance: Duration,
        trace: bool,
    ) -> anyhow::Result<Self> {
        Self::start_opts_in(n, ttl, maintenance, trace, None).await
    }

    async fn start_opts_in(
        n: usize,
        ttl: Duration,
        maintenance: Duration,
        trace: bool,
        lab: Option<Arc<Lab>>,
    ) -> anyhow::Result<Self> {
        let over = lab.is_some();
        let mk = move |k: usize, boot: Option<&Multiaddr>| NodeConfig {
            trace,
            ..config_at(k, over, boot, ttl, maintenance)
        };
        let root = tempfile::Builder::new()
            .prefix("starling-bench-")
            .tempdir()?;
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let dir = root.path().join(handle(i));
            let p = Profile::create(&dir, &handle(i), starling_node::clock::system_ms())?;
            members.push(Member {
                dir,
                author: p.identity.author(),
                node: None,
                thread: None,
            });
        }
        let (first, thread) = start_member(lab.as_ref(), 0, &members[0].dir, mk(0, None)).await?;
        let boot: Multiaddr = first
            .net()
            .context("network")?
            .status()
            .await?
            .listen_addrs
            .into_iter()
            .next()
            .context("no listen address")?;
        members[0].node = Some(first);
        members[0].thread = thread;
        let mut c = Self {
            members,
            boot,
            ttl,
            maintenance,
            trace,
            lab,
            _root: root,
        };
        let rest: Vec<usize> = (1..n).collect();
        for chunk in rest.chunks(16) {
            let started = futures::future::join_all(chunk.iter().map(|&i| {
                let (dir, config) = (c.members[i].dir.clone(), mk(i, Some(&c.boot)));
                let lab = c.lab.clone();
                async move { start_member(lab.as_ref(), i, &dir, config).await }
            }))
            .await;
            for (&i, started) in chunk.iter().zip(started) {
                let (node, thread) = started?;
                c.members[i].node = Some(node);
                c.members[i].thread = thread;
            }
        }
        Ok(c)
    }

    /// Waits until no running member has a DHT query in flight (start-up lookups,
    /// announcements and bootstraps are over), at most `limit`. Returns how long
    /// that took, or `None` if the cluster was still busy at the limit.
    pub async fn settle(&self, limit: Duration) -> Option<Duration> {
        timed_wait(limit, "the DHT to go quiet", || async {
            for n in self.members.iter().filter_map(|m| m.node.as_ref()) {
                if let Ok(st) = n.status().await
                    && st.network.is_some_and(|n| n.dht_queries > 0)
                {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// Where the members' profiles (and databases) are.
    pub fn root(&self) -> &Path {
        self._root.path()
    }

    pub fn node(&self, i: usize) -> &Node {
        self.members[i].node.as_ref().expect("member is running")
    }

    pub fn running(&self, i: usize) -> bool {
        self.members[i].node.is_some()
    }

    /// Starts a stopped member again (same profile and database).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].node.is_none() {
            let config = NodeConfig {
                trace: self.trace,
                ..config_at(
                    i,
                    self.lab.is_some(),
                    Some(&self.boot),
                    self.ttl,
                    self.maintenance,
                )
            };
            let dir = self.members[i].dir.clone();
            let (node, thread) = start_member(self.lab.as_ref(), i, &dir, config).await?;
            self.members[i].node = Some(node);
            self.members[i].thread = thread;
        }
        Ok(())
    }

    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.members[i].node.take() {
            n.shutdown().await;
        }
        self.members[i].thread = None;
    }

    /// Stops every member, all at once.
    pub async fn shutdown(mut self) {
        let nodes: Vec<Node> = self
            .members
            .iter_mut()
            .filter_map(|m| m.node.take())
            .collect();
        futures::future::join_all(nodes.iter().map(|n| n.shutdown())).await;
        for m in &mut self.members {
            m.thread = None;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(n) = m.node.take() {
                n.stop_now();
            }
        }
    }
}

/// Waits until none of `daemons` has a DHT query in flight, at most `limit`; like
/// [`Cluster::settle`].
pub async fn settle_daemons(daemons: &[&Daemon], limit: Duration) -> Option<Duration> {
    timed_wait(limit, "the DHT to go quiet", || async {
        for d in daemons {
            let queries = d
                .get("/status")
                .await
                .map(|st| st["network"]["dht_queries"].as_u64().unwrap_or(0));
            if !queries.is_ok_and(|n| n == 0) {
                return false;
            }
        }
        true
    })
    .await
}

/// This process's resident memory, KiB.
pub fn self_rss_kib() -> u64 {
    rss_kib_of("self").unwrap_or(0)
}

/// Memory of a process, KiB: resident (RSS), proportional (PSS: shared pages such
/// as the executable's code divided among the processes mapping them), and
/// anonymous (heap and stacks: what each extra node really costs).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub anon_kib: u64,
}

pub fn mem_of(pid: &str) -> Option<Mem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Some(Mem {
        rss_kib: field("Rss:"),
        pss_kib: field("Pss:"),
        anon_kib: field("Anonymous:"),
    })
}

pub fn rss_kib_of(pid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Starts a daemon in its own process, this executable running the embedded
/// `starling up` with `extra` options, on the profile `root/name` (created if
/// needed).
pub async fn start_daemon(root: &Path, name: &str, extra: &[String]) -> anyhow::Result<Daemon> {
    let dir = ProfileDir::new(root.join(name));
    Profile::open_or_create(dir.path(), name, starling_node::clock::system_ms())?;
    let mut starling = Command::new(std::env::current_exe()?);
    starling.arg("starling").env("RUST_LOG", "warn");
    // Every daemon shares 127.0.0.1: no per-address limit.
    let mut args = vec!["--max-connections-per-ip".to_string(), "0".to_string()];
    args.extend_from_slice(extra);
    Daemon::start(starling, &dir, &args)
        .await
        .with_context(|| format!("daemon {name} did not start"))
}

/// The memory of a daemon's process.
pub fn daemon_mem(d: &Daemon) -> Option<Mem> {
    mem_of(&d.pid().to_string())
}
