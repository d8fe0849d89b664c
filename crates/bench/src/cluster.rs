//! Nodes for the scenarios: in this process ([`Cluster`], real `Node`s with their
//! own store and swarm), or as separate daemons ([`Proc`], this executable running
//! the embedded `starling up`). Everything listens on 127.0.0.1 with port 0.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use starling_core::AuthorId;
use starling_net::{Multiaddr, NetConfig};
use starling_node::{Node, NodeConfig, Profile};
use tokio::process::{Child, ChildStdin, Command};

pub fn handle(i: usize) -> String {
    format!("n{i:04}")
}

/// Waits (polling every 20 ms) until `check` is true, or fails after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_until`], returning how long the wait took, or `None` at the limit.
pub async fn timed_wait<F, Fut>(what: &str, limit: Duration, check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    wait_until(what, limit, check)
        .await
        .ok()
        .map(|()| t.elapsed())
}

pub fn config(bootstrap: Option<&Multiaddr>, ttl: Duration, maintenance: Duration) -> NodeConfig {
    NodeConfig {
        post_ttl: ttl,
        maintenance_interval: maintenance,
        network: Some(NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("literal")],
            bootstrap: bootstrap.cloned().into_iter().collect(),
            periodic_bootstrap: None,
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
}

/// Nodes in this process. Member 0 is the bootstrap node. Dropping the cluster
/// without [`Cluster::shutdown`] (a scenario failed) still stops every node.
pub struct Cluster {
    pub members: Vec<Member>,
    pub boot: Multiaddr,
    pub ttl: Duration,
    pub maintenance: Duration,
    _root: tempfile::TempDir,
}

impl Cluster {
    /// Creates `n` profiles and starts them all (16 at a time), with the daemon's
    /// default maintenance period.
    pub async fn start(n: usize, ttl: Duration) -> anyhow::Result<Self> {
        Self::start_with(n, ttl, NodeConfig::default().maintenance_interval).await
    }

    /// Like [`Cluster::start`], with maintenance rounds (reconnection, follower
    /// discovery) every `maintenance`.
    pub async fn start_with(
        n: usize,
        ttl: Duration,
        maintenance: Duration,
    ) -> anyhow::Result<Self> {
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
            });
        }
        let first = Node::start(
            Profile::open(&members[0].dir)?,
            config(None, ttl, maintenance),
        )
        .await?;
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
        let mut c = Self {
            members,
            boot,
            ttl,
            maintenance,
            _root: root,
        };
        let rest: Vec<usize> = (1..n).collect();
        for chunk in rest.chunks(16) {
            let started = futures::future::join_all(chunk.iter().map(|&i| {
                let (dir, boot) = (c.members[i].dir.clone(), c.boot.clone());
                async move {
                    Node::start(Profile::open(&dir)?, config(Some(&boot), ttl, maintenance))
                        .await
                        .map_err(anyhow::Error::from)
                }
            }))
            .await;
            for (&i, node) in chunk.iter().zip(started) {
                c.members[i].node = Some(node?);
            }
        }
        Ok(c)
    }

    /// Waits until no running member has a DHT query in flight (start-up lookups,
    /// announcements and bootstraps are over), at most `limit`. Returns how long
    /// that took, or `None` if the cluster was still busy at the limit.
    pub async fn settle(&self, limit: Duration) -> Option<Duration> {
        timed_wait("the DHT to go quiet", limit, || async {
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

    pub fn node(&self, i: usize) -> &Node {
        self.members[i].node.as_ref().expect("member is running")
    }

    pub fn running(&self, i: usize) -> bool {
        self.members[i].node.is_some()
    }

    /// Starts a stopped member again (same profile and database).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].node.is_none() {
            let node = Node::start(
                Profile::open(&self.members[i].dir)?,
                config(Some(&self.boot), self.ttl, self.maintenance),
            )
            .await?;
            self.members[i].node = Some(node);
        }
        Ok(())
    }

    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.members[i].node.take() {
            n.shutdown().await;
        }
    }

    /// Stops every member, all at once.
    pub async fn shutdown(mut self) {
        let nodes: Vec<Node> = self
            .members
            .iter_mut()
            .filter_map(|m| m.node.take())
            .collect();
        futures::future::join_all(nodes.iter().map(|n| n.shutdown())).await;
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

/// Waits until none of `procs` has a DHT query in flight, at most `limit`; like
/// [`Cluster::settle`].
pub async fn settle_procs(procs: &[&Proc], limit: Duration) -> Option<Duration> {
    timed_wait("the DHT to go quiet", limit, || async {
        for p in procs {
            if !p.dht_queries().await.is_ok_and(|n| n == 0) {
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

/// A daemon in its own process: this executable running `starling up`.
pub struct Proc {
    pub name: String,
    pub author: AuthorId,
    pub url: String,
    pub token: String,
    child: Child,
    _stdin: Option<ChildStdin>,
    http: reqwest::Client,
}

impl Proc {
    /// Creates the profile if needed and starts its daemon with `extra` options.
    pub async fn start(root: &Path, name: &str, extra: &[String]) -> anyhow::Result<Self> {
        let dir = root.join(name);
        let profile = Profile::open_or_create(&dir, name, starling_node::clock::system_ms())?;
        let exe = std::env::current_exe()?;
        let log = std::fs::File::create(dir.join("daemon.log"))?;
        let mut child = Command::new(exe)
            .arg("starling")
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "up",
                "--api-addr",
                "127.0.0.1:0",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .args(["--dht-refresh", "off", "--stop-on-stdin-eof"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take();
        let pid = child.id().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            if let Some(e) = profile.dir.endpoint().filter(|e| e.pid == pid) {
                break e.url;
            }
            if child.try_wait()?.is_some() || Instant::now() > deadline {
                bail!(
                    "daemon {name} did not start; see {}",
                    dir.join("daemon.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Self {
            name: name.to_string(),
            author: profile.identity.author(),
            token: profile.dir.token()?,
            url,
            child,
            _stdin: stdin,
            http: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    pub fn mem(&self) -> Option<Mem> {
        mem_of(&self.pid().to_string())
    }

    /// DHT queries this daemon has in flight.
    pub async fn dht_queries(&self) -> anyhow::Result<u64> {
        let st = self.get("/status").await?;
        Ok(st["network"]["dht_queries"].as_u64().unwrap_or(0))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("{}: GET {path}: {status} {v}", self.name);
        }
        Ok(v)
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("{}: POST {path}: {status} {v}", self.name);
        }
        Ok(v)
    }

    /// Opens the node's event stream (server-sent events).
    pub async fn events(&self) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .get(format!("{}/api/v1/events", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?)
    }

    pub async fn bootstrap_addr(&self) -> anyhow::Result<String> {
        Ok(self.get("/status").await?["network"]["listen_addrs"][0]
            .as_str()
            .context("no listen address")?
            .to_string())
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id()
            && let Some(pid) = rustix_pid(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn rustix_pid(pid: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(pid as i32)
}
