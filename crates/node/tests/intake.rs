//! The intake takes batches as gossip hands them over: each is checked and queued
//! for the store, and the next is checked before the first has committed. Posts
//! queued and not yet committed count as held: a second version of one is an
//! equivocation (refused, the proof kept, the first version stored), a copy a
//! duplicate.

use starling_core::limits::DEFAULT_POST_TTL;
use starling_core::{Channel, Identity, Post, PostContent, PostError, Refusal, Timestamp, Verdict};
use starling_net::NetConfig;
use starling_node::{Node, NodeConfig, Profile};

fn post(author: &Identity, seq: u64, body: &str, now_ms: u64) -> Vec<u8> {
    let ts = Timestamp::from_parts(now_ms - 60_000 + seq, 0);
    Post::sign(
        PostContent {
            author: author.author(),
            seq,
            ts,
            expires_at: now_ms + DEFAULT_POST_TTL.as_millis() as u64,
            body: body.into(),
            repost_of: None,
        },
        author,
    )
    .unwrap()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_queued_for_the_store_count_as_held_by_the_next_batches() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        Profile::create(&dir.path().join("bob"), "bob", 0).unwrap(),
        NodeConfig {
            network: Some(NetConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                periodic_bootstrap: None,
                ..NetConfig::default()
            }),
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let alice = Identity::from_secret_bytes([9; 32]);
    let a = alice.author();
    node.follow(&a.to_string()).await.unwrap();
    let now = starling_node::clock::system_ms();
    let first = post(&alice, 1, "the first version", now);
    let second = post(&alice, 1, "a second version of seq 1", now);
    let next = post(&alice, 2, "the next post", now);

    // Three batches, as gossip would hand them over; none waits for the one before
    // it to commit.
    let from = a.peer_id();
    let on = |bytes: &Vec<u8>| (bytes.clone(), Channel::Topic(a));
    let verdicts = node
        .ingest(
            from,
            vec![
                vec![on(&first)],
                vec![on(&second), on(&first)],
                vec![on(&next)],
            ],
        )
        .await;
    assert_eq!(verdicts.len(), 4, "{verdicts:?}");
    assert!(
        matches!(verdicts[0], Verdict::Fresh(_)),
        "{:?}",
        verdicts[0]
    );
    assert!(
        matches!(
            verdicts[1],
            Verdict::Refused(Refusal::Post(PostError::Equivocation { seq: 1, .. }))
        ),
        "the second version, while the first is queued: {:?}",
        verdicts[1]
    );
    assert!(
        matches!(verdicts[2], Verdict::Duplicate(_)),
        "a copy of the queued post: {:?}",
        verdicts[2]
    );
    assert!(
        matches!(verdicts[3], Verdict::Fresh(_)),
        "{:?}",
        verdicts[3]
    );

    // Stored: the first version and the next post; alice is flagged with the proof.
    let page = node.posts_of(a, 10, None).await.unwrap();
    let mut bodies: Vec<&str> = page.posts.iter().map(|p| p.body.as_str()).collect();
    bodies.sort();
    assert_eq!(bodies, ["the first version", "the next post"]);
    let status = node.status().await.unwrap();
    assert_eq!(status.flagged.len(), 1, "{:?}", status.flagged);
    assert_eq!(status.flagged[0].peer_id, a);
    assert_eq!(status.flagged[0].first_seq, 1);

    // Nothing is left pending: the same batch again is all duplicates.
    let again = node.ingest(from, vec![vec![on(&first), on(&next)]]).await;
    assert!(
        again.iter().all(|v| matches!(v, Verdict::Duplicate(_))),
        "{again:?}"
    );
    node.shutdown().await;
}
