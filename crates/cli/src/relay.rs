//! `starling relay`: a bootstrap and relay node for a server. It has a key (its
//! peer id, stable across restarts) but no user, no posts and no database: it
//! serves the DHT, relays for peers behind NAT within its limits, answers AutoNAT
//! probes, and remembers the peers it knew (`peers.json`) to rejoin through them.

use std::time::Duration;

use anyhow::{Context, bail};
use starling_node::{Multiaddr, Net, NetEvent, ProfileDir};
use tokio_util::sync::CancellationToken;

use crate::args::RelayArgs;
use crate::daemon::wait_for_signal;
use crate::settings::RelaySettings;

/// How often the relay saves its peer table and logs what it served.
const SAVE_EVERY: Duration = Duration::from_secs(60);
/// Peers kept in `peers.json`.
const PEERS_KEPT: usize = 64;

pub async fn run(dir: &ProfileDir, args: RelayArgs) -> anyhow::Result<()> {
    if dir.profile_path().exists() {
        bail!(
            "{} holds a user's profile; a relay needs its own data directory (--data-dir)",
            dir.display()
        );
    }
    let mut settings = RelaySettings::resolve(dir, &args)?;
    let identity = dir.node_key()?;
    let _lock = dir.lock()?;
    let remembered = read_peers(dir);
    for a in remembered {
        if !settings.net.bootstrap.contains(&a) {
            settings.net.bootstrap.push(a);
        }
    }
    let limits = settings.net.relay.clone();
    let (net, mut events) = Net::start(&identity, settings.net)
        .await
        .context("cannot start the network")?;
    let st = net.status().await?;
    say!("starling relay: {} is up", st.peer_id);
    if let Some(f) = &settings.file {
        say!("  config: {}", f.display());
    }
    match &limits {
        Some(l) => say!(
            "  relaying: {} reservations ({} per peer, {:?} each), {} circuits ({} per peer, {:?} and {} bytes each)",
            l.max_reservations,
            l.max_reservations_per_peer,
            l.reservation_duration,
            l.max_circuits,
            l.max_circuits_per_peer,
            l.max_circuit_duration,
            l.max_circuit_bytes
        ),
        None => say!("  relaying: off"),
    }
    for a in st.external_addrs.iter().chain(&st.listen_addrs) {
        let full = a.clone().with_p2p(st.peer_id).unwrap_or_else(|a| a);
        say!("  peers can bootstrap from: {full}");
    }

    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    let mut save = tokio::time::interval(SAVE_EVERY);
    save.tick().await;
    let mut refused: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            ev = events.recv() => match ev {
                None => break,
                // A relay holds no posts and takes no follows: the requester's
                // channel is dropped, which it sees as a failure and asks elsewhere.
                Some(NetEvent::SyncRequest { .. } | NetEvent::SocialRequest { .. }) => {
                    refused += 1;
                }
                Some(_) => {}
            },
            _ = save.tick() => {
                save_peers(dir, &net).await;
                if let Ok(st) = net.status().await {
                    tracing::info!(
                        peers = st.connected_peers.len(),
                        reachability = st.reachability,
                        requests_refused = refused,
                        counters = ?st.counters,
                        "relay"
                    );
                }
            }
        }
    }
    save_peers(dir, &net).await;
    net.shutdown().await;
    say!("starling relay: stopped");
    Ok(())
}

fn read_peers(dir: &ProfileDir) -> Vec<Multiaddr> {
    let Ok(bytes) = std::fs::read(dir.peers_path()) else {
        return Vec::new();
    };
    let list: Vec<String> = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring a damaged peers.json");
        Vec::new()
    });
    list.iter()
        .filter_map(|a| a.parse().ok())
        .take(PEERS_KEPT)
        .collect()
}

/// Saves the connected peers' addresses (`.../p2p/<id>`), replacing the file at once.
async fn save_peers(dir: &ProfileDir, net: &Net) {
    let Ok(peers) = net.connected_peers().await else {
        return;
    };
    let list: Vec<String> = peers
        .iter()
        .filter_map(|(peer, addrs)| {
            let a = addrs.first()?.clone();
            Some(a.with_p2p(*peer).unwrap_or_else(|a| a).to_string())
        })
        .take(PEERS_KEPT)
        .collect();
    if list.is_empty() {
        return;
    }
    let path = dir.peers_path();
    let tmp = path.with_extension("json.tmp");
    let write = serde_json::to_vec(&list)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = write {
        tracing::warn!(error = %e, path = %path.display(), "cannot save the peer table");
    }
}
