//! Who a node keeps talking to: peers are admitted by the protocols they support
//! (identify's protocol list), whatever free-form version string they announce. Two
//! plain rust-libp2p swarms, not built with Starling's code, dial a Starling node on
//! loopback: one speaks Starling's Kademlia under another implementation's version
//! string and is served; one announces Starling's version string but speaks none of
//! its protocols and is disconnected.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Swarm, identify, kad, noise, ping, tcp, yamux};
use starling_net::protocol::{IDENTIFY_VERSION, KAD_PROTOCOL};

mod common;

use common::{addr, start};

const WAIT: Duration = Duration::from_secs(30);

#[derive(NetworkBehaviour)]
struct Foreign {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: libp2p::swarm::behaviour::toggle::Toggle<kad::Behaviour<kad::store::MemoryStore>>,
}

/// A swarm of another implementation: `version` in identify, and Starling's
/// Kademlia protocol only when `speaks_kad`.
fn foreign(version: &str, speaks_kad: bool) -> Swarm<Foreign> {
    let version = version.to_string();
    let mut swarm =
        libp2p::SwarmBuilder::with_existing_identity(libp2p::identity::Keypair::generate_ed25519())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|key| {
                let me = key.public().to_peer_id();
                let kad = speaks_kad.then(|| {
                    let mut k = kad::Behaviour::with_config(
                        me,
                        kad::store::MemoryStore::new(me),
                        kad::Config::new(KAD_PROTOCOL),
                    );
                    k.set_mode(Some(kad::Mode::Server));
                    k
                });
                Foreign {
                    identify: identify::Behaviour::new(identify::Config::new(
                        version,
                        key.public(),
                    )),
                    ping: ping::Behaviour::default(),
                    kad: kad.into(),
                }
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("literal"))
        .expect("listen");
    swarm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_by_protocols_not_by_version_string() {
    let (_, net, _events) = start(Vec::new()).await;
    let addr = addr(&net).await;

    // Another implementation speaking Starling's Kademlia: served, and kept in the
    // routing table.
    let mut other = foreign("/other-implementation/0.1", true);
    let starling_peer = net.local_peer_id();
    other
        .behaviour_mut()
        .kad
        .as_mut()
        .expect("kad on")
        .add_address(&starling_peer, addr.clone());
    other
        .behaviour_mut()
        .kad
        .as_mut()
        .expect("kad on")
        .get_closest_peers(starling_peer);
    let deadline = Instant::now() + WAIT;
    let mut answered = false;
    while !answered {
        let ev = tokio::time::timeout_at(deadline.into(), other.select_next_some())
            .await
            .expect("a Kademlia answer from the Starling node in time");
        match ev {
            SwarmEvent::Behaviour(ForeignEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(r),
                ..
            })) => {
                let ok = r.expect("the Starling node answered the lookup");
                assert!(
                    ok.peers.iter().any(|p| p.peer_id == starling_peer),
                    "the Starling node answered: {:?}",
                    ok.peers
                );
                answered = true;
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } if peer_id == starling_peer => {
                panic!("the Starling node disconnected a peer speaking its protocols: {cause:?}")
            }
            _ => {}
        }
    }
    // Identify has been exchanged: the node put the peer in its routing table and
    // keeps the connection (driven for a moment so a disconnect would show).
    let deadline = Instant::now() + WAIT;
    loop {
        tokio::select! {
            ev = other.select_next_some() => {
                if let SwarmEvent::ConnectionClosed { peer_id, cause, .. } = ev
                    && peer_id == starling_peer
                {
                    panic!("the Starling node disconnected a peer speaking its protocols: {cause:?}");
                }
            }
            st = net.status() => {
                let st = st.expect("status");
                if st.routing_table_size == 1 && st.connected_peers.contains(other.local_peer_id()) {
                    break;
                }
                assert!(Instant::now() < deadline, "the peer never entered the routing table");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // Starling's version string, none of its protocols: disconnected.
    let mut pretender = foreign(IDENTIFY_VERSION, false);
    pretender.dial(addr).expect("dial");
    let deadline = Instant::now() + WAIT;
    let mut connected = false;
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), pretender.select_next_some())
            .await
            .expect("the pretender disconnected in time");
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == starling_peer => {
                connected = true;
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == starling_peer => break,
            _ => {}
        }
    }
    assert!(connected, "the connection was made before it was closed");
    // The pretender may see the close before the node's own swarm has reported it:
    // wait (with a deadline) for the node to drop the peer as well.
    let deadline = Instant::now() + WAIT;
    let st = loop {
        let st = net.status().await.expect("status");
        if !st.connected_peers.contains(pretender.local_peer_id()) {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the node still lists the pretender as connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        st.routing_table_size, 1,
        "only the Kademlia speaker is routed to"
    );
    net.shutdown().await;
}
