-- Peers this node has been connected to, to rejoin the network through after a
-- restart without being told a bootstrap address again. The caller bounds the rows.
CREATE TABLE peers (
    peer_id BLOB    PRIMARY KEY,  -- the peer id's bytes
    addrs   TEXT    NOT NULL,     -- its multiaddrs, one per line
    seen_at INTEGER NOT NULL      -- Unix ms, when we last saw it connected
) WITHOUT ROWID;
CREATE INDEX peers_seen ON peers (seen_at);
