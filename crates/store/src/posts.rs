//! Posts in the store: inserts with duplicate and equivocation detection, the
//! timeline (cursor-paged, newest first), the archive, sync ranges, and GC.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, params};
use starling_core::{AuthorId, Post, PostRef, Timestamp};

use crate::{Queued, Result, Store, StoreError};

/// A post as held by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPost {
    pub post: Post,
    /// Unix ms when this node stored it.
    pub received_at: u64,
}

/// What happened to one post handed to [`Store::insert_posts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The same bytes were already stored.
    Duplicate,
    /// A different post with the same `(author, seq)` is stored: equivocation.
    Conflict(Box<Post>),
}

/// A position in the timeline: posts strictly older than it come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub ts: Timestamp,
    pub author: AuthorId,
    pub seq: u64,
}

impl Cursor {
    pub fn of(post: &Post) -> Self {
        Self {
            ts: post.ts,
            author: post.author,
            seq: post.seq,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{:x}-{}", self.ts.0, self.seq, self.author)
    }
}

/// Why a cursor string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor {0:?}: use the next_cursor value of a previous page")]
pub struct BadCursor(pub String);

impl FromStr for Cursor {
    type Err = BadCursor;
    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(s.chars().take(100).collect());
        let mut it = s.splitn(3, '-');
        let ts = u64::from_str_radix(it.next().ok_or_else(bad)?, 16).map_err(|_| bad())?;
        let seq = u64::from_str_radix(it.next().ok_or_else(bad)?, 16).map_err(|_| bad())?;
        let author = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        Ok(Self {
            ts: Timestamp(ts),
            author,
            seq,
        })
    }
}

fn decode_post(raw: &[u8]) -> Result<Post> {
    Post::decode(raw).map_err(|e| StoreError::Corrupt {
        table: "posts",
        reason: e.to_string(),
    })
}

fn stored(row: &Row<'_>) -> rusqlite::Result<(Vec<u8>, i64)> {
    Ok((row.get(0)?, row.get(1)?))
}

fn collect_stored(rows: Vec<(Vec<u8>, i64)>) -> Result<Vec<StoredPost>> {
    rows.into_iter()
        .map(|(raw, at)| {
            Ok(StoredPost {
                post: decode_post(&raw)?,
                received_at: at as u64,
            })
        })
        .collect()
}

/// Inserts on the writer's connection (inside its transaction).
pub fn insert_posts_on(
    conn: &Connection,
    posts: &[Post],
    received_at: u64,
) -> Result<Vec<Inserted>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO posts (author, seq, ts, expires_at, raw, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (author, seq) DO NOTHING",
    )?;
    let mut existing =
        conn.prepare_cached("SELECT raw FROM posts WHERE author = ?1 AND seq = ?2")?;
    let mut out = Vec::with_capacity(posts.len());
    for p in posts {
        let n = insert.execute(params![
            p.author.as_bytes(),
            p.seq as i64,
            p.ts.0 as i64,
            p.expires_at as i64,
            p.as_bytes(),
            received_at as i64
        ])?;
        if n == 1 {
            out.push(Inserted::New);
            continue;
        }
        let raw: Vec<u8> =
            existing.query_row(params![p.author.as_bytes(), p.seq as i64], |r| r.get(0))?;
        if raw == p.as_bytes() {
            out.push(Inserted::Duplicate);
        } else {
            out.push(Inserted::Conflict(Box::new(decode_post(&raw)?)));
        }
    }
    Ok(out)
}

impl Store {
    /// Stores posts (already validated by the caller), one result per post; the
    /// commit survives power loss (for this user's own posts).
    pub async fn insert_posts(&self, posts: Vec<Post>, received_at: u64) -> Result<Vec<Inserted>> {
        self.write(move |c| insert_posts_on(c, &posts, received_at))
            .await
    }

    /// Stores posts received from others (validated by the caller) and moves each
    /// author's catch-up position, in one job; the posts can be fetched again, so the
    /// commit is not flushed to disk. Returns one result per post, and per author of
    /// a new post `(author, synced_seq, highest seq held)`: a gap when they differ.
    pub async fn insert_received(
        &self,
        posts: Vec<Post>,
        received_at: u64,
    ) -> Result<(Vec<Inserted>, Vec<(AuthorId, u64, u64)>)> {
        self.queue_received(posts, received_at).await?.done().await
    }

    /// [`Store::insert_received`], queued: resolves once the write is queued, so the
    /// caller can check its next batch while this one commits. Batches queued one
    /// after the other commit in that order.
    pub async fn queue_received(
        &self,
        posts: Vec<Post>,
        received_at: u64,
    ) -> Result<Queued<(Vec<Inserted>, Vec<(AuthorId, u64, u64)>)>> {
        self.queue_relaxed(move |c| {
            let results = insert_posts_on(c, &posts, received_at)?;
            let mut authors: Vec<AuthorId> = posts
                .iter()
                .zip(&results)
                .filter(|(_, r)| **r == Inserted::New)
                .map(|(p, _)| p.author)
                .collect();
            authors.sort();
            authors.dedup();
            let mut positions = Vec::with_capacity(authors.len());
            for a in authors {
                let (synced, max) = crate::social::advance_on(c, a)?;
                positions.push((a, synced, max));
            }
            Ok((results, positions))
        })
        .await
    }

    /// The newest unexpired posts, newest first, strictly before `before`.
    pub async fn timeline(
        &self,
        now_ms: u64,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<StoredPost>> {
        self.read(move |c| {
            let (ts, author, seq) = match before {
                Some(cur) => (
                    cur.ts.0 as i64,
                    cur.author.as_bytes().to_vec(),
                    cur.seq as i64,
                ),
                None => (i64::MAX, vec![0xff; 33], i64::MAX),
            };
            let mut stmt = c.prepare_cached(
                "SELECT raw, received_at FROM posts
                 WHERE (ts, author, seq) < (?1, ?2, ?3) AND expires_at > ?4
                 ORDER BY ts DESC, author DESC, seq DESC LIMIT ?5",
            )?;
            let rows = stmt
                .query_map(
                    params![ts, author, seq, now_ms as i64, limit as i64],
                    stored,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            collect_stored(rows)
        })
        .await
    }

    /// `author`'s unexpired posts, newest (highest seq) first, strictly before
    /// `before`'s seq: one user's page, and the feed of one's own posts.
    pub async fn unexpired_posts_of(
        &self,
        author: AuthorId,
        now_ms: u64,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<StoredPost>> {
        self.posts_of(author, now_ms, limit, before, false).await
    }

    /// `author`'s expired posts (the archive when `author` is this node's user),
    /// newest (highest seq) first, strictly before `before`'s seq.
    pub async fn expired_posts_of(
        &self,
        author: AuthorId,
        now_ms: u64,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<StoredPost>> {
        self.posts_of(author, now_ms, limit, before, true).await
    }

    /// One author's posts, expired or unexpired, by seq on the primary key (seq,
    /// not the timestamp, orders one author's posts).
    async fn posts_of(
        &self,
        author: AuthorId,
        now_ms: u64,
        limit: usize,
        before: Option<Cursor>,
        expired: bool,
    ) -> Result<Vec<StoredPost>> {
        self.read(move |c| {
            let seq = before.map_or(i64::MAX, |cur| cur.seq as i64);
            let mut stmt = c.prepare_cached(if expired {
                "SELECT raw, received_at FROM posts
                 WHERE author = ?1 AND seq < ?2 AND expires_at <= ?3
                 ORDER BY seq DESC LIMIT ?4"
            } else {
                "SELECT raw, received_at FROM posts
                 WHERE author = ?1 AND seq < ?2 AND expires_at > ?3
                 ORDER BY seq DESC LIMIT ?4"
            })?;
            let rows = stmt
                .query_map(
                    params![author.as_bytes(), seq, now_ms as i64, limit as i64],
                    stored,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            collect_stored(rows)
        })
        .await
    }

    /// Sync range: `author`'s unexpired posts with `seq > after_seq`, oldest first.
    pub async fn posts_after(
        &self,
        author: AuthorId,
        after_seq: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Post>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT raw FROM posts
                 WHERE author = ?1 AND seq > ?2 AND expires_at > ?3
                 ORDER BY seq LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        author.as_bytes(),
                        after_seq as i64,
                        now_ms as i64,
                        limit as i64
                    ],
                    |r| r.get::<_, Vec<u8>>(0),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.iter().map(|raw| decode_post(raw)).collect()
        })
        .await
    }

    /// One post, expired or not.
    pub async fn post(&self, author: AuthorId, seq: u64) -> Result<Option<Post>> {
        self.read(move |c| {
            let raw: Option<Vec<u8>> = c
                .prepare_cached("SELECT raw FROM posts WHERE author = ?1 AND seq = ?2")?
                .query_row(params![author.as_bytes(), seq as i64], |r| r.get(0))
                .optional()?;
            raw.map(|r| decode_post(&r)).transpose()
        })
        .await
    }

    /// The stored bytes of each of `ids` that is held.
    pub async fn posts_raw(&self, ids: Vec<PostRef>) -> Result<HashMap<PostRef, Vec<u8>>> {
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT raw FROM posts WHERE author = ?1 AND seq = ?2")?;
            let mut out = HashMap::new();
            for id in ids {
                let raw: Option<Vec<u8>> = stmt
                    .query_row(params![id.author.as_bytes(), id.seq as i64], |r| r.get(0))
                    .optional()?;
                if let Some(raw) = raw {
                    out.insert(id, raw);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The newest post of `author` held here (highest seq), if any.
    pub async fn head(&self, author: AuthorId) -> Result<Option<Post>> {
        self.read(move |c| {
            let raw: Option<Vec<u8>> = c
                .prepare_cached(
                    "SELECT raw FROM posts WHERE author = ?1 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row(params![author.as_bytes()], |r| r.get(0))
                .optional()?;
            raw.map(|r| decode_post(&r)).transpose()
        })
        .await
    }

    /// Deletes expired posts of everyone but `keep` (whose expired posts are the
    /// archive), at most `max` per call so one call never holds the writer long.
    /// Returns how many were deleted.
    pub async fn delete_expired(&self, now_ms: u64, keep: AuthorId, max: usize) -> Result<usize> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM posts WHERE (author, seq) IN (
                        SELECT author, seq FROM posts
                        WHERE expires_at <= ?1 AND author != ?2 LIMIT ?3)",
                )?
                .execute(params![now_ms as i64, keep.as_bytes(), max as i64])?;
            Ok(n)
        })
        .await
    }

    /// How many posts are stored: `(all, unexpired)`.
    pub async fn post_counts(&self, now_ms: u64) -> Result<(u64, u64)> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT count(*), count(*) FILTER (WHERE expires_at > ?1) FROM posts",
                [now_ms as i64],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?)
        })
        .await
    }
}

/// Proofs kept per author: enough to show anyone, few enough that an author
/// equivocating without end cannot fill the store.
pub const PROOFS_PER_AUTHOR: u64 = 8;

/// An author known to have signed two versions of one seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivocator {
    pub author: AuthorId,
    /// Proofs held (at most [`PROOFS_PER_AUTHOR`]).
    pub proofs: u64,
    /// The lowest seq proven twice signed.
    pub first_seq: u64,
}

impl Store {
    /// Keeps the proof that `author` signed both `first` and `second` as its post
    /// `seq`. Returns whether it was kept (not already held, and the author has
    /// fewer than [`PROOFS_PER_AUTHOR`] proofs).
    pub async fn record_equivocation(
        &self,
        author: AuthorId,
        seq: u64,
        first: Vec<u8>,
        second: Vec<u8>,
        now_ms: u64,
    ) -> Result<bool> {
        self.write_relaxed(move |c| {
            let held: u64 =
                c.prepare_cached("SELECT count(*) FROM equivocations WHERE author = ?1")?
                    .query_row([author.as_bytes()], |r| r.get::<_, i64>(0))? as u64;
            if held >= PROOFS_PER_AUTHOR {
                return Ok(false);
            }
            let n = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO equivocations (author, seq, first, second, seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(rusqlite::params![
                    author.as_bytes(),
                    seq as i64,
                    first,
                    second,
                    now_ms as i64
                ])?;
            Ok(n == 1)
        })
        .await
    }

    /// Authors with proofs of equivocation, in key order.
    pub async fn equivocators(&self) -> Result<Vec<Equivocator>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT author, count(*), min(seq) FROM equivocations GROUP BY author ORDER BY author",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)? as u64,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(a, proofs, first_seq)| {
                    let author = AuthorId::from_slice(&a).map_err(|e| StoreError::Corrupt {
                        table: "equivocations",
                        reason: e.to_string(),
                    })?;
                    Ok(Equivocator {
                        author,
                        proofs,
                        first_seq,
                    })
                })
                .collect()
        })
        .await
    }

    /// The two versions held as proof for `author`'s `seq`, if any.
    pub async fn equivocation(
        &self,
        author: AuthorId,
        seq: u64,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT first, second FROM equivocations WHERE author = ?1 AND seq = ?2",
            )?
            .query_row(rusqlite::params![author.as_bytes(), seq as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map(Some)
            .or_else(crate::not_found_none)?)
        })
        .await
    }
}

/// How many posts of others a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Posts kept per followed author (their newest).
    pub per_author: u64,
    /// Posts of others kept in all (the newest by timestamp).
    pub total: u64,
}

impl Default for Quota {
    fn default() -> Self {
        // An author posting every 10 s for a day stays within 10,000; a million
        // posts is about 400 MB at the largest, ~250 MB at a typical size.
        Self {
            per_author: 10_000,
            total: 1_000_000,
        }
    }
}

impl Store {
    /// Evicts other authors' posts beyond `quota`: an author's oldest (lowest seq)
    /// first, then the oldest (by timestamp) of all others; never `me`'s. Catch-up
    /// positions move over what was evicted, so it is not fetched again. Returns
    /// how many posts were evicted.
    pub async fn enforce_quota(&self, me: AuthorId, quota: Quota) -> Result<u64> {
        self.write_relaxed(move |c| {
            let mut evicted = 0u64;
            let over: Vec<(Vec<u8>, i64)> = c
                .prepare_cached(
                    "SELECT author, count(*) FROM posts WHERE author != ?1
                     GROUP BY author HAVING count(*) > ?2",
                )?
                .query_map(params![me.as_bytes(), quota.per_author as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (author, n) in over {
                let excess = n - quota.per_author as i64;
                evicted += evict(
                    c,
                    "SELECT author, seq FROM posts WHERE author = ?1 ORDER BY seq ASC LIMIT ?2",
                    params![author, excess],
                )?;
            }
            let others: i64 = c
                .prepare_cached("SELECT count(*) FROM posts WHERE author != ?1")?
                .query_row([me.as_bytes()], |r| r.get(0))?;
            if others > quota.total as i64 {
                evicted += evict(
                    c,
                    "SELECT author, seq FROM posts WHERE author != ?1 ORDER BY ts ASC LIMIT ?2",
                    params![me.as_bytes(), others - quota.total as i64],
                )?;
            }
            Ok(evicted)
        })
        .await
    }
}

/// Deletes the posts `select` names (`author, seq`), moving each author's catch-up
/// position over the highest seq evicted. Returns how many.
fn evict(c: &Connection, select: &str, args: impl rusqlite::Params) -> Result<u64> {
    let victims: Vec<(Vec<u8>, i64)> = c
        .prepare(select)?
        .query_map(args, |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut highest: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut del = c.prepare_cached("DELETE FROM posts WHERE author = ?1 AND seq = ?2")?;
    for (author, seq) in &victims {
        del.execute(params![author, seq])?;
        let h = highest.entry(author.clone()).or_insert(*seq);
        *h = (*h).max(*seq);
    }
    let mut pos = c.prepare_cached(
        "UPDATE following SET synced_seq = max(synced_seq, ?2) WHERE followee = ?1",
    )?;
    for (author, seq) in highest {
        pos.execute(params![author, seq])?;
    }
    Ok(victims.len() as u64)
}
