//! The PostgreSQL schema: versioned migrations shipped in the binary, applied by
//! `sealtrail migrate` (or at the first start on an empty database), and the check that
//! refuses to run on a schema this build does not know.

use postgres::{Client, GenericClient};

use crate::StoreError;

/// Migrations in order; `sealtrail_schema.version` is the number applied. Never edit a
/// shipped entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the log.
    r#"
    CREATE TABLE sealtrail_meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );

    -- The record's `details`. convert_from is only STABLE (it depends on the encoding
    -- names in the catalog); for UTF8, which a record always is, it cannot change.
    CREATE FUNCTION sealtrail_record_details(record bytea) RETURNS jsonb
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT (convert_from(record, 'UTF8')::jsonb) -> 'details' $$;

    -- One row per leaf, partitioned by month of occurred_at (partitions are created ahead
    -- of time, and on demand for events from other months). `record` holds the canonical
    -- bytes exactly as hashed; the other columns are copies for filtering, and `details`
    -- is derived from the record by PostgreSQL itself, so it can never disagree with it.
    CREATE TABLE events (
        seq           bigint      NOT NULL,
        id            uuid        NOT NULL,
        tenant_id     text        NOT NULL,
        occurred_at   bigint      NOT NULL,
        received_at   bigint      NOT NULL,
        severity      smallint    NOT NULL,
        action        text        NOT NULL,
        user_id       text,
        resource_type text        NOT NULL,
        resource_id   text,
        content_hash  bytea,
        leaf_hash     bytea       NOT NULL,
        record        bytea       NOT NULL,
        details       jsonb GENERATED ALWAYS AS (sealtrail_record_details(record)) STORED,
        PRIMARY KEY (occurred_at, seq)
    ) PARTITION BY RANGE (occurred_at);

    -- The query API's filters, each ending in (time, seq) so a filtered page is one index
    -- range read in order.
    CREATE INDEX events_by_tenant_time     ON events (tenant_id, occurred_at, seq);
    CREATE INDEX events_by_tenant_severity ON events (tenant_id, severity, occurred_at, seq);
    CREATE INDEX events_by_tenant_action   ON events (tenant_id, action, occurred_at, seq);
    CREATE INDEX events_by_tenant_user     ON events (tenant_id, user_id, occurred_at, seq)
        WHERE user_id IS NOT NULL;
    CREATE INDEX events_by_tenant_resource ON events (tenant_id, resource_type, resource_id, occurred_at, seq);
    -- Replay by seq, and proofs (leaf hashes by seq range).
    CREATE INDEX events_by_seq             ON events (seq) INCLUDE (leaf_hash);

    -- Ids are unique across partitions, which a partitioned table cannot enforce by
    -- itself: this table is the dedupe index, and finds an event by id.
    CREATE TABLE event_ids (
        id           uuid   PRIMARY KEY,
        seq          bigint NOT NULL UNIQUE,
        occurred_at  bigint NOT NULL,
        tenant_id    text   NOT NULL,
        leaf_hash    bytea  NOT NULL,
        content_hash bytea
    );

    -- Complete Merkle subtrees at levels 8, 16, 24, ... (see NODE_LEVEL_STRIDE).
    CREATE TABLE merkle_nodes (
        level integer NOT NULL,
        idx   bigint  NOT NULL,
        hash  bytea   NOT NULL,
        PRIMARY KEY (level, idx)
    );

    -- Creates the month partition that holds `at` (UTC microseconds) if it is missing.
    CREATE FUNCTION sealtrail_ensure_partition(at bigint) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE
        first timestamp := date_trunc('month', to_timestamp(at / 1000000.0) AT TIME ZONE 'UTC');
        lo    bigint    := (extract(epoch FROM first AT TIME ZONE 'UTC') * 1000000)::bigint;
        hi    bigint    := (extract(epoch FROM (first + interval '1 month') AT TIME ZONE 'UTC') * 1000000)::bigint;
        name  text      := 'events_' || to_char(first, 'YYYY_MM');
    BEGIN
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%s) TO (%s)',
                           name, lo, hi);
        END IF;
    EXCEPTION WHEN duplicate_table THEN
        -- Another server created it at the same moment.
        NULL;
    END $$;

    -- Signed checkpoints: the newest, plus one per history interval.
    CREATE TABLE checkpoints (
        tree_size  bigint PRIMARY KEY,
        root_hash  bytea  NOT NULL,
        note       text   NOT NULL,
        created_at bigint NOT NULL
    );
    "#,
    // 2: tenant isolation below the queries, and partitions any role may have created.
    r#"
    -- A read confined to one tenant runs as sealtrail_tenant_reader (SET LOCAL ROLE) with
    -- `sealtrail.tenant` set for its transaction: then only that tenant's rows exist for
    -- it, whatever its SQL says. The sequencer writes with binary COPY, which PostgreSQL
    -- refuses where row-level security applies, so the writing role is exempt: the table
    -- owner (not forced), or a service role with BYPASSRLS (see grant_service_role).
    -- Roles are per cluster: another database's migration may be creating it at the same
    -- moment, which fails with unique_violation rather than duplicate_object. (Widened
    -- after release; the schema it leaves is the same.)
    DO $$ BEGIN CREATE ROLE sealtrail_tenant_reader NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
    GRANT SELECT ON events, event_ids TO sealtrail_tenant_reader;
    -- The migrating role usually runs the service too: it must be able to switch.
    GRANT sealtrail_tenant_reader TO CURRENT_USER;
    ALTER TABLE events ENABLE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON events
        USING (tenant_id = current_setting('sealtrail.tenant', true));
    ALTER TABLE event_ids ENABLE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON event_ids
        USING (tenant_id = current_setting('sealtrail.tenant', true));

    -- The service's role may hold only INSERT and SELECT on the log, yet the sequencer
    -- creates month partitions: the function runs with its owner's rights.
    ALTER FUNCTION sealtrail_ensure_partition(bigint) SECURITY DEFINER;
    ALTER FUNCTION sealtrail_ensure_partition(bigint) SET search_path FROM CURRENT;
    "#,
    // 3: the retention ledger, and bodies that retention may remove.
    r#"
    -- What retention runs did to an event (see the embedded store's schema): the archive
    -- segment holding its record, when its body left the hot store (`events.record` is
    -- then NULL, and `details` with it; the leaf hash stays), when it was deleted.
    CREATE TABLE retention (
        seq             bigint PRIMARY KEY,
        segment         text,
        body_removed_at bigint,
        deleted_at      bigint
    );
    CREATE INDEX retention_by_segment ON retention (segment) WHERE segment IS NOT NULL;
    ALTER TABLE events ALTER COLUMN record DROP NOT NULL;

    -- The log stays append-only: an update may remove a body (and, on deletion, the user
    -- and resource ids), nothing else — whoever runs it.
    CREATE FUNCTION sealtrail_only_remove_bodies() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.record IS NOT NULL
           OR NEW.seq <> OLD.seq OR NEW.id <> OLD.id OR NEW.tenant_id <> OLD.tenant_id
           OR NEW.occurred_at <> OLD.occurred_at OR NEW.received_at <> OLD.received_at
           OR NEW.severity <> OLD.severity OR NEW.action <> OLD.action
           OR NEW.resource_type <> OLD.resource_type OR NEW.leaf_hash <> OLD.leaf_hash
           OR NEW.content_hash IS DISTINCT FROM OLD.content_hash
           OR (NEW.user_id IS NOT NULL AND NEW.user_id IS DISTINCT FROM OLD.user_id)
           OR (NEW.resource_id IS NOT NULL AND NEW.resource_id IS DISTINCT FROM OLD.resource_id)
        THEN
            RAISE EXCEPTION 'events are append-only: an update may only remove the body of seq %', OLD.seq;
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER only_remove_bodies BEFORE UPDATE ON events
        FOR EACH ROW EXECUTE FUNCTION sealtrail_only_remove_bodies();

    -- Drops the month partitions every event of which retention deleted (the id table
    -- keeps their leaf hashes, so the log still verifies and proves); returns their names.
    -- Runs with its owner's rights, like partition creation: the service role may not
    -- drop tables, only have these dropped.
    CREATE FUNCTION sealtrail_drop_expired_partitions() RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER AS $$
    DECLARE
        part    text;
        expired boolean;
    BEGIN
        FOR part IN
            SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'events'::regclass ORDER BY c.relname
        LOOP
            EXECUTE format(
                'SELECT EXISTS (SELECT 1 FROM %I)
                    AND NOT EXISTS (SELECT 1 FROM %I AS e WHERE NOT EXISTS (
                        SELECT 1 FROM retention AS r
                        WHERE r.seq = e.seq AND r.deleted_at IS NOT NULL))',
                part, part) INTO expired;
            IF expired THEN
                -- Checked again under a lock that keeps out inserts: a back-dated event
                -- committed between the first check and the drop must not go with it.
                EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', part);
                EXECUTE format(
                    'SELECT NOT EXISTS (SELECT 1 FROM %I AS e WHERE NOT EXISTS (
                        SELECT 1 FROM retention AS r
                        WHERE r.seq = e.seq AND r.deleted_at IS NOT NULL))',
                    part) INTO expired;
            END IF;
            IF expired THEN
                EXECUTE format('DROP TABLE %I', part);
                RETURN NEXT part;
            END IF;
        END LOOP;
    END $$;
    ALTER FUNCTION sealtrail_drop_expired_partitions() SET search_path FROM CURRENT;
    "#,
    // 4: sequencers learn that partitions were dropped; what was dropped is recorded.
    r#"
    -- Each partition retention dropped: its range of occurred_at and when. verify accepts
    -- an event whose row is gone only inside such a range and deleted by retention; only
    -- the function below (its owner's rights) writes here.
    CREATE TABLE dropped_partitions (
        name       text   NOT NULL,
        lo         bigint NOT NULL,
        hi         bigint NOT NULL,
        dropped_at bigint NOT NULL,
        PRIMARY KEY (name, dropped_at)
    );

    -- A sequencer remembers which month partitions exist; one that is dropped must be
    -- created again when a back-dated event for its month arrives. A drop now waits for
    -- the writer's lock (104047630680066 = WRITER_LOCK), so no group is mid-write, and
    -- counts itself in sealtrail_meta, which each group reads right after taking that
    -- lock: a changed count clears what the sequencer remembers.
    CREATE OR REPLACE FUNCTION sealtrail_drop_expired_partitions() RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER AS $$
    DECLARE
        part    text;
        expired boolean;
        lo      bigint;
        hi      bigint;
    BEGIN
        FOR part IN
            SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'events'::regclass ORDER BY c.relname
        LOOP
            EXECUTE format(
                'SELECT EXISTS (SELECT 1 FROM %I)
                    AND NOT EXISTS (SELECT 1 FROM %I AS e WHERE NOT EXISTS (
                        SELECT 1 FROM retention AS r
                        WHERE r.seq = e.seq AND r.deleted_at IS NOT NULL))',
                part, part) INTO expired;
            IF expired THEN
                -- Checked again under the writer's lock and one that keeps out inserts:
                -- a back-dated event committed between the first check and the drop
                -- must not go with it.
                PERFORM pg_advisory_xact_lock(104047630680066);
                EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', part);
                EXECUTE format(
                    'SELECT NOT EXISTS (SELECT 1 FROM %I AS e WHERE NOT EXISTS (
                        SELECT 1 FROM retention AS r
                        WHERE r.seq = e.seq AND r.deleted_at IS NOT NULL))',
                    part) INTO expired;
            END IF;
            IF expired THEN
                SELECT m[1]::bigint, m[2]::bigint INTO lo, hi
                FROM pg_class AS c,
                     regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                  'FROM \(''?(-?[0-9]+)''?\) TO \(''?(-?[0-9]+)''?\)') AS m
                WHERE c.relname = part;
                EXECUTE format('DROP TABLE %I', part);
                INSERT INTO dropped_partitions (name, lo, hi, dropped_at)
                VALUES (part, lo, hi, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
                INSERT INTO sealtrail_meta (key, value) VALUES ('partitions_dropped', '1')
                ON CONFLICT (key) DO UPDATE
                    SET value = (sealtrail_meta.value::bigint + 1)::text;
                RETURN NEXT part;
            END IF;
        END LOOP;
    END $$;
    ALTER FUNCTION sealtrail_drop_expired_partitions() SET search_path FROM CURRENT;
    "#,
    // 5: checkpoints are never deleted by the service: only the superseded newest one that
    // is not kept as history, through a function that refuses anything else.
    r#"
    -- Whether the sequencer keeps this checkpoint for good (one per history interval).
    -- Rows from before this migration are all kept.
    ALTER TABLE checkpoints ADD COLUMN history boolean NOT NULL DEFAULT true;

    -- The one deletion of a checkpoint the service may make: when it commits a newer one,
    -- the previous, unless kept as history. The newest and history checkpoints cannot be
    -- deleted by the service role (it holds no DELETE on the table), so whoever holds its
    -- credentials cannot roll the signed tree head back.
    CREATE FUNCTION sealtrail_supersede_checkpoint(size bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER AS $$
    DECLARE
        newest bigint;
        kept boolean;
    BEGIN
        SELECT max(tree_size) INTO newest FROM checkpoints;
        SELECT history INTO kept FROM checkpoints WHERE tree_size = size;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        IF kept OR size >= newest THEN
            RAISE EXCEPTION 'checkpoint of tree size % is % and is never deleted', size,
                CASE WHEN kept THEN 'kept as history' ELSE 'the newest' END
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        DELETE FROM checkpoints WHERE tree_size = size;
    END $$;
    ALTER FUNCTION sealtrail_supersede_checkpoint(bigint) SET search_path FROM CURRENT;
    REVOKE ALL ON FUNCTION sealtrail_supersede_checkpoint(bigint) FROM PUBLIC;
    "#,
    // 6: API keys shared by every server on the database (keys.rs). Rows are never
    // deleted; a revocation or expiry only sets its column.
    r#"
    CREATE TABLE api_keys (
        key_id      text   PRIMARY KEY,
        secret_hash bytea  NOT NULL UNIQUE,
        scopes      text   NOT NULL,
        tenant_id   text,
        description text,
        created_at  bigint NOT NULL,
        revoked_at  bigint,
        expires_at  bigint
    );
    "#,
    // 7: the sinks' state shared by every server (sealtrail-sinks' store.rs): cursors,
    // dead letters, events held for digests, and the lease under which one server at a
    // time runs each sink.
    r#"
    CREATE TABLE sink_cursors (
        sink       text   PRIMARY KEY,
        seq        bigint NOT NULL,
        updated_at bigint NOT NULL
    );
    CREATE TABLE sink_dead_letters (
        sink             text    NOT NULL,
        seq              bigint  NOT NULL,
        event_id         text    NOT NULL,
        error            text    NOT NULL,
        attempts         integer NOT NULL,
        created_at       bigint  NOT NULL,
        replay_requested boolean NOT NULL DEFAULT false,
        PRIMARY KEY (sink, seq)
    );
    CREATE TABLE sink_digest_pending (
        sink     text   NOT NULL,
        route    text   NOT NULL,
        seq      bigint NOT NULL,
        event_id text   NOT NULL,
        headline text   NOT NULL,
        PRIMARY KEY (sink, seq)
    );
    CREATE TABLE sink_leases (
        sink       text        PRIMARY KEY,
        holder     text        NOT NULL,
        epoch      bigint      NOT NULL,
        expires_at timestamptz NOT NULL
    );
    "#,
    // 8: field encryption's wrapped data keys, shared by every server (data_keys.rs). A
    // destroyed key stays destroyed: the trigger refuses to give a row its bytes back
    // (a live key may be wrapped again, by a new master key).
    r#"
    CREATE TABLE data_keys (
        key_id      text    PRIMARY KEY,
        base        text    NOT NULL,
        generation  integer NOT NULL,
        wrapped     bytea,
        created_at  bigint  NOT NULL,
        shredded_at bigint,
        UNIQUE (base, generation)
    );
    CREATE FUNCTION sealtrail_data_key_stays_destroyed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.key_id <> OLD.key_id OR NEW.base <> OLD.base
           OR NEW.generation <> OLD.generation OR NEW.created_at <> OLD.created_at
           OR (OLD.wrapped IS NULL AND NEW.wrapped IS NOT NULL)
           OR (OLD.shredded_at IS NOT NULL AND NEW.shredded_at IS DISTINCT FROM OLD.shredded_at)
           OR (NEW.shredded_at IS NOT NULL AND NEW.wrapped IS NOT NULL) THEN
            RAISE EXCEPTION 'data key %: a key is only ever destroyed, never changed', OLD.key_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER data_keys_only_destroyed BEFORE UPDATE ON data_keys
        FOR EACH ROW EXECUTE FUNCTION sealtrail_data_key_stays_destroyed();
    "#,
    // 9: requests per API key and second, summed over every server (the server's
    // limits.rs). Counts of the last seconds only: unlogged (no WAL, emptied by a crash).
    r#"
    CREATE UNLOGGED TABLE key_request_windows (
        key_id   text   NOT NULL,
        second   bigint NOT NULL,
        requests bigint NOT NULL,
        PRIMARY KEY (key_id, second)
    );
    "#,
    // 10: legal holds shared by every server (holds.rs). A hold is never deleted, and a
    // released one stays released: the trigger refuses any other change.
    r#"
    CREATE TABLE holds (
        id             text   PRIMARY KEY,
        tenant_id      text   NOT NULL,
        resource_type  text,
        resource_id    text,
        reason         text   NOT NULL,
        placed_by      text   NOT NULL,
        placed_at      bigint NOT NULL,
        released_at    bigint,
        released_by    text,
        release_reason text,
        CHECK (resource_id IS NULL OR resource_type IS NOT NULL),
        CHECK ((released_at IS NULL) = (released_by IS NULL)
           AND (released_at IS NULL) = (release_reason IS NULL))
    );
    CREATE INDEX holds_active ON holds (tenant_id) WHERE released_at IS NULL;
    CREATE FUNCTION sealtrail_hold_only_released() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.released_at IS NOT NULL
           OR ROW(NEW.id, NEW.tenant_id, NEW.resource_type, NEW.resource_id, NEW.reason,
                  NEW.placed_by, NEW.placed_at)
              IS DISTINCT FROM
              ROW(OLD.id, OLD.tenant_id, OLD.resource_type, OLD.resource_id, OLD.reason,
                  OLD.placed_by, OLD.placed_at) THEN
            RAISE EXCEPTION 'legal hold %: a hold is only ever released, once', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER holds_only_released BEFORE UPDATE ON holds
        FOR EACH ROW EXECUTE FUNCTION sealtrail_hold_only_released();
    "#,
    // 11: the blind index shared by every server (blind_index.rs): derived from the log,
    // so backups leave it out and a restore indexes again from seq 0.
    r#"
    CREATE TABLE blind_cursor (
        id  integer PRIMARY KEY CHECK (id = 1),
        seq bigint  NOT NULL
    );
    CREATE TABLE blind_tokens (
        tenant      text   NOT NULL,
        field       text   NOT NULL,
        token       text   NOT NULL,
        seq         bigint NOT NULL,
        subject_tag text,
        PRIMARY KEY (tenant, field, token, seq)
    );
    CREATE INDEX blind_tokens_by_subject ON blind_tokens (tenant, subject_tag);
    "#,
    // 12: per-source sequence numbers (sources.rs), shared by every server: what each
    // producer instance's `source_seq` numbers say reached the log.
    r#"
    CREATE TABLE source_cursor (
        id  integer PRIMARY KEY CHECK (id = 1),
        seq bigint  NOT NULL
    );
    CREATE TABLE source_positions (
        tenant        text   NOT NULL,
        source        text   NOT NULL,
        progress      jsonb  NOT NULL,
        highest       bigint NOT NULL,
        received      bigint NOT NULL,
        missing       bigint NOT NULL,
        first_seen_at bigint NOT NULL,
        last_seen_at  bigint NOT NULL,
        through       bigint NOT NULL,
        PRIMARY KEY (tenant, source)
    );
    CREATE INDEX source_positions_with_holes ON source_positions (tenant, source) WHERE missing > 0;
    "#,
];

/// The `sealtrail_meta` key counting partition drops (migration 4).
pub(crate) const PARTITIONS_DROPPED_KEY: &str = "partitions_dropped";

/// Grants `role` what the service needs and nothing more: it can append to the log and
/// read it, and remove an event's body for retention (a trigger refuses any other change),
/// never change or delete an event, and never delete a checkpoint but the superseded one
/// that is not kept as history (through `sealtrail_supersede_checkpoint`); it can create
/// API keys and revoke or expire them, never delete one or change its scopes or tenant;
/// it keeps the sinks' cursors, dead letters and leases, and files and destroys data keys
/// (never restores one).
/// It gets BYPASSRLS, without which PostgreSQL refuses binary
/// COPY into a table with row-level security, and membership of sealtrail_tenant_reader,
/// the role tenant-confined reads switch to. Needs a superuser.
pub fn grant_service_role(client: &mut Client, role: &str) -> Result<(), StoreError> {
    if role.is_empty() || !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Invalid(format!(
            "--app-role {role:?}: a role name of letters, digits and underscores"
        )));
    }
    client.batch_execute(&format!(
        "REVOKE ALL ON events, event_ids, merkle_nodes, checkpoints, retention, dropped_partitions, sealtrail_meta, sealtrail_schema, api_keys, sink_cursors, sink_dead_letters, sink_digest_pending, sink_leases, data_keys, key_request_windows, holds, blind_cursor, blind_tokens, source_cursor, source_positions FROM {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON blind_cursor, blind_tokens TO {role};
         GRANT SELECT, INSERT, UPDATE ON source_cursor, source_positions TO {role};
         GRANT SELECT, INSERT ON holds TO {role};
         GRANT UPDATE (released_at, released_by, release_reason) ON holds TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON key_request_windows TO {role};
         GRANT SELECT, INSERT ON data_keys TO {role};
         GRANT UPDATE (wrapped, shredded_at) ON data_keys TO {role};
         GRANT SELECT, INSERT, UPDATE ON sink_cursors, sink_leases TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON sink_dead_letters, sink_digest_pending TO {role};
         GRANT SELECT, INSERT ON api_keys TO {role};
         GRANT UPDATE (revoked_at, expires_at) ON api_keys TO {role};
         GRANT SELECT, INSERT ON events, event_ids, merkle_nodes, checkpoints, sealtrail_meta TO {role};
         GRANT UPDATE (record, user_id, resource_id) ON events TO {role};
         GRANT SELECT, INSERT, UPDATE ON retention TO {role};
         GRANT SELECT ON sealtrail_schema, dropped_partitions TO {role};
         GRANT EXECUTE ON FUNCTION sealtrail_ensure_partition(bigint) TO {role};
         GRANT EXECUTE ON FUNCTION sealtrail_drop_expired_partitions() TO {role};
         GRANT EXECUTE ON FUNCTION sealtrail_supersede_checkpoint(bigint) TO {role};
         GRANT sealtrail_tenant_reader TO {role};
         ALTER ROLE {role} BYPASSRLS;"
    ))?;
    Ok(())
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// An arbitrary constant: the advisory lock that serialises migrations between processes.
pub(crate) const MIGRATION_LOCK: i64 = 0x5ea1_7a11_0001;

fn current_version(client: &mut impl GenericClient) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('sealtrail_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM sealtrail_schema",
            &[],
        )?
        .get(0))
}

/// Brings the database to [`SCHEMA_VERSION`]; returns the versions applied. Refuses a
/// database written by a newer build.
pub fn migrate(client: &mut Client) -> Result<Vec<i64>, StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = apply(client, SCHEMA_VERSION);
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
    result
}

/// Applies the migrations after the database's version up to `target` (each in a
/// transaction of its own, or a savepoint when `client` is a transaction: a restore
/// migrates inside the transaction that copies the log in).
pub(crate) fn apply(client: &mut impl GenericClient, target: i64) -> Result<Vec<i64>, StoreError> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS sealtrail_schema (
             version    bigint PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let current = current_version(client)?;
    refuse_newer(current)?;
    let mut applied = Vec::new();
    let pending = MIGRATIONS
        .iter()
        .enumerate()
        .take(target.max(0) as usize)
        .skip(current as usize);
    for (index, sql) in pending {
        let version = index as i64 + 1;
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO sealtrail_schema (version) VALUES ($1)",
            &[&version],
        )?;
        tx.commit()?;
        applied.push(version);
    }
    Ok(applied)
}

fn refuse_newer(current: i64) -> Result<(), StoreError> {
    if current > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the database was written by a newer Sealtrail (schema {current}; this build knows up to {SCHEMA_VERSION})"
        )));
    }
    Ok(())
}

/// Refuses to run on a schema this build does not know, or one not yet migrated.
pub fn check(client: &mut Client) -> Result<(), StoreError> {
    let current = current_version(client)?;
    refuse_newer(current)?;
    if current < SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the database schema is at version {current}, this build needs {SCHEMA_VERSION}: \
             run `sealtrail migrate --database-url ...`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_drops_wait_for_the_writers_lock() {
        let drop = MIGRATIONS[3];
        assert!(drop.contains(&format!(
            "pg_advisory_xact_lock({})",
            crate::postgres::WRITER_LOCK
        )));
        assert!(drop.contains(&format!("'{PARTITIONS_DROPPED_KEY}'")));
    }
}
