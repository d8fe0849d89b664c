-- Posts: every post this node holds, own and followed, as the exact signed bytes
-- plus the columns the queries need.
CREATE TABLE posts (
    author      BLOB    NOT NULL,  -- 32-byte Ed25519 key
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,  -- packed HLC timestamp
    expires_at  INTEGER NOT NULL,  -- Unix ms
    raw         BLOB    NOT NULL,  -- wire bytes, forwarded unchanged
    received_at INTEGER NOT NULL,  -- Unix ms, when this node stored it
    PRIMARY KEY (author, seq)      -- sync ranges: author, seq > n
) WITHOUT ROWID;

-- The timeline: newest first, cursor = (ts, author, seq).
CREATE INDEX posts_by_ts ON posts (ts, author, seq);
-- Per-author recency (the timeline of one author; the archive).
CREATE INDEX posts_by_author_ts ON posts (author, ts);
-- The garbage collector.
CREATE INDEX posts_by_expiry ON posts (expires_at);

-- Small key/value settings of this profile.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
