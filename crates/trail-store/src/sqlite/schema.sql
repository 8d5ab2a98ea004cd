-- Trail's embedded store, schema version 1: the first step of migrate.rs. Later versions are
-- further steps there; this file stays as shipped, since stores made from it exist.
--
-- Events are clustered by (org, seq): the rowid `k` is org << 40 | seq, so an org's log is
-- one contiguous range of the table's b-tree and seq ranges (proofs, exports) are range
-- scans. Repeated strings are dictionary-encoded through `dict`; both tables refuse UPDATE
-- and DELETE, so history cannot be rewritten through SQL on a Trail connection.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE dict (
    id    INTEGER PRIMARY KEY,
    value TEXT NOT NULL UNIQUE
);

CREATE TABLE orgs (
    id         INTEGER PRIMARY KEY,
    slug       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT,                       -- argon2id PHC string; NULL: no console sign-in
    platform_admin INTEGER NOT NULL DEFAULT 0, -- holds orgs:admin
    created_at     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE members (
    org     INTEGER NOT NULL REFERENCES orgs(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role    TEXT NOT NULL,
    PRIMARY KEY (org, user_id)
) WITHOUT ROWID;

CREATE TABLE instances (
    org        INTEGER NOT NULL REFERENCES orgs(id),
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org, id)
) WITHOUT ROWID;

-- PATs, API keys and break-glass tokens. Only the SHA-256 of a secret is kept.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    org         INTEGER NOT NULL REFERENCES orgs(id),
    owner       TEXT NOT NULL,              -- the actor it acts as
    user_id     TEXT REFERENCES users(id),  -- PATs and break-glass: the user
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    scopes      TEXT NOT NULL,
    instance    TEXT,                       -- restricted to one instance's events
    secret_hash BLOB NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
) WITHOUT ROWID;
CREATE INDEX tokens_by_org ON tokens (org, kind);

-- Console sessions. The cookie holds <id>.<secret>; only the secret's SHA-256 is kept.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id),
    secret_hash  BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,        -- absolute end, whatever the activity
    ended_at     INTEGER
) WITHOUT ROWID;

CREATE TABLE events (
    k       INTEGER PRIMARY KEY,  -- org << 40 | seq
    org     INTEGER NOT NULL,
    ts      INTEGER NOT NULL,     -- timestamp, microseconds since the epoch
    rdelta  INTEGER NOT NULL,     -- receivedAt - timestamp, microseconds
    cid     TEXT,                 -- the client's id; NULL when Trail made it
    inst    INTEGER,              -- dict
    action  INTEGER NOT NULL,     -- dict
    cat     INTEGER NOT NULL,     -- dict
    actor   INTEGER NOT NULL,     -- dict
    atype   INTEGER NOT NULL,     -- ActorType::code
    ip      INTEGER,              -- dict
    ua      INTEGER,              -- dict
    tok     INTEGER,              -- dict
    scope   INTEGER,              -- dict
    otype   INTEGER,              -- dict; NULL when there is no object
    oid     INTEGER,              -- dict: canonical JSON of object.id
    oparent INTEGER,              -- dict: canonical JSON of object.parentId
    okind   INTEGER,              -- dict: object.id.kind, for filtering
    oname   INTEGER,              -- dict: object.id.name, for filtering
    details TEXT,                 -- canonical JSON
    method  INTEGER,              -- dict; NULL when there is no request block
    route   INTEGER,              -- dict
    status  INTEGER,
    lat     INTEGER,              -- latency, microseconds
    body    BLOB,                 -- SHA-256 of the request body
    cnt     INTEGER,              -- count; NULL means 1
    last    INTEGER,              -- lastOccurredTimestamp - timestamp; NULL means 0
    hash    BLOB NOT NULL,        -- RFC 6962 leaf hash
    CHECK (org = k >> 40)
);

-- The Merkle tree above the leaves (events.hash): hashes of complete subtrees at levels
-- 8, 16, 24, ... ("tiles"), so a proof reads O(log n) bounded ranges.
CREATE TABLE tiles (
    org   INTEGER NOT NULL,
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (org, level, idx)
) WITHOUT ROWID;

-- Signed checkpoints (C2SP signed notes), every one kept.
CREATE TABLE checkpoints (
    org        INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org, size)
) WITHOUT ROWID;

CREATE INDEX events_by_time   ON events (org, ts);
CREATE INDEX events_by_actor  ON events (org, actor, ts);
CREATE INDEX events_by_action ON events (org, action, ts);
CREATE INDEX events_by_route  ON events (org, route, ts) WHERE route IS NOT NULL;
CREATE INDEX events_by_inst   ON events (org, inst, ts) WHERE inst IS NOT NULL;
CREATE UNIQUE INDEX events_by_client_id ON events (org, cid) WHERE cid IS NOT NULL;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
-- INSERT OR REPLACE would delete the row it collides with; refuse the collision itself, so
-- this holds on any connection, whatever its pragmas.
CREATE TRIGGER events_no_replace BEFORE INSERT ON events
WHEN EXISTS (SELECT 1 FROM events WHERE k = NEW.k)
  OR (NEW.cid IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE org = NEW.org AND cid = NEW.cid))
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER dict_no_replace BEFORE INSERT ON dict
WHEN EXISTS (SELECT 1 FROM dict WHERE id = NEW.id OR value = NEW.value)
BEGIN SELECT RAISE(ABORT, 'dict is append-only'); END;
CREATE TRIGGER dict_no_update BEFORE UPDATE ON dict
BEGIN SELECT RAISE(ABORT, 'dict is append-only'); END;
CREATE TRIGGER dict_no_delete BEFORE DELETE ON dict
BEGIN SELECT RAISE(ABORT, 'dict is append-only'); END;

CREATE TRIGGER tiles_no_update BEFORE UPDATE ON tiles
BEGIN SELECT RAISE(ABORT, 'tiles are append-only'); END;
CREATE TRIGGER tiles_no_delete BEFORE DELETE ON tiles
BEGIN SELECT RAISE(ABORT, 'tiles are append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
