-- Trail's PostgreSQL schema, version 2: events partitioned by week of receipt (Monday
-- 00:00 UTC to Monday, as archives are), so that a prune that takes a whole week of every
-- org drops the week's partition instead of deleting its rows one by one.
--
-- A partitioned table's unique keys must hold its partition key: the primary key becomes
-- (org, seq, received_at), and client ids are indexed without a unique constraint. Both
-- stay unique per org all the same: an append gives seqs and looks client ids up under its
-- log's row lock (`logs`), which every append to that org takes.

ALTER TABLE events RENAME TO events_v1;
ALTER TABLE events_v1 RENAME CONSTRAINT events_pkey TO events_v1_pkey;
DROP INDEX events_by_time, events_by_actor, events_by_action, events_by_route,
    events_by_inst, events_by_object, events_by_client_id;

CREATE TABLE events (
    org         TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    ts          BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    cid         TEXT,
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
    data        BYTEA NOT NULL,
    hash        BYTEA NOT NULL,
    PRIMARY KEY (org, seq, received_at)
) PARTITION BY RANGE (received_at);
-- What no week's partition takes (a clock far ahead of the partitions made): moved into
-- its week's partition when that is made.
CREATE TABLE events_default PARTITION OF events DEFAULT;

CREATE INDEX events_by_time   ON events (org, ts, seq);
CREATE INDEX events_by_actor  ON events (org, actor, ts);
CREATE INDEX events_by_action ON events (org, action, ts);
CREATE INDEX events_by_route  ON events (org, route, ts) WHERE route IS NOT NULL;
CREATE INDEX events_by_inst   ON events (org, instance, ts) WHERE instance IS NOT NULL;
CREATE INDEX events_by_object ON events (org, left(object_name, 256), ts)
    WHERE object_name IS NOT NULL;
CREATE INDEX events_by_client_id ON events (org, cid) WHERE cid IS NOT NULL;

-- The weeks' partitions: [lo, hi) in microseconds of receipt.
CREATE TABLE event_partitions (
    name TEXT PRIMARY KEY,
    lo   BIGINT NOT NULL UNIQUE,
    hi   BIGINT NOT NULL
);

-- Makes the partitions of the weeks of `p_now` and the two after it, and of every week of
-- which the default partition holds events (moving them there); returns where the newest
-- partition ends. The server calls it as its appends near that end. It runs as the schema's
-- owner, who owns the partitions (the runtime role may make none itself).
CREATE FUNCTION trail_partitions(p_now BIGINT) RETURNS BIGINT
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    week   CONSTANT BIGINT := 604800000000;
    monday CONSTANT BIGINT := 345600000000;  -- 1970-01-05 00:00 UTC, a Monday
    v_lo   BIGINT;
    v_name TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(127464136813569);
    FOR v_lo IN
        SELECT DISTINCT monday + floor((received_at - monday)::numeric / week)::bigint * week
          FROM events_default
        UNION
        SELECT monday + (floor((p_now - monday)::numeric / week)::bigint + k) * week
          FROM generate_series(0, 2) AS k
        ORDER BY 1
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM event_partitions WHERE lo = v_lo);
        v_name := 'events_' || to_char(to_timestamp(v_lo / 1000000) AT TIME ZONE 'UTC',
                                       'YYYY_MM_DD');
        EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS)', v_name);
        EXECUTE format('INSERT INTO %I SELECT * FROM events_default '
                       'WHERE received_at >= %s AND received_at < %s',
                       v_name, v_lo, v_lo + week);
        DELETE FROM events_default WHERE received_at >= v_lo AND received_at < v_lo + week;
        EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                       v_name, v_lo, v_lo + week);
        INSERT INTO event_partitions (name, lo, hi) VALUES (v_name, v_lo, v_lo + week);
    END LOOP;
    RETURN (SELECT max(hi) FROM event_partitions);
END
$$;
REVOKE ALL ON FUNCTION trail_partitions(BIGINT) FROM PUBLIC;

INSERT INTO events SELECT * FROM events_v1;
DROP TABLE events_v1;
SELECT trail_partitions((extract(epoch FROM now()) * 1000000)::bigint);

-- Retention pruning, the one delete of events: the runtime role may call this and nothing
-- else that deletes them. It runs as the schema's owner and checks what the store promises
-- whatever the caller says: not under legal hold, whole tiles of 256 seqs, within the
-- newest signed checkpoint, only forward. A week's partition that holds nothing any log
-- keeps once this prune is done is dropped whole; the org's other pruned events are
-- deleted.
CREATE OR REPLACE FUNCTION trail_prune(p_org TEXT, p_below BIGINT) RETURNS BIGINT
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    log_row  logs%ROWTYPE;
    signed   BIGINT;
    first_at BIGINT;
    last_at  BIGINT;
    part     event_partitions%ROWTYPE;
    kept     BOOLEAN;
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
    -- The weeks the pruned events were received in (times of receipt follow seqs).
    SELECT min(received_at) INTO first_at FROM events
     WHERE org = p_org AND seq = log_row.pruned_below;
    SELECT max(received_at) INTO last_at FROM events
     WHERE org = p_org AND seq = p_below - 1;
    UPDATE logs SET pruned_below = p_below WHERE org = p_org;
    FOR part IN
        SELECT * FROM event_partitions
         WHERE hi > coalesce(first_at, 0) AND lo <= coalesce(last_at, -1)
         ORDER BY lo
    LOOP
        -- Kept: an event of any log at or above where that log is pruned to.
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM logs l WHERE EXISTS ('
                       'SELECT 1 FROM %I e WHERE e.org = l.org AND e.seq >= l.pruned_below))',
                       part.name)
           INTO kept;
        IF NOT kept THEN
            EXECUTE format('DROP TABLE %I', part.name);
            DELETE FROM event_partitions WHERE name = part.name;
        END IF;
    END LOOP;
    DELETE FROM events WHERE org = p_org AND seq >= log_row.pruned_below AND seq < p_below;
    RETURN p_below;
END
$$;
REVOKE ALL ON FUNCTION trail_prune(TEXT, BIGINT) FROM PUBLIC;

-- A copy of a pruned log (`trail admin copy`) starts where the original was pruned to: the
-- log's start is set, on a log that holds nothing yet (no event, no checkpoint). The seqs
-- below are pruned: only the copied tiles of them remain.
CREATE FUNCTION trail_import_start(p_org TEXT, p_at BIGINT) RETURNS BIGINT
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    IF p_at < 0 OR p_at % 256 <> 0 THEN
        RAISE EXCEPTION 'a log starts at a multiple of 256, not %', p_at;
    END IF;
    UPDATE logs SET pruned_below = p_at, size = p_at
     WHERE org = p_org AND size = 0 AND pruned_below = 0
       AND NOT EXISTS (SELECT 1 FROM checkpoints WHERE org = p_org);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the log of org % is not empty', p_org;
    END IF;
    RETURN p_at;
END
$$;
REVOKE ALL ON FUNCTION trail_import_start(TEXT, BIGINT) FROM PUBLIC;
