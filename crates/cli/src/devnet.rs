//! `starling devnet`: a small network on this machine for newcomers and demos. It
//! creates named profiles (alice, bob, carol, ...), starts one `starling up` process
//! per node on loopback, has everyone follow everyone, posts a greeting from each, and
//! prints each node's web UI link. Ctrl-C (or SIGTERM) stops every node; the nodes
//! also stop by themselves if this process dies (their standard input closes).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use starling_node::Profile;
use tokio::process::{Child, ChildStdin, Command};

use crate::args::DevnetArgs;

const NAMES: &[&str] = &[
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory_not",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "yara",
];

fn name(i: usize) -> String {
    NAMES
        .get(i)
        .filter(|n| !n.ends_with("_not"))
        .map(|n| n.to_string())
        .unwrap_or_else(|| format!("node{}", i + 1))
}

struct DevNode {
    name: String,
    dir: PathBuf,
    child: Child,
    /// Held open: when it closes (we exit, however), the node stops.
    _stdin: Option<ChildStdin>,
    url: String,
    token: String,
    peer_id: String,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct NodeInfo {
    name: String,
    web_ui: String,
    api: String,
    peer_id: String,
    data_dir: String,
}

impl DevNode {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{}: {} {}", self.name, status, v["error"]["message"]);
        }
        Ok(v)
    }
}

async fn start_node(
    exe: &Path,
    name: &str,
    dir: &Path,
    ttl: Duration,
    bootstrap: Option<&str>,
) -> anyhow::Result<DevNode> {
    let profile = Profile::open_or_create(dir, name, starling_node::clock::system_ms())?;
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--data-dir")
        .arg(dir)
        .args([
            "up",
            "--api-addr",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .args([
            "--dht-refresh",
            "off",
            "--stop-on-stdin-eof",
            "--maintenance-interval",
            "10s",
        ])
        .arg("--post-ttl")
        .arg(humantime::format_duration(ttl).to_string());
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let stdin = child.stdin.take();
    let pid = child.id().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        if let Some(e) = profile.dir.endpoint().filter(|e| e.pid == pid) {
            break e.url;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name} exited ({status}); see {}",
                dir.join("daemon.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not start within 30 s; see {}",
                dir.join("daemon.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Ok(DevNode {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        child,
        _stdin: stdin,
        url,
        token: profile.dir.token()?,
        peer_id: profile.identity.author().to_string(),
        http: reqwest::Client::builder().no_proxy().build()?,
    })
}

/// Polls until `check` holds for every node, or fails after `limit`.
async fn wait_all(
    nodes: &[DevNode],
    what: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
    path: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    for n in nodes {
        loop {
            if let Ok(v) = n.call(reqwest::Method::GET, path, None).await
                && check(&v)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("{}: timed out waiting for {what}", n.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

pub async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the starling binary")?;
    let (base, _tmp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("starling-devnet-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let count = args.nodes as usize;
    eprintln!("starting {count} nodes in {} ...", base.display());
    let mut nodes = Vec::with_capacity(count);
    let first = start_node(&exe, &name(0), &base.join(name(0)), args.post_ttl, None).await?;
    let boot = first.call(reqwest::Method::GET, "/status", None).await?["network"]["listen_addrs"]
        [0]
    .as_str()
    .context("the first node has no listen address")?
    .to_string();
    nodes.push(first);
    let rest = futures::future::join_all((1..count).map(|i| {
        let (exe, base, boot) = (&exe, &base, &boot);
        async move {
            start_node(
                exe,
                &name(i),
                &base.join(name(i)),
                args.post_ttl,
                Some(boot),
            )
            .await
        }
    }))
    .await;
    for n in rest {
        nodes.push(n?);
    }

    if count > 1 {
        wait_all(
            &nodes,
            "its handle to be registered",
            Duration::from_secs(60),
            |v| v["handle_state"]["state"] == "registered",
            "/whoami",
        )
        .await?;
        for a in &nodes {
            for b in &nodes {
                if a.peer_id != b.peer_id {
                    a.call(
                        reqwest::Method::POST,
                        "/follow",
                        Some(json!({ "target": b.name })),
                    )
                    .await?;
                }
            }
        }
        let want = (count - 1) as u64;
        wait_all(
            &nodes,
            "its followers",
            Duration::from_secs(60),
            |v| v["followers"].as_u64() == Some(want),
            "/status",
        )
        .await?;
    }
    if !args.quiet {
        for n in &nodes {
            let text = format!(
                "Hello from @{}! This post lives for {}.",
                n.name,
                humantime::format_duration(args.post_ttl)
            );
            n.call(
                reqwest::Method::POST,
                "/posts",
                Some(json!({ "body": text })),
            )
            .await?;
        }
    }

    let infos: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| NodeInfo {
            name: n.name.clone(),
            web_ui: format!("{}/login?token={}", n.url, n.token),
            api: format!("{}/api/v1", n.url),
            peer_id: n.peer_id.clone(),
            data_dir: n.dir.display().to_string(),
        })
        .collect();
    println!(
        "Starling devnet: {count} node{} on this machine, everyone following everyone (post lifetime {}).",
        if count == 1 { "" } else { "s" },
        humantime::format_duration(args.post_ttl)
    );
    println!("Open a node's web UI (each link signs that browser in as that user):");
    let width = infos.iter().map(|i| i.name.len()).max().unwrap_or(0);
    for i in &infos {
        println!("  {:width$}  {}", i.name, i.web_ui);
    }
    println!(
        "Command line, as alice: starling --data-dir {} timeline",
        base.join(name(0)).display()
    );
    println!(
        "JSON: {}",
        serde_json::to_string(&json!({ "nodes": infos }))?
    );
    if _tmp.is_some() {
        println!(
            "Profiles live in {} and are deleted when the devnet stops.",
            base.display()
        );
    }
    println!("Press Ctrl-C to stop.");

    // Run until interrupted, or until a node dies.
    let reason = tokio::select! {
        _ = shutdown_signal() => "stopping".to_string(),
        name = watch(&mut nodes) => format!("{name} exited unexpectedly; stopping the others"),
    };
    eprintln!("{reason} ...");
    for n in &nodes {
        if let Some(pid) = n.child.id()
            && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for n in &mut nodes {
        if tokio::time::timeout(Duration::from_secs(10), n.child.wait())
            .await
            .is_err()
        {
            let _ = n.child.kill().await;
        }
    }
    eprintln!("devnet stopped");
    Ok(())
}

async fn watch(nodes: &mut [DevNode]) -> String {
    loop {
        for n in nodes.iter_mut() {
            if let Ok(Some(_)) = n.child.try_wait() {
                return n.name.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
