//! `starling up`: runs the node and serves the local API until Ctrl-C or SIGTERM.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use starling_node::profile::{ENDPOINT_FILE, LOCK_FILE};
use starling_node::{Node, Profile};
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::args::UpArgs;
use crate::settings::Settings;

/// Where a running daemon listens: `<data dir>/api.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub url: String,
    pub pid: u32,
}

impl Endpoint {
    pub fn read(dir: &Path) -> Option<Self> {
        let bytes = fs::read(dir.join(ENDPOINT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Written to a temporary file and renamed, so readers never see half of it.
    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let tmp = dir.join(format!("{ENDPOINT_FILE}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec(self)?)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(ENDPOINT_FILE))?;
        Ok(())
    }
}

/// Held while the daemon runs: a second daemon on the same profile is refused.
struct DaemonLock {
    _file: fs::File,
    path: PathBuf,
}

impl DaemonLock {
    fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "a daemon is already running for this profile ({}, pid {})",
                    dir.display(),
                    pid.trim()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(Self { _file: file, path })
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

pub async fn up(dir: &Path, args: UpArgs) -> anyhow::Result<()> {
    let profile = Profile::open(dir)?;
    let settings = Settings::resolve(dir, &args)?;
    let _lock = DaemonLock::acquire(dir)?;
    let token: Arc<str> = profile.api_token()?.into();
    let listener = tokio::net::TcpListener::bind(settings.api_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: another program (or daemon) uses it; pick another with --api-addr 127.0.0.1:0",
                settings.api_addr
            )
        })?;
    let addr = listener.local_addr()?;
    let node = Node::start(profile.clone(), settings.node).await?;

    let shutdown = CancellationToken::new();
    let state = ApiState {
        node: node.clone(),
        token: token.clone(),
        port: addr.port(),
        shutdown: shutdown.clone(),
    };
    let endpoint = Endpoint {
        url: format!("http://{addr}"),
        pid: std::process::id(),
    };
    endpoint.write(dir)?;
    println!(
        "starling: @{} ({}) is up\n  web UI: {}/login?token={}\n  API: {}/api/v1\n  profile: {}",
        profile.handle,
        profile.identity.author(),
        endpoint.url,
        token,
        endpoint.url,
        dir.display()
    );
    if let Some(net) = node.net() {
        let st = net.status().await?;
        for a in &st.listen_addrs {
            println!("  peers can bootstrap from: {a}");
        }
    } else {
        println!("  network: off (--offline)");
    }
    tracing::info!(api = %endpoint.url, "daemon started");

    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    if args.stop_on_stdin_eof {
        let parent_gone = shutdown.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            parent_gone.cancel();
        });
    }
    let server = axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let result = server.await;
    // Open connections get a moment to finish; the node then flushes and stops.
    tokio::time::timeout(Duration::from_secs(5), node.shutdown())
        .await
        .ok();
    let _ = fs::remove_file(dir.join(ENDPOINT_FILE));
    println!("starling: stopped");
    result.context("API server failed")
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
