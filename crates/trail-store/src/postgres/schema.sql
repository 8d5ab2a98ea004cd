-- Trail's PostgreSQL schema, version 1. Times are microseconds since the epoch (BIGINT);
-- an org is named by its slug everywhere. Applied by `migrate.rs` under an advisory lock,
-- in one transaction, so two servers starting at once apply it once.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE orgs (
    id         TEXT PRIMARY KEY,            -- the slug
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    n          BIGSERIAL NOT NULL UNIQUE    -- creation order
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL,
    password_hash  TEXT,                    -- argon2id PHC string; NULL: no console sign-in
    platform_admin BOOLEAN NOT NULL DEFAULT false,
    created_at     BIGINT NOT NULL
);
-- ASCII letters in lower case, the rest as it is, whatever the database's locale (as
-- SQLite's NOCASE and the server's comparisons).
CREATE FUNCTION ascii_lower(t TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT translate(t, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') $$;

-- An email names one account, whatever its ASCII case.
CREATE UNIQUE INDEX users_by_email ON users (ascii_lower(email));

CREATE TABLE members (
    org     TEXT NOT NULL REFERENCES orgs(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role    TEXT NOT NULL,
    n       BIGSERIAL NOT NULL,             -- the order members joined in
    PRIMARY KEY (org, user_id)
);
CREATE INDEX members_by_user ON members (user_id, n);

CREATE TABLE instances (
    org        TEXT NOT NULL REFERENCES orgs(id),
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org, id)
);

-- Credentials and invitations. Only the SHA-256 of a secret is kept.
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    org           TEXT NOT NULL REFERENCES orgs(id),
    owner         TEXT NOT NULL,
    user_id       TEXT REFERENCES users(id),
    name          TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    scopes        TEXT NOT NULL,
    instance      TEXT,
    secret_hash   BYTEA NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    reach         TEXT,                     -- NULL: its own org; '*': all; else slugs
    from_password BOOLEAN NOT NULL DEFAULT false,
    role          TEXT,                     -- an invitation's role
    made_with     TEXT,
    n             BIGSERIAL NOT NULL        -- creation order
);
CREATE INDEX tokens_by_org ON tokens (org, kind, n);
CREATE INDEX tokens_by_user ON tokens (user_id, n);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id),
    secret_hash  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    token_id     TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- One row per org's log. An append takes its row's lock (SELECT ... FOR UPDATE): appends to
-- one log are serialized across every server on the database, so seqs stay gapless and
-- unique and one chain of checkpoints is signed.
CREATE TABLE logs (
    org            TEXT PRIMARY KEY REFERENCES orgs(id),
    size           BIGINT NOT NULL DEFAULT 0,   -- the next seq
    last_received  BIGINT NOT NULL DEFAULT 0,   -- times of receipt never go down
    pruned_below   BIGINT NOT NULL DEFAULT 0,
    retention_days INTEGER,
    legal_hold     BOOLEAN NOT NULL DEFAULT false
);

-- The events: the canonical bytes (what the leaf hash covers, and what is read back),
-- and beside them every field the query language filters on, as `Field::text_of` gives
-- it (NULL where the event has none), so that a filter is answered by SQL alone.
CREATE TABLE events (
    org         TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    ts          BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    cid         TEXT,                       -- the client's id; NULL when Trail made it
    actor       TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    action      TEXT NOT NULL,
    category    TEXT NOT NULL,
    object_type TEXT,
    object_kind TEXT,
    object_name TEXT,
    route       TEXT,
    method      TEXT,
    status      INTEGER,
    instance    TEXT,
    token_id    TEXT,
    ip          TEXT,
    data        BYTEA NOT NULL,             -- canonical encoding
    hash        BYTEA NOT NULL,             -- leaf hash of data
    PRIMARY KEY (org, seq)
);
CREATE INDEX events_by_time   ON events (org, ts, seq);
CREATE INDEX events_by_actor  ON events (org, actor, ts);
CREATE INDEX events_by_action ON events (org, action, ts);
CREATE INDEX events_by_route  ON events (org, route, ts) WHERE route IS NOT NULL;
CREATE INDEX events_by_inst   ON events (org, instance, ts) WHERE instance IS NOT NULL;
-- An object name may be long: its index holds a prefix (INDEXED_NAME_CHARS in mod.rs).
CREATE INDEX events_by_object ON events (org, left(object_name, 256), ts)
    WHERE object_name IS NOT NULL;
CREATE UNIQUE INDEX events_by_client_id ON events (org, cid) WHERE cid IS NOT NULL;

-- Stored hashes of complete subtrees every 8 levels (see trail_core::merkle).
CREATE TABLE tiles (
    org   TEXT NOT NULL,
    level INTEGER NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (org, level, idx)
);

CREATE TABLE checkpoints (
    org        TEXT NOT NULL,
    size       BIGINT NOT NULL,
    root       BYTEA NOT NULL,
    note       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org, size)
);

-- Per-minute tallies kept with each append (derived from the events): events per minute
-- for histograms, API calls per route and minute for perf.
CREATE TABLE event_minutes (
    org    TEXT NOT NULL,
    minute BIGINT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (org, minute)
);
CREATE TABLE perf_minutes (
    org      TEXT NOT NULL,
    minute   BIGINT NOT NULL,
    route    TEXT NOT NULL,
    requests BIGINT NOT NULL,
    e4xx     BIGINT NOT NULL,
    e5xx     BIGINT NOT NULL,
    lat      BYTEA NOT NULL,
    PRIMARY KEY (org, minute, route)
);

-- Retention pruning, the one delete of events: the runtime role may call this and nothing
-- else that deletes them. It runs as the schema's owner and checks what the store promises
-- whatever the caller says: not under legal hold, whole tiles of 256 seqs, within the
-- newest signed checkpoint, only forward.
CREATE FUNCTION trail_prune(p_org TEXT, p_below BIGINT) RETURNS BIGINT
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    log_row logs%ROWTYPE;
    signed  BIGINT;
BEGIN
    SELECT * INTO log_row FROM logs WHERE org = p_org FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no log of org %', p_org;
    END IF;
    IF log_row.legal_hold THEN
        RAISE EXCEPTION 'org % is under legal hold', p_org;
    END IF;
    SELECT coalesce(max(size), 0) INTO signed FROM checkpoints WHERE org = p_org;
    IF p_below % 256 <> 0 OR p_below > signed OR p_below <= log_row.pruned_below THEN
        RAISE EXCEPTION 'org % cannot be pruned below seq %', p_org, p_below;
    END IF;
    DELETE FROM events WHERE org = p_org AND seq >= log_row.pruned_below AND seq < p_below;
    UPDATE logs SET pruned_below = p_below WHERE org = p_org;
    RETURN p_below;
END
$$;
REVOKE ALL ON FUNCTION trail_prune(TEXT, BIGINT) FROM PUBLIC;
