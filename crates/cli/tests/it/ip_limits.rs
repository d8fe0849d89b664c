//! Connection limits against real daemons. Malicious peers reach their victim from
//! another address (127.0.0.66, through a TCP relay in the test) than the honest
//! nodes (127.0.0.1): one address holds a bounded number of connections, an address
//! whose peers keep getting banned is banned, and followers cannot take every slot.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use starling_core::AuthorId;
use tokio::net::{TcpListener, TcpSocket};

use crate::harness::{
    Daemon, Profile, addr, net_counter, post_raw, status, stderr, timeline, wait_for,
};
use crate::mallory::Mallory;

const WAIT: Duration = Duration::from_secs(120);
const ELSEWHERE: [u8; 4] = [127, 0, 0, 66];

/// A TCP relay: connections accepted on 127.0.0.1 go on to `target` from `source`.
/// Returns the multiaddr to dial (`target`'s peer id kept) and the relay's task.
async fn relay(target: &str, source: IpAddr) -> (String, tokio::task::JoinHandle<()>) {
    let parts: Vec<&str> = target.split('/').collect();
    // /ip4/<ip>/tcp/<port>/p2p/<id>
    let to: SocketAddr = format!("{}:{}", parts[2], parts[4]).parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let socket = TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::new(source, 0)).unwrap();
                if let Ok(mut out) = socket.connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", parts[6]), task)
}

async fn post(d: &Daemon, body: &str) {
    let (s, v) = post_raw(d, "/posts", &json!({ "body": body })).await;
    assert_eq!(s, 201, "{v}");
}

/// Waits until `d` shows `author`'s post `body`.
async fn wait_post(d: &Daemon, author: &str, body: &str) {
    wait_for(WAIT, &format!("the post {body:?}"), || async {
        timeline(d)
            .await
            .iter()
            .any(|(a, _, b)| a == author && b == body)
            .then_some(())
    })
    .await
    .unwrap();
}

/// Six peers from one address against a limit of three: three get in, the others
/// are refused and counted; alice (another address) is served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_a_bounded_number_of_connections() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up(&[]).await;
    let b = bob
        .up(&[
            "--bootstrap",
            &addr(&a).await,
            "--max-connections-per-ip",
            "3",
        ])
        .await;
    let alice_id = a.author().to_string();
    let out = bob.cli(&["follow", &alice_id]);
    assert!(out.status.success(), "{}", stderr(&out));

    let (via, task) = relay(&addr(&b).await, IpAddr::from(ELSEWHERE)).await;
    let mut ms = Vec::new();
    for _ in 0..6 {
        ms.push(Mallory::start(&via).await);
    }
    wait_for(WAIT, "bob to refuse three of them", || async {
        (net_counter(&status(&b).await, "connections_refused_ip_limit") >= 3).then_some(())
    })
    .await
    .unwrap();
    let connected = status(&b).await["network"]["connected_peers"]
        .as_u64()
        .unwrap();
    assert!(connected <= 3 + 1, "{connected} peers connected to bob");
    post(&a, "still served").await;
    wait_post(&b, &alice_id, "still served").await;
    for m in ms {
        m.stop().await;
    }
    task.abort();
}

/// Three peers from one address get banned (each publishes forged posts): then the
/// address is banned, and a fourth identity from it cannot connect. alice, on
/// another address, is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_whose_peers_get_banned_is_banned() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up(&[]).await;
    let b = bob.up(&["--bootstrap", &addr(&a).await]).await;
    let alice_id = a.author().to_string();
    let alice_key: AuthorId = alice_id.parse().unwrap();
    let out = bob.cli(&["follow", &alice_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    post(&a, "before").await;
    wait_post(&b, &alice_id, "before").await;

    let (via, task) = relay(&addr(&b).await, IpAddr::from(ELSEWHERE)).await;
    for round in 1..=3u64 {
        let m = Mallory::start(&via).await;
        // Forged posts "by alice" on her topic: bad signatures, blamed on the sender.
        for i in 0..30u64 {
            let mut forged = m.sign(
                100 + i,
                starling_node::clock::system_ms(),
                &format!("forged {i}"),
            );
            forged[1..33].copy_from_slice(alice_key.as_bytes());
            m.publish(alice_key, forged).await;
            if net_counter(&status(&b).await, "peers_banned") >= round {
                break;
            }
        }
        wait_for(WAIT, &format!("bob to ban mallory #{round}"), || async {
            (net_counter(&status(&b).await, "peers_banned") >= round).then_some(())
        })
        .await
        .unwrap();
        m.stop().await;
    }
    let st = status(&b).await;
    assert_eq!(net_counter(&st, "ips_banned"), 1, "{}", st["network"]);

    let fourth = Mallory::start(&via).await;
    wait_for(WAIT, "bob to refuse the banned address", || async {
        (net_counter(&status(&b).await, "connections_refused_ip_banned") >= 1).then_some(())
    })
    .await
    .unwrap();
    fourth.stop().await;
    post(&a, "after").await;
    wait_post(&b, &alice_id, "after").await;
    task.abort();
}

/// bob allows 8 connections; 12 peers subscribe to his feed. Followers hold at most
/// 6: the others are disconnected (counted), so bob still has room to follow carol,
/// who joins after the flood, and get her posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_cannot_take_every_connection_slot() {
    let (alice, bob, carol) = (
        Profile::init("alice"),
        Profile::init("bob"),
        Profile::init("carol"),
    );
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let b = bob
        .up(&[
            "--bootstrap",
            &boot,
            "--max-connections",
            "8",
            "--max-connections-per-ip",
            "0",
        ])
        .await;
    let bob_addr = addr(&b).await;
    let bob_key: AuthorId = b.author().to_string().parse().unwrap();

    let mut ms = Vec::new();
    for _ in 0..12 {
        let m = Mallory::start(&bob_addr).await;
        m.net.subscribe(bob_key).await.unwrap();
        ms.push(m);
    }
    wait_for(WAIT, "bob to turn surplus followers away", || async {
        (net_counter(&status(&b).await, "followers_over_slots") >= 1).then_some(())
    })
    .await
    .unwrap();

    let c = carol.up(&["--bootstrap", &boot]).await;
    let carol_id = c.author().to_string();
    let out = bob.cli(&["follow", &carol_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    post(&c, "hello bob").await;
    wait_post(&b, &carol_id, "hello bob").await;
    let connected = status(&b).await["network"]["connected_peers"]
        .as_u64()
        .unwrap();
    assert!(connected <= 8, "{connected} peers connected to bob");
    for m in ms {
        m.stop().await;
    }
}
