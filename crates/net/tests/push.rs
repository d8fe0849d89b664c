//! Push over real sockets on loopback: an author's post reaches each connected
//! follower as one copy (no mesh forwarding), and a follower the author will not
//! talk to still gets it, announced by a follower that validated it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use starling_net::{MessageAcceptance, MessageId, Net, NetEvent, PeerId};
use tokio::sync::mpsc;

mod common;

use common::{addr, start};

const WAIT: Duration = Duration::from_secs(30);

/// A follower: accepts every message it gets and remembers who sent each.
#[derive(Default)]
struct Seen(HashMap<MessageId, PeerId>);

impl Seen {
    /// Takes in what has arrived, accepting it.
    async fn drain(&mut self, net: &Net, events: &mut mpsc::Receiver<NetEvent>) {
        while let Ok(ev) = events.try_recv() {
            if let NetEvent::Gossip { id, source, .. } = ev {
                self.0.entry(id.clone()).or_insert(source);
                net.report(vec![(id, source, MessageAcceptance::Accept)])
                    .await
                    .unwrap();
            }
        }
    }
}

async fn copies(net: &Net) -> u64 {
    let st = net.status().await.unwrap();
    st.counters
        .get("gossip_copies_received")
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_copy_per_follower_and_announced_to_the_rest() {
    let (alice, a, _a_events) = start(Vec::new()).await;
    let boot = addr(&a).await;
    let (_b1_id, b1, mut b1_events) = start(vec![boot.clone()]).await;
    let (_b2_id, b2, mut b2_events) = start(vec![boot.clone()]).await;
    // carol may not talk to alice: she reaches alice's posts only through b1 and b2.
    let (carol_id, c, mut c_events) = start(vec![addr(&b1).await]).await;
    let carol = carol_id.author().peer_id();
    a.ban(carol, Duration::from_secs(600)).await.unwrap();
    c.dial(addr(&b2).await).await.unwrap();
    let topic = alice.author();
    for n in [&b1, &b2, &c] {
        n.subscribe(topic).await.unwrap();
    }
    let (mut s1, mut s2, mut sc) = (Seen::default(), Seen::default(), Seen::default());

    // Both followers subscribed as far as alice knows: each probe goes to both.
    let deadline = Instant::now() + WAIT;
    let mut probes = 0u32;
    loop {
        probes += 1;
        let sent = a
            .publish(topic, format!("probe {probes}").into_bytes())
            .await
            .unwrap();
        if sent >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "followers never subscribed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !a.is_connected(carol).await.unwrap(),
        "carol is banned by alice"
    );

    let posts = 20u32;
    for i in 0..posts {
        a.publish(topic, format!("post {i}").into_bytes())
            .await
            .unwrap();
    }
    // The followers get the posts from alice; carol gets them from b1 or b2
    // (announced, then fetched).
    let deadline = Instant::now() + WAIT;
    loop {
        s1.drain(&b1, &mut b1_events).await;
        s2.drain(&b2, &mut b2_events).await;
        sc.drain(&c, &mut c_events).await;
        if [&s1, &s2, &sc].iter().all(|s| s.0.len() as u32 >= posts) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b1, b2, carol got {}, {}, {} posts",
            s1.0.len(),
            s2.0.len(),
            sc.0.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alice_peer = alice.author().peer_id();
    let relays: HashSet<PeerId> = [b1.local_peer_id(), b2.local_peer_id()].into();
    assert!(sc.0.values().all(|p| relays.contains(p)), "{:?}", sc.0);
    // The followers alice talks to got everything from alice, one copy each, even
    // after a few more heartbeats in which they could have forwarded to each other.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (seen, net, events) in [
        (&mut s1, &b1, &mut b1_events),
        (&mut s2, &b2, &mut b2_events),
    ] {
        seen.drain(net, events).await;
        assert!(seen.0.len() as u32 >= posts, "{}", seen.0.len());
        assert!(seen.0.values().all(|p| *p == alice_peer), "{:?}", seen.0);
        assert_eq!(copies(net).await, seen.0.len() as u64, "one copy per post");
    }
    for n in [a, b1, b2, c] {
        n.shutdown().await;
    }
}
