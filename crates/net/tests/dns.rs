//! Bootstrap addresses may name hosts (`/dns4/...`, `/dns6/...`, `/dns/...`): a node
//! joins through `/dns4/localhost/...` (resolved from /etc/hosts; nothing leaves the
//! machine).

use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use starling_net::Multiaddr;

mod common;

use common::{addr, start};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_through_a_dns_bootstrap_address() {
    let (_, boot, _boot_events) = start(Vec::new()).await;
    let listen = addr(&boot).await;
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
    let (_, node, _node_events) = start(vec![by_name]).await;
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
    // The listening side reports the connection on its own schedule: wait for it too.
    while !boot
        .status()
        .await
        .expect("status")
        .connected_peers
        .contains(&node.local_peer_id())
    {
        assert!(
            Instant::now() < deadline,
            "the bootstrap node never listed the dialer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.shutdown().await;
    boot.shutdown().await;
}
