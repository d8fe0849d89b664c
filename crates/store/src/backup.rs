//! Reading a profile's own records for an export, beside a running daemon or
//! without one: [`Snapshot`] is a read-only connection holding one read
//! transaction, so everything it returns belongs to one moment of the database (WAL
//! lets it read while the daemon's writer commits). Importing goes through the
//! ordinary writes of the store.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};
use starling_core::AuthorId;

use crate::migrations::MIGRATIONS;
use crate::{Result, StoreError};

/// The first schema with every table read here (posts, following, followers).
const SOCIAL_SCHEMA: u32 = 2;

/// One of our own statements as stored: its bytes and the handle it was resolved from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowingRaw {
    pub statement: Vec<u8>,
    pub handle: Option<String>,
}

/// A consistent, read-only view of a profile's database.
pub struct Snapshot {
    conn: Connection,
}

impl Snapshot {
    /// Opens `path` read-only and starts a read transaction; `None` when there is no
    /// database yet (a profile whose node never ran). Never writes, never migrates:
    /// a database of another schema than this build's is refused.
    pub fn open(path: &Path) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if found > known {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        if found == 0 {
            // Created empty (by `make_private`) and never opened by a node.
            return Ok(None);
        }
        if found < SOCIAL_SCHEMA {
            return Err(StoreError::Corrupt {
                table: "meta",
                reason: format!(
                    "schema {found} predates the social tables: start the node once to upgrade it"
                ),
            });
        }
        // Deferred: the snapshot is taken at the first read and kept until dropped.
        conn.execute_batch("BEGIN")?;
        Ok(Some(Self { conn }))
    }

    /// Up to `limit` of `author`'s posts with `seq > after`, expired or not, in seq
    /// order, as the exact stored bytes: one page of the archive.
    pub fn posts_of(
        &self,
        author: AuthorId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, raw FROM posts WHERE author = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(
                params![author.as_bytes(), after as i64, limit as i64],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Our own statements (follows and unfollows), oldest first.
    pub fn following(&self) -> Result<Vec<FollowingRaw>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT statement, handle FROM following ORDER BY ts, followee")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(FollowingRaw {
                    statement: r.get(0)?,
                    handle: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Our followers' statements about us, as received, oldest first.
    pub fn followers(&self) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT statement FROM followers ORDER BY ts, follower")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}
