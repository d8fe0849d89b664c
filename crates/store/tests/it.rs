//! Store tests against real SQLite files in temporary directories.

use starling_core::{Identity, Post, PostContent, Timestamp};
use starling_store::{Cursor, Inserted, Store, StoreConfig, StoreError};

const NOW: u64 = 1_767_225_600_000;
const HOUR: u64 = 3_600_000;

fn post(id: &Identity, seq: u64, ms: u64, life: u64, body: &str) -> Post {
    Post::sign(
        PostContent {
            author: id.author(),
            seq,
            ts: Timestamp::from_parts(ms, 0),
            expires_at: ms + life,
            body: body.into(),
            repost_of: None,
        },
        id,
    )
    .unwrap()
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("starling.db"), StoreConfig::default()).unwrap()
}

#[tokio::test]
async fn insert_detects_duplicates_and_equivocation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = Identity::from_secret_bytes([1; 32]);
    let p1 = post(&a, 1, NOW, HOUR, "one");
    let p1b = post(&a, 1, NOW, HOUR, "another one");
    let r = store
        .insert_posts(vec![p1.clone(), p1.clone(), p1b], NOW)
        .await
        .unwrap();
    assert_eq!(r[0], Inserted::New);
    assert_eq!(r[1], Inserted::Duplicate);
    assert_eq!(r[2], Inserted::Conflict(Box::new(p1.clone())));
    assert_eq!(store.post(a.author(), 1).await.unwrap(), Some(p1));
}

#[tokio::test]
async fn timeline_is_newest_first_and_pages_by_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = Identity::from_secret_bytes([1; 32]);
    let b = Identity::from_secret_bytes([2; 32]);
    let mut posts = Vec::new();
    for i in 0..10u64 {
        posts.push(post(&a, i + 1, NOW + i * 10, HOUR, &format!("a{i}")));
        // Same millisecond as a's: the order falls back to (author, seq).
        posts.push(post(&b, i + 1, NOW + i * 10, HOUR, &format!("b{i}")));
    }
    store.insert_posts(posts, NOW).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.timeline(NOW + 1000, 3, cursor).await.unwrap();
        if page.is_empty() {
            break;
        }
        cursor = Some(Cursor::of(&page.last().unwrap().post));
        seen.extend(page.into_iter().map(|s| s.post));
    }
    assert_eq!(seen.len(), 20);
    let keys: Vec<_> = seen.iter().map(|p| (p.ts, p.author, p.seq)).collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(keys, sorted, "timeline must be strictly newest first");
    sorted.dedup();
    assert_eq!(sorted.len(), 20, "no post twice across pages");

    let text = cursor.unwrap().to_string();
    assert_eq!(text.parse::<Cursor>().unwrap(), cursor.unwrap());
    assert!("zz-1-x".parse::<Cursor>().is_err());
}

#[tokio::test]
async fn expiry_archive_sync_ranges_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let me = Identity::from_secret_bytes([1; 32]);
    let other = Identity::from_secret_bytes([2; 32]);
    store
        .insert_posts(
            vec![
                post(&me, 1, NOW, 1000, "mine, short"),
                post(&me, 2, NOW + 1, HOUR, "mine, long"),
                post(&other, 1, NOW, 1000, "theirs, short"),
                post(&other, 2, NOW + 2, HOUR, "theirs, long"),
            ],
            NOW,
        )
        .await
        .unwrap();
    let later = NOW + 5000;
    let tl: Vec<String> = store
        .timeline(later, 50, None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.post.body.clone())
        .collect();
    assert_eq!(tl, ["theirs, long", "mine, long"]);

    // Sync never serves expired posts.
    let range = store
        .posts_after(other.author(), 0, later, 10)
        .await
        .unwrap();
    assert_eq!(range.iter().map(|p| p.seq).collect::<Vec<_>>(), [2]);

    assert_eq!(
        store.delete_expired(later, me.author(), 100).await.unwrap(),
        1
    );
    assert_eq!(store.post(other.author(), 1).await.unwrap(), None);
    let archive = store
        .expired_posts_of(me.author(), later, 10, None)
        .await
        .unwrap();
    assert_eq!(archive.len(), 1);
    assert_eq!(archive[0].post.body, "mine, short");
    assert_eq!(store.post_counts(later).await.unwrap(), (3, 2));
    assert_eq!(store.head(me.author()).await.unwrap().unwrap().seq, 2);
}

#[tokio::test]
async fn concurrent_writes_are_batched_and_all_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = Identity::from_secret_bytes([3; 32]);
    let mut tasks = Vec::new();
    for seq in 1..=300u64 {
        let store = store.clone();
        let p = post(&a, seq, NOW + seq, HOUR, "x");
        tasks.push(tokio::spawn(async move {
            store.insert_posts(vec![p], NOW).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), vec![Inserted::New]);
    }
    store.close().await;
    // Reopen: everything is there and the file is sound.
    let store = open(&dir);
    assert_eq!(store.post_counts(NOW).await.unwrap().0, 300);
    assert!(store.integrity_check().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("starling.db");
    {
        let store = open(&dir);
        store.close().await;
    }
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", 999).unwrap();
    drop(c);
    match Store::open(&path, StoreConfig::default()) {
        Err(StoreError::TooNew { found: 999, .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

fn follow(
    by: &Identity,
    of: &Identity,
    following: bool,
    ts: u64,
) -> starling_core::FollowStatement {
    starling_core::FollowStatement::sign(
        starling_core::FollowContent {
            follower: by.author(),
            followee: of.author(),
            following,
            ts: Timestamp(ts),
        },
        by,
    )
    .unwrap()
}

#[tokio::test]
async fn follow_statements_latest_wins_and_outbox_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (me, bob) = (
        Identity::from_secret_bytes([1; 32]),
        Identity::from_secret_bytes([2; 32]),
    );
    assert!(
        store
            .put_following(follow(&me, &bob, true, 10), Some("bob".into()), NOW)
            .await
            .unwrap()
    );
    // An older statement never replaces a newer one.
    assert!(
        !store
            .put_following(follow(&me, &bob, false, 5), None, NOW)
            .await
            .unwrap()
    );
    let row = store.following_of(bob.author()).await.unwrap().unwrap();
    assert!(row.statement.following);
    assert_eq!(row.handle.as_deref(), Some("bob"));
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    assert_eq!(store.outbox_due(NOW, 10).await.unwrap().len(), 1);
    store
        .outbox_failed(bob.author(), 10, NOW + 1000, "unreachable".into())
        .await
        .unwrap();
    assert!(store.outbox_due(NOW, 10).await.unwrap().is_empty());
    assert!(store.outbox_retry_now(bob.author()).await.unwrap());
    store.outbox_delivered(bob.author(), 10, NOW).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    // Posts after the catch-up position: the position moves over contiguous seqs.
    let posts: Vec<Post> = [1u64, 2, 4]
        .iter()
        .map(|s| post(&bob, *s, NOW + s, HOUR, "x"))
        .collect();
    store.insert_posts(posts, NOW).await.unwrap();
    assert_eq!(
        store.advance_synced_seq(bob.author()).await.unwrap(),
        (2, 4)
    );
    // Unfollow: a newer statement replaces it, delivery starts over.
    assert!(
        store
            .put_following(follow(&me, &bob, false, 20), None, NOW)
            .await
            .unwrap()
    );
    assert!(store.following(true).await.unwrap().is_empty());
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    // Followers: latest wins too.
    assert!(
        store
            .put_follower(follow(&bob, &me, true, 30), NOW)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_follower(follow(&bob, &me, false, 25), NOW)
            .await
            .unwrap()
    );
    assert_eq!(store.followers(true).await.unwrap().len(), 1);
    // One follower's statement, by key.
    let held = store.follower_of(bob.author()).await.unwrap().unwrap();
    assert!(held.statement.following);
    assert_eq!(held.statement.ts, Timestamp(30));
    assert!(store.follower_of(me.author()).await.unwrap().is_none());
}

#[tokio::test]
async fn pins_are_trust_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (a, b) = (
        Identity::from_secret_bytes([1; 32]).author(),
        Identity::from_secret_bytes([2; 32]).author(),
    );
    assert_eq!(
        store.pin("alice".into(), a, NOW).await.unwrap(),
        starling_store::Pin::New
    );
    assert_eq!(
        store.pin("alice".into(), a, NOW).await.unwrap(),
        starling_store::Pin::Same
    );
    assert_eq!(
        store.pin("alice".into(), b, NOW).await.unwrap(),
        starling_store::Pin::Conflict { pinned: a }
    );
    assert_eq!(store.pinned_key("alice".into()).await.unwrap(), Some(a));
}

#[tokio::test]
async fn dht_records_survive_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .put_dht_record(b"k1".to_vec(), b"v1".to_vec(), NOW + 10)
        .await
        .unwrap();
    store
        .put_dht_record(b"k2".to_vec(), b"v2".to_vec(), NOW - 10)
        .await
        .unwrap();
    assert_eq!(
        store.dht_records(NOW).await.unwrap(),
        vec![(b"k1".to_vec(), b"v1".to_vec(), NOW + 10)]
    );
}

#[tokio::test]
async fn dht_record_batches_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let batch = (0..10u64)
        .map(|i| (vec![i as u8], b"v".to_vec(), NOW + 100 + i))
        .chain([(b"old".to_vec(), b"v".to_vec(), NOW - 1)])
        .collect();
    // One expired row and the four expiring soonest are dropped.
    assert_eq!(store.put_dht_records(batch, NOW, 6).await.unwrap(), 5);
    let held = store.dht_records(NOW).await.unwrap();
    let mut keys: Vec<u8> = held.iter().map(|(k, _, _)| k[0]).collect();
    keys.sort();
    assert_eq!(keys, vec![4, 5, 6, 7, 8, 9]);
}

#[tokio::test]
async fn inline_mode_gives_the_same_answers_and_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("starling.db");
    let inline = StoreConfig {
        inline: true,
        ..StoreConfig::default()
    };
    let a = Identity::from_secret_bytes([1; 32]);
    let p1 = post(&a, 1, NOW, HOUR, "one");
    let p1b = post(&a, 1, NOW, HOUR, "another one");
    let p3 = post(&a, 3, NOW + 1, HOUR, "three");
    let store = Store::open(&path, inline.clone()).unwrap();
    let r = store
        .insert_posts(vec![p1.clone(), p1.clone(), p1b], NOW)
        .await
        .unwrap();
    assert_eq!(r[0], Inserted::New);
    assert_eq!(r[1], Inserted::Duplicate);
    assert_eq!(r[2], Inserted::Conflict(Box::new(p1.clone())));
    store.insert_posts(vec![p3.clone()], NOW).await.unwrap();
    let after = store.posts_after(a.author(), 1, NOW, 10).await.unwrap();
    assert_eq!(after, vec![p3.clone()]);
    store.close().await;
    drop(store);
    // What the inline store committed, the threaded one reads, and the other way.
    let threaded = Store::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(threaded.post(a.author(), 1).await.unwrap(), Some(p1));
    assert_eq!(threaded.post_counts(NOW).await.unwrap(), (2, 2));
    threaded.close().await;
    drop(threaded);
    let again = Store::open(&path, inline).unwrap();
    assert_eq!(
        again
            .posts_after(a.author(), 0, NOW, 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn equivocation_proofs_are_kept_and_bounded_per_author() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = Identity::from_secret_bytes([1; 32]);
    let b = Identity::from_secret_bytes([2; 32]);
    let (one, other) = (post(&a, 1, NOW, HOUR, "one"), post(&a, 1, NOW, HOUR, "ONE"));
    assert!(
        store
            .record_equivocation(
                a.author(),
                1,
                one.as_bytes().to_vec(),
                other.as_bytes().to_vec(),
                NOW
            )
            .await
            .unwrap()
    );
    // The same seq again: already proven.
    assert!(
        !store
            .record_equivocation(
                a.author(),
                1,
                one.as_bytes().to_vec(),
                other.as_bytes().to_vec(),
                NOW
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.equivocation(a.author(), 1).await.unwrap(),
        Some((one.as_bytes().to_vec(), other.as_bytes().to_vec()))
    );
    // An author equivocating without end keeps a few proofs, no more.
    for seq in 2..100 {
        store
            .record_equivocation(a.author(), seq, vec![1], vec![2], NOW)
            .await
            .unwrap();
    }
    store
        .record_equivocation(b.author(), 7, vec![1], vec![2], NOW)
        .await
        .unwrap();
    let flagged = store.equivocators().await.unwrap();
    let of = |id: &Identity| {
        flagged
            .iter()
            .find(|e| e.author == id.author())
            .cloned()
            .unwrap()
    };
    assert_eq!(of(&a).proofs, starling_store::PROOFS_PER_AUTHOR);
    assert_eq!(of(&a).first_seq, 1);
    assert_eq!((of(&b).proofs, of(&b).first_seq), (1, 7));
}

#[tokio::test]
async fn quotas_evict_the_oldest_of_others_and_move_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (me, a, b) = (
        Identity::from_secret_bytes([1; 32]),
        Identity::from_secret_bytes([2; 32]),
        Identity::from_secret_bytes([3; 32]),
    );
    store
        .put_following(follow(&me, &a, true, 1), None, NOW)
        .await
        .unwrap();
    let mut posts = Vec::new();
    for i in 1..=8u64 {
        posts.push(post(&me, i, NOW + i, HOUR, "mine"));
        posts.push(post(&a, i, NOW + 100 + i, HOUR, "a"));
        posts.push(post(&b, i, NOW + 200 + i, HOUR, "b"));
    }
    store.insert_posts(posts, NOW).await.unwrap();
    let quota = starling_store::Quota {
        per_author: 5,
        total: 8,
    };
    // a: 8 -> 5 (seqs 4-8), b: 8 -> 5; then 10 of others > 8: a's two oldest go.
    assert_eq!(store.enforce_quota(me.author(), quota).await.unwrap(), 8);
    let seqs = |v: Vec<Post>| v.iter().map(|p| p.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.posts_after(me.author(), 0, NOW, 100).await.unwrap()),
        (1..=8).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(store.posts_after(a.author(), 0, NOW, 100).await.unwrap()),
        vec![6, 7, 8]
    );
    assert_eq!(
        seqs(store.posts_after(b.author(), 0, NOW, 100).await.unwrap()),
        vec![4, 5, 6, 7, 8]
    );
    // What was evicted is not asked for again: a's position moved past it.
    let row = store.following_of(a.author()).await.unwrap().unwrap();
    assert!(row.synced_seq >= 5, "{}", row.synced_seq);
    assert_eq!(store.enforce_quota(me.author(), quota).await.unwrap(), 0);
}

/// Checkpoints run beside the writer: the database file takes in what was written,
/// though no commit checkpoints (the writer's WAL hook replaces SQLite's automatic
/// checkpoint), and the WAL stays bounded under writes that never pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_off_the_commit_path_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("starling.db");
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    let wal = dir.path().join("starling.db-wal");
    let len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let far = u64::MAX / 2;
    let round = |r: u32| -> Vec<(Vec<u8>, Vec<u8>, u64)> {
        (0..1_000u32)
            .map(|i| {
                let key = format!("/starling/profile/{r}-{i}").into_bytes();
                (key, vec![r as u8; 2048], far)
            })
            .collect()
    };
    // One burst (about 1,200 pages), then quiet: the checkpointer moves it into the
    // database file.
    store.put_dht_records(round(0), 0, 1_000_000).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while len(&path) < 1_000 * 2048 {
        assert!(
            std::time::Instant::now() < deadline,
            "database file {} bytes, WAL {}",
            len(&path),
            len(&wal)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Writes without a pause, about 25,000 pages: the WAL stays near its bound
    // (4,096 frames, cut back to 32 MiB), not the size of everything written.
    for r in 1..=40u32 {
        store.put_dht_records(round(r), 0, 1_000_000).await.unwrap();
    }
    let written = 41 * 1_000 * 4096;
    assert!(
        len(&wal) < written / 2,
        "WAL {} bytes after about {written} written",
        len(&wal)
    );
}

#[tokio::test]
async fn a_snapshot_reads_own_records_beside_the_writer() {
    use starling_store::backup::Snapshot;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("starling.db");
    assert!(Snapshot::open(&path).unwrap().is_none(), "no database yet");
    let store = open(&dir);
    let (me, bob, carol) = (
        Identity::from_secret_bytes([1; 32]),
        Identity::from_secret_bytes([2; 32]),
        Identity::from_secret_bytes([3; 32]),
    );
    // Ours, one expired; and someone else's, which is not ours to export.
    let ours: Vec<Post> = (1..=5)
        .map(|s| post(&me, s, NOW + s, if s == 1 { 1 } else { HOUR }, "mine"))
        .collect();
    store.insert_posts(ours.clone(), NOW).await.unwrap();
    store
        .insert_posts(vec![post(&bob, 1, NOW, HOUR, "bob's")], NOW)
        .await
        .unwrap();
    store
        .put_following(follow(&me, &bob, true, 10), Some("bob".into()), NOW)
        .await
        .unwrap();
    store
        .put_following(follow(&me, &carol, false, 11), None, NOW)
        .await
        .unwrap();
    store
        .put_followers(vec![follow(&bob, &me, true, 12)], NOW)
        .await
        .unwrap();

    let snap = Snapshot::open(&path).unwrap().unwrap();
    let first = snap.posts_of(me.author(), 0, 3).unwrap();
    // The snapshot holds: a post written after its first read is not in it.
    store
        .insert_posts(vec![post(&me, 6, NOW + 6, HOUR, "later")], NOW)
        .await
        .unwrap();
    let rest = snap
        .posts_of(me.author(), first.last().unwrap().0, 3)
        .unwrap();
    let all: Vec<Vec<u8>> = first.into_iter().chain(rest).map(|(_, raw)| raw).collect();
    let want: Vec<Vec<u8>> = ours.iter().map(|p| p.as_bytes().to_vec()).collect();
    assert_eq!(all, want);
    let following = snap.following().unwrap();
    assert_eq!(following.len(), 2);
    assert_eq!(following[0].handle.as_deref(), Some("bob"));
    assert_eq!(
        following[1].statement,
        follow(&me, &carol, false, 11).as_bytes()
    );
    assert_eq!(
        snap.followers().unwrap(),
        [follow(&bob, &me, true, 12).as_bytes().to_vec()]
    );
    drop(snap);
    assert_eq!(
        Snapshot::open(&path)
            .unwrap()
            .unwrap()
            .posts_of(me.author(), 5, 10)
            .unwrap()
            .len(),
        1
    );
}

/// Every read runs on an index, and the schema has no index a query does not use: each
/// costs every received post a B-tree insert.
#[tokio::test]
async fn posts_carry_only_the_indexes_the_queries_use() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    let conn = rusqlite::Connection::open(dir.path().join("starling.db")).unwrap();
    let mut indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'posts'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    indexes.sort();
    assert_eq!(indexes, ["posts_by_expiry", "posts_by_ts"]);
    // The archive pages by seq on the primary key, without a sort.
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT raw, received_at FROM posts
             WHERE author = ?1 AND seq < ?2 AND expires_at <= ?3 ORDER BY seq DESC LIMIT ?4",
        )
        .unwrap()
        .query_map([1, 2, 3, 4], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert!(plan[0].contains("USING PRIMARY KEY"), "{plan:?}");
}
