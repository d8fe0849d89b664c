-- Proofs that an author signed two different posts with one seq: both versions, as
-- received. The first version seen stays in `posts`; these rows flag the author.
-- At most a few per author are kept (the store's caller bounds them).
CREATE TABLE equivocations (
    author  BLOB    NOT NULL,
    seq     INTEGER NOT NULL,
    first   BLOB    NOT NULL,  -- the version we held
    second  BLOB    NOT NULL,  -- the other one
    seen_at INTEGER NOT NULL,  -- Unix ms
    PRIMARY KEY (author, seq)
) WITHOUT ROWID;
