//! Numbered schema migrations. `PRAGMA user_version` holds the number of the last one
//! applied; each runs in its own transaction. Never edit a released migration: add
//! the next number.

use std::path::Path;

use rusqlite::Connection;

use crate::{Result, StoreError};

/// `(number, sql)`, in order, starting at 1.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../migrations/0001_posts.sql")),
    (2, include_str!("../migrations/0002_social.sql")),
    (3, include_str!("../migrations/0003_dht.sql")),
    (4, include_str!("../migrations/0004_equivocations.sql")),
    (5, include_str!("../migrations/0005_peers.sql")),
    (6, include_str!("../migrations/0006_fewer_post_indexes.sql")),
];

pub fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: current,
            known,
        });
    }
    for (n, sql) in MIGRATIONS.iter().filter(|(n, _)| *n > current) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", n)?;
        tx.commit()?;
        tracing::info!(migration = n, "applied schema migration");
    }
    Ok(())
}
