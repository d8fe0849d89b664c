//! `starling devnet`: a small network on this machine for newcomers and demos. It
//! creates named profiles (alice, bob, carol, ...), starts one `starling up` process
//! per node on loopback, has everyone follow everyone, posts a greeting from each, and
//! prints each node's web UI link. Ctrl-C (or SIGTERM) stops every node; the nodes
//! also stop by themselves if this process dies (their standard input closes).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use starling_node::{Profile, ProfileDir};

use crate::args::DevnetArgs;
use crate::kit::{Daemon, wait_for};

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
    daemon: Daemon,
}

#[derive(Serialize)]
struct NodeInfo {
    name: String,
    web_ui: String,
    api: String,
    peer_id: String,
    data_dir: String,
}

async fn start_node(
    exe: &Path,
    name: &str,
    dir: &Path,
    ttl: Duration,
    bootstrap: Option<&str>,
) -> anyhow::Result<DevNode> {
    let dir = ProfileDir::new(dir);
    Profile::open_or_create(dir.path(), name, starling_node::clock::system_ms())?;
    let ttl = humantime::format_duration(ttl).to_string();
    // Every node shares 127.0.0.1: no per-address limit.
    let mut args = vec![
        "--maintenance-interval",
        "10s",
        "--post-ttl",
        &ttl,
        "--max-connections-per-ip",
        "0",
    ];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    let daemon = Daemon::start(Command::new(exe), &dir, &args)
        .await
        .with_context(|| format!("{name} did not start"))?;
    Ok(DevNode {
        name: name.to_string(),
        daemon,
    })
}

/// Waits until `check` holds for the answer of every node to `GET path`.
async fn wait_all(
    nodes: &[DevNode],
    what: &str,
    path: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(60), what, || async {
        for n in nodes {
            if !n.daemon.get(path).await.is_ok_and(|v| check(&v)) {
                return false;
            }
        }
        true
    })
    .await?;
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
    let boot = first.daemon.bootstrap_addr().await?;
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
            "every node's handle to be registered",
            "/whoami",
            |v| v["handle_state"]["state"] == "registered",
        )
        .await?;
        for a in &nodes {
            for b in &nodes {
                if a.name != b.name {
                    a.daemon
                        .post("/follow", &json!({ "target": b.name }))
                        .await
                        .with_context(|| format!("{} following {}", a.name, b.name))?;
                }
            }
        }
        let want = (count - 1) as u64;
        wait_all(&nodes, "every node's followers", "/status", |v| {
            v["followers"].as_u64() == Some(want)
        })
        .await?;
    }
    if !args.quiet {
        for n in &nodes {
            let text = format!(
                "Hello from @{}! This post lives for {}.",
                n.name,
                humantime::format_duration(args.post_ttl)
            );
            n.daemon
                .post("/posts", &json!({ "body": text }))
                .await
                .with_context(|| format!("{} posting", n.name))?;
        }
    }

    let infos: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| NodeInfo {
            name: n.name.clone(),
            web_ui: format!("{}/login?token={}", n.daemon.url(), n.daemon.token()),
            api: format!("{}/api/v1", n.daemon.url()),
            peer_id: n.daemon.author().to_string(),
            data_dir: n.daemon.dir().display().to_string(),
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
    futures::future::join_all(nodes.into_iter().map(|n| n.daemon.stop())).await;
    eprintln!("devnet stopped");
    Ok(())
}

async fn watch(nodes: &mut [DevNode]) -> String {
    loop {
        for n in nodes.iter_mut() {
            if n.daemon.exited().is_some() {
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
