//! Follow statements and handle pins.
//!
//! `following` holds this user's latest statement per followee; a statement is
//! replaced only by a later one (HLC timestamp). Undelivered statements are the
//! outbox. `followers` holds others' latest statements about this user. `pins`
//! remembers the key first seen for each handle.

use rusqlite::{OptionalExtension, Row, params};
use starling_core::{AuthorId, FollowStatement};

use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowingRow {
    pub statement: FollowStatement,
    pub handle: Option<String>,
    pub created_at: u64,
    pub delivered_at: Option<u64>,
    pub attempts: u32,
    pub next_attempt: u64,
    pub last_error: Option<String>,
    pub synced_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerRow {
    pub statement: FollowStatement,
    pub received_at: u64,
}

/// The outcome of pinning a handle to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// First time we see this handle.
    New,
    /// Same key as before.
    Same,
    /// The handle was pinned to another key: nothing changed.
    Conflict { pinned: AuthorId },
}

fn statement(raw: &[u8], table: &'static str) -> Result<FollowStatement> {
    FollowStatement::decode(raw).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

fn author(raw: &[u8], table: &'static str) -> Result<AuthorId> {
    AuthorId::from_slice(raw).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

type RawFollowing = (
    Vec<u8>,
    Option<String>,
    i64,
    Option<i64>,
    i64,
    i64,
    Option<String>,
    i64,
);

const FOLLOWING_COLS: &str =
    "statement, handle, created_at, delivered_at, attempts, next_attempt, last_error, synced_seq";

fn raw_following(r: &Row<'_>) -> rusqlite::Result<RawFollowing> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn following_row(raw: RawFollowing) -> Result<FollowingRow> {
    let (st, handle, created, delivered, attempts, next, err, synced) = raw;
    Ok(FollowingRow {
        statement: statement(&st, "following")?,
        handle,
        created_at: created as u64,
        delivered_at: delivered.map(|d| d as u64),
        attempts: attempts as u32,
        next_attempt: next as u64,
        last_error: err,
        synced_seq: synced as u64,
    })
}

/// See [`Store::advance_synced_seq`]; also run right after inserts, in the same job.
pub(crate) fn advance_on(c: &rusqlite::Connection, followee: AuthorId) -> Result<(u64, u64)> {
    let synced: i64 = match c
        .prepare_cached("SELECT synced_seq FROM following WHERE followee = ?1")?
        .query_row([followee.as_bytes()], |r| r.get(0))
        .optional()?
    {
        Some(s) => s,
        None => return Ok((0, 0)), // not followed: no position to keep
    };
    const STEP: i64 = 256;
    let mut at = synced;
    let mut next = c.prepare_cached(
        "SELECT seq FROM posts WHERE author = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let gap = loop {
        let seqs: Vec<i64> = next
            .query_map(params![followee.as_bytes(), at, STEP], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let before = at;
        for s in &seqs {
            if *s != at + 1 {
                break;
            }
            at = *s;
        }
        if at - before < seqs.len() as i64 {
            break true; // stopped at a gap
        }
        if (seqs.len() as i64) < STEP {
            break false; // everything held is covered
        }
    };
    if at != synced {
        c.prepare_cached("UPDATE following SET synced_seq = ?2 WHERE followee = ?1")?
            .execute(params![followee.as_bytes(), at])?;
    }
    // Without a gap, the position is the highest seq held.
    let max = if gap {
        c.prepare_cached("SELECT max(seq) FROM posts WHERE author = ?1")?
            .query_row([followee.as_bytes()], |r| r.get::<_, Option<i64>>(0))?
            .unwrap_or(at)
            .max(at)
    } else {
        at
    };
    Ok((at as u64, max as u64))
}

fn put_following_on(
    c: &rusqlite::Connection,
    st: &FollowStatement,
    handle: Option<&str>,
    now_ms: u64,
) -> Result<bool> {
    let held: Option<(i64, i64)> = c
        .prepare_cached("SELECT ts, following FROM following WHERE followee = ?1")?
        .query_row([st.followee.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if held.is_some_and(|(ts, _)| ts as u64 >= st.ts.0) {
        return Ok(false);
    }
    let restart = held.is_none_or(|(_, f)| f != 1) && st.following;
    c.prepare_cached(
        "INSERT INTO following (followee, following, ts, statement, handle, created_at,
                                delivered_at, attempts, next_attempt, last_error, synced_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 0, 0, NULL, 0)
         ON CONFLICT (followee) DO UPDATE SET
            following = excluded.following, ts = excluded.ts,
            statement = excluded.statement,
            handle = coalesce(excluded.handle, following.handle),
            created_at = excluded.created_at, delivered_at = NULL, attempts = 0,
            next_attempt = 0, last_error = NULL,
            synced_seq = CASE WHEN ?7 THEN 0 ELSE following.synced_seq END",
    )?
    .execute(params![
        st.followee.as_bytes(),
        st.following as i64,
        st.ts.0 as i64,
        st.as_bytes(),
        handle,
        now_ms as i64,
        restart
    ])?;
    Ok(true)
}

fn put_follower_on(c: &rusqlite::Connection, st: &FollowStatement, now_ms: u64) -> Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO followers (follower, following, ts, statement, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (follower) DO UPDATE SET
                following = excluded.following, ts = excluded.ts,
                statement = excluded.statement, received_at = excluded.received_at
             WHERE excluded.ts > followers.ts",
        )?
        .execute(params![
            st.follower.as_bytes(),
            st.following as i64,
            st.ts.0 as i64,
            st.as_bytes(),
            now_ms as i64
        ])?;
    Ok(n > 0)
}

impl Store {
    /// Records our own statement if it is newer than the one held. A new follow
    /// restarts catch-up from the beginning. Returns whether it was stored.
    pub async fn put_following(
        &self,
        st: FollowStatement,
        handle: Option<String>,
        now_ms: u64,
    ) -> Result<bool> {
        let stored = self.put_followings(vec![(st, handle)], now_ms).await?;
        Ok(stored.first().copied().unwrap_or(false))
    }

    /// Records several of our own statements in one transaction (one flush to disk),
    /// each as [`Store::put_following`] would. Returns, for each, whether it was
    /// stored.
    pub async fn put_followings(
        &self,
        statements: Vec<(FollowStatement, Option<String>)>,
        now_ms: u64,
    ) -> Result<Vec<bool>> {
        self.write(move |c| {
            statements
                .iter()
                .map(|(st, handle)| put_following_on(c, st, handle.as_deref(), now_ms))
                .collect()
        })
        .await
    }

    /// Our statement about `followee`, if any.
    pub async fn following_of(&self, followee: AuthorId) -> Result<Option<FollowingRow>> {
        self.read(move |c| {
            let raw = c
                .prepare_cached(&format!(
                    "SELECT {FOLLOWING_COLS} FROM following WHERE followee = ?1"
                ))?
                .query_row([followee.as_bytes()], raw_following)
                .optional()?;
            raw.map(following_row).transpose()
        })
        .await
    }

    /// All our statements; with `active_only`, only follows (not unfollows).
    pub async fn following(&self, active_only: bool) -> Result<Vec<FollowingRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {FOLLOWING_COLS} FROM following {} ORDER BY created_at DESC",
                if active_only {
                    "WHERE following = 1"
                } else {
                    ""
                }
            );
            let rows = c
                .prepare_cached(&sql)?
                .query_map([], raw_following)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(following_row).collect()
        })
        .await
    }

    /// The outbox: undelivered statements whose next attempt is due.
    pub async fn outbox_due(&self, now_ms: u64, limit: usize) -> Result<Vec<FollowingRow>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {FOLLOWING_COLS} FROM following
                     WHERE delivered_at IS NULL AND next_attempt <= ?1
                     ORDER BY next_attempt LIMIT ?2"
                ))?
                .query_map(params![now_ms as i64, limit as i64], raw_following)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(following_row).collect()
        })
        .await
    }

    /// How many statements wait for delivery.
    pub async fn outbox_len(&self) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM following WHERE delivered_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }

    /// Marks the statement with timestamp `ts` delivered (a newer one stays pending).
    pub async fn outbox_delivered(&self, followee: AuthorId, ts: u64, now_ms: u64) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE following SET delivered_at = ?3, last_error = NULL
                 WHERE followee = ?1 AND ts = ?2",
            )?
            .execute(params![followee.as_bytes(), ts as i64, now_ms as i64])?;
            Ok(())
        })
        .await
    }

    /// Records a failed delivery and when to try again.
    pub async fn outbox_failed(
        &self,
        followee: AuthorId,
        ts: u64,
        next_attempt: u64,
        error: String,
    ) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE following SET attempts = attempts + 1, next_attempt = ?3, last_error = ?4
                 WHERE followee = ?1 AND ts = ?2 AND delivered_at IS NULL",
            )?
            .execute(params![
                followee.as_bytes(),
                ts as i64,
                next_attempt as i64,
                error
            ])?;
            Ok(())
        })
        .await
    }

    /// Makes an undelivered statement due now (its followee just came online). Not
    /// flushed to disk: it runs at every new connection, and a crash only delays the
    /// retry to its scheduled time.
    pub async fn outbox_retry_now(&self, followee: AuthorId) -> Result<bool> {
        self.write_relaxed(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE following SET next_attempt = 0
                     WHERE followee = ?1 AND delivered_at IS NULL",
                )?
                .execute([followee.as_bytes()])?;
            Ok(n > 0)
        })
        .await
    }

    pub async fn set_synced_seq(&self, followee: AuthorId, seq: u64) -> Result<()> {
        self.write_relaxed(move |c| {
            c.prepare_cached(
                "UPDATE following SET synced_seq = max(synced_seq, ?2) WHERE followee = ?1",
            )?
            .execute(params![followee.as_bytes(), seq as i64])?;
            Ok(())
        })
        .await
    }

    /// Moves `synced_seq` of `followee` over every post held right after it, and
    /// returns `(synced_seq, highest seq held)`: a gap when they differ. The
    /// position can always be recomputed, so the commit is not flushed to disk.
    pub async fn advance_synced_seq(&self, followee: AuthorId) -> Result<(u64, u64)> {
        self.write_relaxed(move |c| advance_on(c, followee)).await
    }

    /// Records a follower's statement if newer than the one held; returns whether it
    /// was stored.
    pub async fn put_follower(&self, st: FollowStatement, now_ms: u64) -> Result<bool> {
        self.write(move |c| put_follower_on(c, &st, now_ms)).await
    }

    /// Records several followers' statements in one transaction, each as
    /// [`Store::put_follower`] would (restoring an export).
    pub async fn put_followers(&self, statements: Vec<FollowStatement>, now_ms: u64) -> Result<()> {
        if statements.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            for st in &statements {
                put_follower_on(c, st, now_ms)?;
            }
            Ok(())
        })
        .await
    }

    /// `follower`'s latest statement about us, if any.
    pub async fn follower_of(&self, follower: AuthorId) -> Result<Option<FollowerRow>> {
        self.read(move |c| {
            let raw: Option<(Vec<u8>, i64)> = c
                .prepare_cached("SELECT statement, received_at FROM followers WHERE follower = ?1")?
                .query_row([follower.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            raw.map(|(raw, at)| {
                Ok(FollowerRow {
                    statement: statement(&raw, "followers")?,
                    received_at: at as u64,
                })
            })
            .transpose()
        })
        .await
    }

    pub async fn followers(&self, active_only: bool) -> Result<Vec<FollowerRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT statement, received_at FROM followers {} ORDER BY ts DESC",
                if active_only {
                    "WHERE following = 1"
                } else {
                    ""
                }
            );
            let rows: Vec<(Vec<u8>, i64)> = c
                .prepare_cached(&sql)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(raw, at)| {
                    Ok(FollowerRow {
                        statement: statement(&raw, "followers")?,
                        received_at: at as u64,
                    })
                })
                .collect()
        })
        .await
    }

    /// Pins `handle` to `key` unless it is pinned to another key already.
    pub async fn pin(&self, handle: String, key: AuthorId, now_ms: u64) -> Result<Pin> {
        self.write(move |c| {
            let held: Option<Vec<u8>> = c
                .prepare_cached("SELECT key FROM pins WHERE handle = ?1")?
                .query_row([&handle], |r| r.get(0))
                .optional()?;
            match held {
                Some(k) if k == key.as_bytes() => Ok(Pin::Same),
                Some(k) => Ok(Pin::Conflict {
                    pinned: author(&k, "pins")?,
                }),
                None => {
                    c.prepare_cached(
                        "INSERT INTO pins (handle, key, first_seen) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![
                        handle,
                        key.as_bytes(),
                        now_ms as i64
                    ])?;
                    Ok(Pin::New)
                }
            }
        })
        .await
    }

    pub async fn pinned_key(&self, handle: String) -> Result<Option<AuthorId>> {
        self.read(move |c| {
            let k: Option<Vec<u8>> = c
                .prepare_cached("SELECT key FROM pins WHERE handle = ?1")?
                .query_row([&handle], |r| r.get(0))
                .optional()?;
            k.map(|k| author(&k, "pins")).transpose()
        })
        .await
    }

    /// Every pinned `(key, handle)`.
    pub async fn pins(&self) -> Result<Vec<(AuthorId, String)>> {
        self.read(|c| {
            let rows: Vec<(Vec<u8>, String)> = c
                .prepare_cached("SELECT key, handle FROM pins")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(k, h)| Ok((author(&k, "pins")?, h)))
                .collect()
        })
        .await
    }

    /// Deletes every post of `author` (after an unfollow).
    pub async fn delete_posts_of(&self, author: AuthorId) -> Result<usize> {
        self.write(move |c| {
            Ok(c.prepare_cached("DELETE FROM posts WHERE author = ?1")?
                .execute([author.as_bytes()])?)
        })
        .await
    }
}

impl Store {
    /// Keeps a DHT record stored for someone else (replacing the one under its key).
    pub async fn put_dht_record(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO dht_records (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            )?
            .execute(params![key, value, expires_at as i64])?;
            Ok(())
        })
        .await
    }

    /// Keeps a batch of DHT records stored for others (`key`, `value`, `expires_at`)
    /// in one relaxed transaction (they can be fetched again: no disk flush), drops
    /// the expired ones and then, beyond `max_rows`, those expiring soonest. Returns
    /// the rows dropped.
    pub async fn put_dht_records(
        &self,
        batch: Vec<(Vec<u8>, Vec<u8>, u64)>,
        now_ms: u64,
        max_rows: usize,
    ) -> Result<usize> {
        self.write_relaxed(move |c| {
            let mut put = c.prepare_cached(
                "INSERT INTO dht_records (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            )?;
            for (key, value, expires_at) in batch {
                put.execute(params![key, value, expires_at as i64])?;
            }
            let expired = c
                .prepare_cached("DELETE FROM dht_records WHERE expires_at <= ?1")?
                .execute([now_ms as i64])?;
            let over = c
                .prepare_cached(
                    "DELETE FROM dht_records WHERE key IN (SELECT key FROM dht_records
                     ORDER BY expires_at DESC LIMIT -1 OFFSET ?1)",
                )?
                .execute([max_rows as i64])?;
            Ok(expired + over)
        })
        .await
    }

    /// Remembers peers we are connected to (`peer id bytes`, `addresses`), seen at
    /// `now_ms`, in one relaxed transaction; beyond `max_rows` the peers seen longest
    /// ago are forgotten.
    pub async fn put_peers(
        &self,
        peers: Vec<(Vec<u8>, Vec<String>)>,
        now_ms: u64,
        max_rows: usize,
    ) -> Result<()> {
        self.write_relaxed(move |c| {
            let mut put = c.prepare_cached(
                "INSERT INTO peers (peer_id, addrs, seen_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (peer_id) DO UPDATE SET addrs = excluded.addrs, seen_at = excluded.seen_at",
            )?;
            for (peer, addrs) in peers {
                put.execute(params![peer, addrs.join("\n"), now_ms as i64])?;
            }
            c.prepare_cached(
                "DELETE FROM peers WHERE peer_id IN (SELECT peer_id FROM peers
                 ORDER BY seen_at DESC LIMIT -1 OFFSET ?1)",
            )?
            .execute([max_rows as i64])?;
            Ok(())
        })
        .await
    }

    /// The peers remembered, most recently seen first: (`peer id bytes`, addresses).
    pub async fn peers(&self, limit: usize) -> Result<Vec<(Vec<u8>, Vec<String>)>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached("SELECT peer_id, addrs FROM peers ORDER BY seen_at DESC LIMIT ?1")?
                .query_map([limit as i64], |r| {
                    let addrs: String = r.get(1)?;
                    Ok((r.get(0)?, addrs.lines().map(str::to_string).collect()))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Unexpired DHT records, `(key, value, expires_at)`; expired ones are deleted.
    pub async fn dht_records(&self, now_ms: u64) -> Result<Vec<(Vec<u8>, Vec<u8>, u64)>> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM dht_records WHERE expires_at <= ?1")?
                .execute([now_ms as i64])?;
            let rows = c
                .prepare_cached("SELECT key, value, expires_at FROM dht_records")?
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}
