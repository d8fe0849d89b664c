//! What the network tests share: a node on loopback.

use starling_core::Identity;
use starling_net::{Multiaddr, Net, NetConfig, NetEvent};
use tokio::sync::mpsc;

/// A node listening on a free loopback port, joining through `bootstrap` (none: it
/// is a bootstrap node itself); no DHT refresh, no limit per IP (every node shares
/// 127.0.0.1).
pub async fn start(bootstrap: Vec<Multiaddr>) -> (Identity, Net, mpsc::Receiver<NetEvent>) {
    let id = Identity::generate();
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("literal")],
        bootstrap,
        periodic_bootstrap: None,
        max_connections_per_ip: 0,
        ..NetConfig::default()
    };
    let (net, events) = Net::start(&id, config).await.expect("start");
    (id, net, events)
}

/// The node's first listen address, with its `/p2p/` suffix.
pub async fn addr(net: &Net) -> Multiaddr {
    net.status().await.expect("status").listen_addrs[0].clone()
}
