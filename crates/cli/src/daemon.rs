//! `starling up`: runs the node and serves the local API until Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use starling_node::{Endpoint, Node, Profile, ProfileDir};
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::args::UpArgs;
use crate::settings::Settings;
use crate::web::Sessions;

pub async fn up(dir: &ProfileDir, args: UpArgs) -> anyhow::Result<()> {
    let profile = Profile::open(dir.path())?;
    let mut settings = Settings::resolve(dir, &args)?;
    let _lock = dir.lock()?;
    dir.make_private()?;
    let token: Arc<str> = dir.token()?.into();
    let remembered = crate::ports::Fallback::load(dir);
    let mut ports = remembered.clone();
    let listener = crate::ports::bind_api(&settings, &mut ports).await?;
    crate::ports::choose_p2p_port(&mut settings, &mut ports);
    if ports != remembered {
        ports.save(dir);
    }
    let addr = listener.local_addr()?;
    let node = Node::start(profile.clone(), settings.node).await?;

    let shutdown = CancellationToken::new();
    let state = ApiState {
        node: node.clone(),
        token: token.clone(),
        addr,
        sessions: Arc::new(Sessions::kept_in(addr.port(), dir)?),
        shutdown: shutdown.clone(),
    };
    let endpoint = Endpoint {
        url: format!("http://{addr}"),
        pid: std::process::id(),
    };
    dir.write_endpoint(&endpoint)?;
    say!(
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
            say!("  peers can bootstrap from: {a}");
        }
    } else {
        say!("  network: off (--offline)");
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
    dir.remove_endpoint();
    say!("starling: stopped");
    result.context("API server failed")
}

pub(crate) async fn wait_for_signal() {
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
