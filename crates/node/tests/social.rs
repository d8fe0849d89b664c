//! Handles and follows between in-process nodes on loopback: trust on first use.

use std::time::{Duration, Instant};

use starling_core::Identity;
use starling_net::NetConfig;
use starling_node::{HandleState, Node, NodeConfig, NodeError, Profile};

const TCP: &str = "/ip4/127.0.0.1/tcp/0";
const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

fn config(listen: &str, bootstrap: Option<starling_net::Multiaddr>) -> NodeConfig {
    NodeConfig {
        network: Some(NetConfig {
            listen: vec![listen.parse().unwrap()],
            bootstrap: bootstrap.into_iter().collect(),
            periodic_bootstrap: None,
            ..NetConfig::default()
        }),
        ..NodeConfig::default()
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// alice (a bootstrap node) and bob (bootstrapped from her) listening on `listen`,
/// once alice's handle is registered. Returns them with alice's address.
async fn alice_and_bob(
    dir: &std::path::Path,
    listen: &str,
) -> (Node, Node, starling_net::Multiaddr) {
    let alice = Node::start(
        Profile::create(&dir.join("alice"), "alice", 0).unwrap(),
        config(listen, None),
    )
    .await
    .unwrap();
    let boot = alice.net().unwrap().status().await.unwrap().listen_addrs[0].clone();
    let bob = Node::start(
        Profile::create(&dir.join("bob"), "bob", 0).unwrap(),
        config(listen, Some(boot.clone())),
    )
    .await
    .unwrap();
    until("alice's handle", || {
        alice.handle_state() == HandleState::Registered
    })
    .await;
    (alice, bob, boot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_that_changed_key_is_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, _) = alice_and_bob(dir.path(), TCP).await;

    // bob once saw @alice held by another key (trust on first use)...
    let earlier = Identity::from_secret_bytes([42; 32]).author();
    bob.store().pin("alice".into(), earlier, 0).await.unwrap();
    // ...so the key the network now gives is reported, and nothing is followed.
    match bob.follow("alice").await {
        Err(NodeError::KeyChanged {
            handle,
            pinned,
            now,
        }) => {
            assert_eq!(handle, "alice");
            assert_eq!(pinned, earlier);
            assert_eq!(now, alice.author());
        }
        other => panic!("expected a key change error, got {other:?}"),
    }
    assert!(bob.following_list().await.unwrap().is_empty());
    assert_eq!(
        bob.status()
            .await
            .unwrap()
            .counters
            .get("handle_key_changed"),
        Some(&1)
    );
    // By key, on purpose, it works.
    let f = bob.follow(&alice.author().to_string()).await.unwrap();
    assert_eq!(f.peer_id, alice.author());
    // Unknown handles are a clear error; following oneself is refused.
    assert!(
        matches!(bob.follow("nobody_here").await, Err(NodeError::UnknownHandle(h)) if h == "nobody_here")
    );
    assert!(matches!(
        bob.follow(&bob.author().to_string()).await,
        Err(NodeError::SelfFollow)
    ));
    assert!(matches!(
        bob.follow("Not A Handle").await,
        Err(NodeError::BadTarget(_))
    ));
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_quic() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, boot) = alice_and_bob(dir.path(), QUIC).await;
    assert!(boot.to_string().contains("/quic-v1/"), "{boot}");
    bob.follow("alice").await.unwrap();
    let mut events = bob.subscribe();
    alice.post("over QUIC").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(starling_node::NodeEvent::Post(p)) = events.recv().await
                && p.body == "over QUIC"
            {
                return p;
            }
        }
    })
    .await
    .expect("the post arrives over QUIC");
    assert_eq!(got.author, alice.author());
    bob.shutdown().await;
    alice.shutdown().await;
}
