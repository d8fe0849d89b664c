//! A malicious peer: a test harness speaking Starling's real protocols (through the
//! network crate) that publishes forged posts by gossip and serves them by sync.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use starling_core::{AuthorId, Identity, Post, PostContent, Timestamp};
use starling_net::{
    MessageAcceptance, Net, NetConfig, NetEvent, SocialRequest, SocialResponse, SyncRequest,
    SyncResponse,
};

use crate::harness::{Profile, addr, rss_kib, status, timeline, wait_for, wait_registered};

pub struct Mallory {
    pub id: Identity,
    pub net: Net,
    serving: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Mallory {
    /// Joins the network through `bootstrap` and answers every sync request with
    /// whatever `set_serving` was given.
    pub async fn start(bootstrap: &str) -> Self {
        let id = Identity::generate();
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![bootstrap.parse().unwrap()],
            periodic_bootstrap: None,
            ..NetConfig::default()
        };
        let (net, mut events) = Net::start(&id, config).await.expect("start mallory");
        let serving: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (net2, serving2) = (net.clone(), serving.clone());
        let task = tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    NetEvent::SyncRequest { channel, .. } => {
                        let posts = serving2
                            .lock()
                            .unwrap()
                            .iter()
                            .map(|p| serde_bytes::ByteBuf::from(p.clone()))
                            .collect();
                        let _ = net2
                            .respond_sync(channel, SyncResponse::Posts { posts, more: false })
                            .await;
                    }
                    NetEvent::SocialRequest { channel, .. } => {
                        let _ = net2.respond_social(channel, SocialResponse::Accepted).await;
                    }
                    NetEvent::Gossip { id, source, .. } => {
                        let _ = net2
                            .report(vec![(id, source, MessageAcceptance::Ignore)])
                            .await;
                    }
                    _ => {}
                }
            }
        });
        Self {
            id,
            net,
            serving,
            task,
        }
    }

    pub fn author(&self) -> AuthorId {
        self.id.author()
    }

    pub fn set_serving(&self, posts: Vec<Vec<u8>>) {
        *self.serving.lock().unwrap() = posts;
    }

    /// A post validly signed by Mallory (whatever it says).
    pub fn sign(&self, seq: u64, ts_ms: u64, body: &str) -> Vec<u8> {
        sign_as(&self.id, seq, ts_ms, body)
    }

    /// Asks the peer at `addr` for `author`'s posts after `after`.
    pub async fn sync(&self, addr: &str, peer: &str, author: &str, after: u64) -> Vec<Vec<u8>> {
        let _ = self.net.dial(addr.parse().unwrap()).await;
        let author: AuthorId = author.parse().unwrap();
        let req = SyncRequest {
            author: author.as_bytes().to_vec(),
            after_seq: after,
            limit: 256,
        };
        let peer = peer.parse().unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), self.net.sync(peer, req))
            .await
            .expect("sync answered in time")
            .expect("sync succeeded");
        match resp {
            SyncResponse::Posts { posts, .. } => posts.into_iter().map(|b| b.into_vec()).collect(),
            SyncResponse::Error { message } => panic!("sync error: {message}"),
        }
    }

    /// Publishes on `topic_author`'s feed topic once some peer there can hear it.
    pub async fn publish(&self, topic_author: AuthorId, data: Vec<u8>) {
        wait_for(
            Duration::from_secs(30),
            "a peer subscribed to the topic",
            || {
                let (net, data) = (self.net.clone(), data.clone());
                async move {
                    net.publish(topic_author, data)
                        .await
                        .ok()
                        .filter(|n| *n > 0)
                }
            },
        )
        .await
        .unwrap();
    }

    pub async fn stop(self) {
        self.net.shutdown().await;
        self.task.abort();
    }
}

/// A post validly signed by `id` (whatever it says).
fn sign_as(id: &Identity, seq: u64, ts_ms: u64, body: &str) -> Vec<u8> {
    Post::sign(
        PostContent {
            author: id.author(),
            seq,
            ts: Timestamp::from_parts(ts_ms, 0),
            expires_at: ts_ms + 3_600_000,
            body: body.to_string(),
            repost_of: None,
        },
        id,
    )
    .unwrap()
    .into_bytes()
}

fn flip_last(mut raw: Vec<u8>) -> Vec<u8> {
    let n = raw.len();
    raw[n - 1] ^= 0x01;
    raw
}

fn rejected(st: &serde_json::Value, reason: &str) -> u64 {
    st["rejected"][reason].as_u64().unwrap_or(0)
}

/// A refusal counted under `reason`: `rejected` (a strike), or among the counters
/// when `reason` starts with `ignored.` (no one to blame).
fn counted(st: &serde_json::Value, reason: &str) -> u64 {
    if reason.starts_with("ignored.") {
        st["counters"][reason].as_u64().unwrap_or(0)
    } else {
        rejected(st, reason)
    }
}

/// Issue test 5: forged posts, by gossip and by sync: a bad signature, an altered
/// body, another author's seq reused, equivocation, an oversized body, a far-future
/// timestamp. None is stored or shown; each is counted; the nodes keep working. A
/// far-future post its author really signed is a clock running ahead: counted as
/// ignored, no strike; one whose signature is bad is struck as a forgery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_posts_are_rejected_counted_and_never_stored() {
    let wait = Duration::from_secs(60);
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let b = bob.up(&["--bootstrap", &boot]).await;
    let (alice_id, bob_id, bob_addr) = (
        a.author().to_string(),
        b.author().to_string(),
        addr(&b).await,
    );
    // Both handles registered: @alice is then named by two peers (see `ClaimTally`).
    wait_registered(&a).await;
    wait_registered(&b).await;
    assert!(bob.cli(&["follow", "alice"]).status.success());
    wait_for(wait, "the follow to arrive", || async {
        (status(&a).await["followers"] == 1).then_some(())
    })
    .await
    .unwrap();
    a.post("/posts", &json!({"body": "genuine 1"}))
        .await
        .unwrap();
    wait_for(wait, "the genuine post", || async {
        (status(&b).await["posts_stored"] == 1).then_some(())
    })
    .await
    .unwrap();

    let mallory = Mallory::start(&bob_addr).await;
    let now = starling_node::clock::system_ms();
    // Served by sync when bob follows mallory: one legit post, then forgeries.
    mallory.set_serving(vec![
        mallory.sign(1, now, "mallory's legit post"),
        mallory.sign(2, now + 3_600_000, "FORGED far future"),
        mallory.sign(3, now, &"FORGED too long ".repeat(20)),
        flip_last(mallory.sign(4, now, "FORGED bad signature")),
    ]);
    let out = bob.cli(&["follow", &mallory.author().to_string()]);
    assert!(out.status.success(), "{}", crate::harness::stderr(&out));
    wait_for(wait, "sync forgeries to be counted", || async {
        let st = status(&b).await;
        counted(&st, "ignored.from_future") >= 1
            && rejected(&st, "body_too_long") >= 1
            && rejected(&st, "bad_signature") >= 1
    })
    .await
    .unwrap();
    wait_for(wait, "mallory's legit post", || async {
        timeline(&b)
            .await
            .iter()
            .any(|(a, s, _)| *a == mallory.author().to_string() && *s == 1)
    })
    .await
    .unwrap();

    // By gossip, one at a time (each must be seen and counted): on alice's topic,
    // her genuine post with a bad signature, with an altered body, and her seq 1
    // reused with other content; on mallory's topic, a second seq 1 (equivocation),
    // a record over the size limit, and a far-future timestamp.
    let genuine = mallory
        .sync(&bob_addr, &bob_id, &alice_id, 0)
        .await
        .remove(0);
    let alice_key: AuthorId = alice_id.parse().unwrap();
    let mut altered = genuine.clone();
    let at = altered.len() - 64 - "genuine 1".len();
    altered[at] = b'F'; // "Fenuine 1"
    let mut reused = mallory.sign(1, now, "FORGED seq reuse");
    reused[1..33].copy_from_slice(alice_key.as_bytes());
    let m = mallory.author();
    let forgeries = [
        (alice_key, flip_last(genuine.clone()), "bad_signature"),
        (alice_key, altered, "bad_signature"),
        (alice_key, reused, "bad_signature"),
        (
            m,
            mallory.sign(1, now, "FORGED equivocation"),
            "equivocation",
        ),
        (m, mallory.sign(5, now, &"FORGED ".repeat(220)), "malformed"),
        (
            m,
            mallory.sign(6, now + 7_200_000, "FORGED from the future"),
            "ignored.from_future",
        ),
        (
            m,
            flip_last(mallory.sign(7, now + 7_200_000, "FORGED future and signature")),
            "bad_signature",
        ),
    ];
    for (topic, forged, reason) in forgeries {
        let before = counted(&status(&b).await, reason);
        mallory.publish(topic, forged).await;
        wait_for(wait, &format!("a {reason} refusal"), || async {
            (counted(&status(&b).await, reason) > before).then_some(())
        })
        .await
        .unwrap();
    }

    // Nothing forged is stored or shown, by anyone.
    for d in [&a, &b] {
        let tl = timeline(d).await;
        assert!(
            tl.iter()
                .all(|(_, _, body)| !body.contains("FORGED") && body != "Fenuine 1"),
            "{tl:?}"
        );
    }
    assert_eq!(
        status(&b).await["posts_stored"],
        2,
        "alice's genuine post and mallory's legit one"
    );

    // The nodes keep working.
    a.post("/posts", &json!({"body": "after the attack"}))
        .await
        .unwrap();
    wait_for(wait, "the next genuine post", || async {
        timeline(&b)
            .await
            .iter()
            .any(|(_, _, body)| body == "after the attack")
    })
    .await
    .unwrap();
    mallory.stop().await;
}

/// A peer's full address, as `--bootstrap` takes it.
pub async fn mallory_addr(m: &Mallory) -> String {
    let st = m.net.status().await.unwrap();
    st.listen_addrs[0].to_string()
}

/// Issue 11, item 6: a post cannot be suppressed during catch-up. alice posted
/// 1-10 and went away; carol holds them. Mallory forwards alice's post 10 to bob and
/// answers his sync requests with empty pages. bob's position in alice's feed must
/// not move past the gap on Mallory's word: once carol is back, bob gets 1-9 from
/// her.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_answer_cannot_suppress_posts_in_catch_up() {
    let wait = Duration::from_secs(60);
    let (alice, carol, bob) = (
        Profile::init("alice"),
        Profile::init("carol"),
        Profile::init("bob"),
    );
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let c = carol.up(&["--bootstrap", &boot]).await;
    let alice_id = a.author().to_string();
    assert!(carol.cli(&["follow", &alice_id]).status.success());
    for i in 1..=10 {
        a.post("/posts", &json!({ "body": format!("alice {i}") }))
            .await
            .unwrap();
    }
    wait_for(wait, "carol to hold alice's ten posts", || async {
        status(&c).await["posts_stored"] == 10
    })
    .await
    .unwrap();
    let mallory = Mallory::start(&boot).await;
    let tenth = mallory
        .sync(&boot, &alice_id, &alice_id, 9)
        .await
        .pop()
        .expect("alice's post 10");
    mallory.set_serving(Vec::new()); // every sync answer: an empty page
    let m_addr = mallory_addr(&mallory).await;
    // Both go away: only Mallory is there when bob arrives.
    c.stop().await.unwrap();
    a.stop().await.unwrap();
    let b = bob
        .up(&["--bootstrap", &m_addr, "--maintenance-interval", "2s"])
        .await;
    assert!(bob.cli(&["follow", &alice_id]).status.success());
    let alice_key: AuthorId = alice_id.parse().unwrap();
    mallory.publish(alice_key, tenth).await;
    wait_for(wait, "bob to take alice's post 10 from Mallory", || async {
        status(&b).await["posts_stored"] == 1
    })
    .await
    .unwrap();
    // Mallory answers bob's catch-up (it showed him the gap) with nothing. carol
    // comes back; bob must still get 1-9, from her.
    let c = carol.up(&["--bootstrap", &addr(&b).await]).await;
    wait_for(wait, "bob to get alice's posts 1-9 from carol", || async {
        status(&b).await["posts_stored"] == 10
    })
    .await
    .unwrap();
    let mut seqs: Vec<u64> = timeline(&b).await.iter().map(|(_, s, _)| *s).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    drop(c);
    mallory.stop().await;
}

/// Issue 11, item 4: an author signs two versions of each post; one reaches bob and
/// the other carol (through two peers of Mallory's, one next to each), 25 times,
/// faster than a minute. bob and carol forward what they got to each other: neither
/// may hold that against the other. The author is flagged (with proof) on both, and
/// both stay connected to each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocation_flags_the_author_and_honest_forwarders_keep_their_peers() {
    let wait = Duration::from_secs(60);
    let (bob, carol) = (Profile::init("bob"), Profile::init("carol"));
    let b = bob.up(&[]).await;
    let b_addr = addr(&b).await;
    let c = carol.up(&["--bootstrap", &b_addr]).await;
    let c_addr = addr(&c).await;
    let (bob_id, carol_id) = (b.author().to_string(), c.author().to_string());
    let author = Identity::generate();
    let k = author.author();
    for who in [&bob, &carol] {
        let out = who.cli(&["follow", &k.to_string()]);
        assert!(out.status.success(), "{}", crate::harness::stderr(&out));
    }
    let (m1, m2) = (Mallory::start(&b_addr).await, Mallory::start(&c_addr).await);
    let now = starling_node::clock::system_ms();
    for seq in 1..=25u64 {
        let before = (
            rejected(&status(&b).await, "equivocation"),
            rejected(&status(&c).await, "equivocation"),
        );
        m1.publish(
            k,
            sign_as(&author, seq, now, &format!("version A of {seq}")),
        )
        .await;
        m2.publish(
            k,
            sign_as(&author, seq, now, &format!("version B of {seq}")),
        )
        .await;
        wait_for(wait, &format!("equivocation {seq} seen"), || async {
            rejected(&status(&b).await, "equivocation") > before.0
                || rejected(&status(&c).await, "equivocation") > before.1
        })
        .await
        .unwrap();
    }
    for (d, other) in [(&b, &carol_id), (&c, &bob_id)] {
        let st = status(d).await;
        let flagged = st["flagged"].as_array().unwrap();
        assert!(
            flagged
                .iter()
                .any(|f| f["peer_id"] == k.to_string() && f["proofs"].as_u64() >= Some(1)),
            "the author is flagged: {st}"
        );
        let peers: Vec<&str> = st["network"]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert!(
            peers.contains(&other.as_str()),
            "still connected to {other}: {peers:?}"
        );
    }
    // Each kept one version of every seq, never two.
    for d in [&b, &c] {
        let tl = timeline(d).await;
        let mut seqs: Vec<u64> = tl.iter().map(|(_, s, _)| *s).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), tl.len(), "one version per seq: {tl:?}");
    }
    m1.stop().await;
    m2.stop().await;
}

/// Issue 11, item 1: one peer sends 100,000 sync requests and 10,000 follow /
/// unfollow statements (64 at a time). Every one gets an answer (most: "too many
/// requests"), the daemon's memory stays within a fixed bound, and it goes on
/// serving: `status` answers and an honest peer still syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_from_one_peer_stays_bounded() {
    use futures::stream::{self, StreamExt};
    /// What the flood may add to the daemon's resident memory: caches and the
    /// allocator's slack, nothing that grows with the number of requests.
    const BOUND_KIB: u64 = 24 * 1024;
    let alice = Profile::init("alice");
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    a.post("/posts", &json!({"body": "hello"})).await.unwrap();
    let peer = a.author().peer_id();
    let mallory = Mallory::start(&boot).await;
    // Warm up (one of each), then measure.
    let sync_req = SyncRequest {
        author: a.author().as_bytes().to_vec(),
        after_seq: 0,
        limit: 256,
    };
    mallory.net.sync(peer, sync_req.clone()).await.unwrap();
    let before = rss_kib(a.pid());

    let flood_started = std::time::Instant::now();
    let answers: Vec<_> = stream::iter(0..100_000)
        .map(|_| mallory.net.sync(peer, sync_req.clone()))
        .buffer_unordered(64)
        .collect()
        .await;
    let served = answers
        .iter()
        .filter(|r| matches!(r, Ok(SyncResponse::Posts { .. })))
        .count();
    let throttled = answers
        .iter()
        .filter(|r| matches!(r, Ok(SyncResponse::Error { .. })))
        .count();
    assert_eq!(served + throttled, 100_000, "every request is answered");
    // The gate lets a burst of 64 through, then 32 a second: what was served depends
    // on how long the flood took (longer on a loaded machine), never more than that.
    let secs = flood_started.elapsed().as_secs_f64();
    let allowed = 64.0 + 32.0 * (secs + 1.0);
    assert!(
        (served as f64) <= allowed,
        "at most {allowed:.0} served in {secs:.1} s: {served} served"
    );

    let now = starling_node::clock::system_ms();
    let cycles: Vec<_> = stream::iter(0..10_000u64)
        .map(|i| {
            let st = starling_core::FollowStatement::sign(
                starling_core::FollowContent {
                    follower: mallory.author(),
                    followee: a.author(),
                    following: i % 2 == 0,
                    ts: Timestamp::from_parts(now + i, 0),
                },
                &mallory.id,
            )
            .unwrap();
            mallory.net.social(
                peer,
                SocialRequest::Follow {
                    statement: st.into_bytes(),
                },
            )
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(
        cycles.iter().all(|r| r.is_ok()),
        "every statement is answered"
    );
    let after = rss_kib(a.pid());
    println!(
        "daemon RSS: {before} KiB before, {after} KiB after the flood ({served} syncs served)"
    );
    assert!(
        after < before + BOUND_KIB,
        "memory grew from {before} KiB to {after} KiB"
    );
    let st = status(&a).await;
    assert!(
        st["counters"]["ignored.throttled"].as_u64().unwrap_or(0) >= throttled as u64,
        "refusals are counted: {st}"
    );
    // An honest peer is still served.
    let honest = Mallory::start(&boot).await;
    let posts = honest
        .sync(&boot, &peer.to_string(), &a.author().to_string(), 0)
        .await;
    assert_eq!(posts.len(), 1);
    honest.stop().await;
    mallory.stop().await;
}

/// Issue 11, item 9: a followed author posting without limit cannot fill a
/// follower's disk. bob keeps 10 posts per author and 15 of others in all: alice's
/// 30 posts and carol's 10 leave her newest 5 and carol's 10; bob's own 20 posts
/// are never evicted; the evictions are counted in `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_evict_the_oldest_posts_of_others_and_never_our_own() {
    let wait = Duration::from_secs(60);
    let (alice, carol, bob) = (
        Profile::init("alice"),
        Profile::init("carol"),
        Profile::init("bob"),
    );
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let c = carol.up(&["--bootstrap", &boot]).await;
    let b = bob
        .up(&[
            "--bootstrap",
            &boot,
            "--quota-per-author",
            "10",
            "--quota-total",
            "15",
            "--gc-interval",
            "1s",
        ])
        .await;
    let (alice_id, carol_id) = (a.author().to_string(), c.author().to_string());
    for who in [&alice_id, &carol_id] {
        assert!(bob.cli(&["follow", who]).status.success());
    }
    wait_for(wait, "bob's follows to arrive", || async {
        status(&a).await["followers"] == 1 && status(&c).await["followers"] == 1
    })
    .await
    .unwrap();
    for i in 1..=20 {
        b.post("/posts", &json!({ "body": format!("bob {i}") }))
            .await
            .unwrap();
    }
    for i in 1..=30 {
        a.post("/posts", &json!({ "body": format!("alice {i}") }))
            .await
            .unwrap();
    }
    wait_for(wait, "alice's newest post at bob", || async {
        timeline(&b)
            .await
            .iter()
            .any(|(who, s, _)| *who == alice_id && *s == 30)
    })
    .await
    .unwrap();
    for i in 1..=10 {
        c.post("/posts", &json!({ "body": format!("carol {i}") }))
            .await
            .unwrap();
    }
    wait_for(wait, "25 posts of others evicted", || async {
        status(&b).await["counters"]["evicted.quota"] == 25
    })
    .await
    .unwrap();
    let tl = timeline(&b).await;
    let seqs = |who: &str| {
        let mut v: Vec<u64> = tl
            .iter()
            .filter(|(a, _, _)| a == who)
            .map(|(_, s, _)| *s)
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(seqs(&alice_id), (26..=30).collect::<Vec<_>>());
    assert_eq!(seqs(&carol_id), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(&b.author().to_string()), (1..=20).collect::<Vec<_>>());
}
