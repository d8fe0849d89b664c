-- Whom this user follows: our latest signed statement per followee (follow or
-- unfollow), its delivery state (the outbox), and how far we have caught up.
CREATE TABLE following (
    followee     BLOB    PRIMARY KEY,
    following    INTEGER NOT NULL,          -- 1 follow, 0 unfollow
    ts           INTEGER NOT NULL,          -- HLC timestamp of the statement
    statement    BLOB    NOT NULL,          -- the signed statement
    handle       TEXT,                      -- as resolved when followed
    created_at   INTEGER NOT NULL,          -- Unix ms of the statement
    delivered_at INTEGER,                   -- NULL until the followee acknowledged
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    synced_seq   INTEGER NOT NULL DEFAULT 0 -- every seq <= this is held or unavailable
) WITHOUT ROWID;
CREATE INDEX following_outbox ON following (next_attempt) WHERE delivered_at IS NULL;

-- Who follows this user: each follower's latest signed statement about us.
CREATE TABLE followers (
    follower    BLOB    PRIMARY KEY,
    following   INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    statement   BLOB    NOT NULL,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Trust on first use: the key first seen holding each handle.
CREATE TABLE pins (
    handle     TEXT    PRIMARY KEY,
    key        BLOB    NOT NULL,
    first_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX pins_by_key ON pins (key);
