-- DHT records (name claims, profiles) this node stores for others, so it keeps
-- serving them after a restart. Validated before they are written and when loaded.
CREATE TABLE dht_records (
    key        BLOB    PRIMARY KEY,
    value      BLOB    NOT NULL,
    expires_at INTEGER NOT NULL  -- Unix ms
) WITHOUT ROWID;
CREATE INDEX dht_records_expiry ON dht_records (expires_at);
