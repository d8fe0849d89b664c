//! Bootstrap addresses may name hosts (`/dns4/...`, `/dns6/...`, `/dns/...`): a node
//! joins through `/dns4/localhost/...` (resolved from /etc/hosts; nothing leaves the
//! machine).

use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use starling_core::Identity;
use starling_net::{Multiaddr, Net, NetConfig};

const WAIT: Duration = Duration::from_secs(30);

async fn start(bootstrap: Vec<Multiaddr>) -> Net {
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("literal")],
        bootstrap,
        periodic_bootstrap: None,
        max_connections_per_ip: 0,
        ..NetConfig::default()
    };
    let (net, _events) = Net::start(&Identity::generate(), config)
        .await
        .expect("start");
    net
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_through_a_dns_bootstrap_address() {
    let boot = start(Vec::new()).await;
    let listen = boot.status().await.expect("status").listen_addrs[0].clone();
    let port = listen
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP port");
    let by_name: Multiaddr = format!("/dns4/localhost/tcp/{port}/p2p/{}", boot.local_peer_id())
        .parse()
        .expect("multiaddr");
    let node = start(vec![by_name]).await;
    let deadline = Instant::now() + WAIT;
    while !node
        .is_connected(boot.local_peer_id())
        .await
        .expect("is_connected")
    {
        assert!(
            Instant::now() < deadline,
            "never connected through /dns4/localhost"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = boot.status().await.expect("status");
    assert!(st.connected_peers.contains(&node.local_peer_id()));
    node.shutdown().await;
    boot.shutdown().await;
}
