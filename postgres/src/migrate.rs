//! The store's schema: ordered migrations, applied at connect under an advisory lock.
//!
//! Every number the store keeps as a `bigint` that is a `u64` in Rust (steps, versions,
//! sequence numbers, times) is stored with its top bit flipped ([`flip`]), so that the
//! database's signed order is the unsigned one. Run ids are `bytea` (a run id may hold a NUL,
//! which `text` refuses, and `bytea` sorts bytewise, as Rust sorts strings).

use agentgraph_checkpoint::{Result, StoreError};
use tokio_postgres::Client;

use crate::error::{SchemaTooNew, db};

/// The migrations, in order: migration `i` takes the schema to version `i + 1`. Append only;
/// never edit one that shipped.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: runs, leases, checkpoints, blobs, pending writes, events; the fence check.
    r#"
CREATE TABLE runs (
    run_id bytea PRIMARY KEY,
    record bytea NOT NULL,
    status text NOT NULL,
    graph text,
    updated_at_ms bigint NOT NULL,
    expires_at_ms bigint
);
CREATE INDEX runs_expiry ON runs (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE TABLE leases (
    run_id bytea PRIMARY KEY,
    epoch bigint NOT NULL,
    expires_at timestamptz
);
CREATE TABLE checkpoints (
    run_id bytea NOT NULL,
    step bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE blobs (
    run_id bytea NOT NULL,
    field bigint NOT NULL,
    version bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (run_id, field, version)
);
CREATE TABLE pending_writes (
    run_id bytea NOT NULL,
    step bigint NOT NULL,
    task bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (run_id, step, task)
);
CREATE TABLE events (
    run_id bytea NOT NULL,
    seq bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (run_id, seq)
);
-- Fails with SQLSTATE AGF01 unless each run's lease epoch is the one given, and keeps the
-- leases' rows locked (FOR SHARE) until the transaction ends: no lease is taken over between
-- the check and the commit.
CREATE FUNCTION fence(p_runs bytea[], p_epochs bigint[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fence$
DECLARE
    current bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_runs, 1), 0) LOOP
        current := NULL;
        SELECT epoch INTO current FROM leases WHERE run_id = p_runs[i] FOR SHARE;
        current := coalesce(current, 0);
        IF current <> p_epochs[i] THEN
            RAISE EXCEPTION 'fenced' USING ERRCODE = 'AGF01', DETAIL = i::text || ' ' || current::text;
        END IF;
    END LOOP;
END
$fence$;
"#,
    // 2: the workers' queue of jobs (see `worker`).
    r#"
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('start', 'thread', 'resume')),
    graph text NOT NULL,
    run_id text NOT NULL,
    input jsonb,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'interrupted', 'failed', 'cancelled')),
    available_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    worker text,
    claim_until timestamptz,
    claimed_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    base_step bigint,
    output jsonb,
    error text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
);
CREATE INDEX jobs_queued ON jobs (available_at, id) WHERE status = 'queued';
CREATE INDEX jobs_claimed ON jobs (claim_until) WHERE status = 'running';
CREATE INDEX jobs_run ON jobs (run_id, id);
CREATE UNIQUE INDEX jobs_start ON jobs (run_id) WHERE kind = 'start';
"#,
    // 3: the workers, as they say they are there (see `worker`).
    r#"
CREATE TABLE workers (
    id text PRIMARY KEY,
    graphs text[] NOT NULL,
    concurrency integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seen timestamptz NOT NULL DEFAULT clock_timestamp(),
    stopped_at timestamptz
);
"#,
    // 4: long-term memory items. A deleted item stays as a tombstone (`item` NULL) so that
    // other processes' vector indexes catch up with it; `seq` is the `item_changes.version`
    // of the transaction that last wrote the row (transactions that write items take that
    // row's lock, so versions follow commit order).
    r#"
CREATE TABLE items (
    namespace bytea NOT NULL,
    key bytea NOT NULL,
    item bytea,
    expires_at_ms bigint,
    seq bigint NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX items_seq ON items (seq);
CREATE INDEX items_expiry ON items (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE TABLE item_changes (
    id integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO item_changes (id, version) VALUES (1, 0);
"#,
    // 5: pruning tombstones. `deleted_at` is when an item was deleted (NULL for a live item,
    // and for tombstones written before this migration); `pruned` is the newest `seq` of the
    // tombstones removed so far: a handle whose index is older reads every item again.
    r#"
ALTER TABLE items ADD COLUMN deleted_at timestamptz;
CREATE INDEX items_tombstones ON items (deleted_at) WHERE item IS NULL;
ALTER TABLE item_changes ADD COLUMN pruned bigint NOT NULL DEFAULT 0;
"#,
    // 6: audit trails (`agentgraph_checkpoint::audit`): one hash chain per run, kept when the
    // run is deleted. `append_audit` numbers an entry after the run's newest one and links it,
    // under a transaction-scoped advisory lock of the run (two transactions never take the same
    // number), so the chain is made in the commit, as the embedded stores make it. `seq` counts
    // from 1 and is stored as it is (not flipped: it never nears 2^63, and the hash is over
    // its big-endian bytes, `int8send`). `entry` is `prev ‖ hash ‖ body`.
    r#"
CREATE TABLE audit (
    run_id bytea NOT NULL,
    seq bigint NOT NULL,
    entry bytea NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE FUNCTION append_audit(p_run bytea, p_body bytea) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $audit$
DECLARE
    last_seq bigint;
    last_entry bytea;
    prev bytea := decode(repeat('00', 32), 'hex');
    next_seq bigint := 1;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('agentgraph-audit'), hashtext(encode(p_run, 'hex')));
    SELECT seq, entry INTO last_seq, last_entry FROM audit
        WHERE run_id = p_run ORDER BY seq DESC LIMIT 1;
    IF last_seq IS NOT NULL THEN
        next_seq := last_seq + 1;
        IF length(last_entry) >= 64 THEN
            prev := substring(last_entry FROM 33 FOR 32);
        END IF;
    END IF;
    INSERT INTO audit (run_id, seq, entry) VALUES (
        p_run,
        next_seq,
        prev || sha256(convert_to('agentgraph-audit-1', 'UTF8') || int4send(length(p_run))
            || p_run || int8send(next_seq) || prev || p_body) || p_body
    );
END
$audit$;
"#,
    // 7: the tenant and the caller of a job (see `worker::Queue::tenant` and `Queue::caller`):
    // the worker runs the job as the tenant's run, its audit trail naming the caller. Both
    // NULL for jobs queued before (and by a queue that names neither).
    r#"
ALTER TABLE jobs ADD COLUMN tenant text;
ALTER TABLE jobs ADD COLUMN caller text;
CREATE INDEX jobs_tenant ON jobs (tenant, id) WHERE tenant IS NOT NULL;
"#,
    // 8: a batch's audit entries in the batch's one statement. `audit_rows` numbers and links
    // the entries (runs and bodies in the batch's order) as `append_audit` does, and returns
    // them for the statement's `INSERT INTO audit` (a data-modifying `WITH` query, so the batch
    // stays one statement). It takes the runs' transaction-scoped advisory locks first, in run
    // order (the key `append_audit` takes, so both serialise on a run during an upgrade), and
    // only then reads each run's newest entry (a volatile function's query sees what
    // committed before it): two transactions never take the same number. Entries of one run
    // later in the batch link to the earlier ones.
    r#"
CREATE FUNCTION audit_rows(p_runs bytea[], p_bodies bytea[])
RETURNS TABLE (o_run bytea, o_seq bigint, o_entry bytea)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $audit$
DECLARE
    n integer := coalesce(array_length(p_runs, 1), 0);
    locked bytea;
    seqs bigint[] := '{}';
    entries bytea[] := '{}';
    last_seq bigint;
    last_entry bytea;
    prev bytea;
BEGIN
    FOR locked IN SELECT DISTINCT u FROM unnest(p_runs) u ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtext('agentgraph-audit'), hashtext(encode(locked, 'hex')));
    END LOOP;
    FOR i IN 1 .. n LOOP
        last_seq := NULL;
        last_entry := NULL;
        FOR j IN REVERSE i - 1 .. 1 LOOP
            IF p_runs[j] = p_runs[i] THEN
                last_seq := seqs[j];
                last_entry := entries[j];
                EXIT;
            END IF;
        END LOOP;
        IF last_seq IS NULL THEN
            SELECT a.seq, a.entry INTO last_seq, last_entry FROM audit a
                WHERE a.run_id = p_runs[i] ORDER BY a.seq DESC LIMIT 1;
        END IF;
        prev := decode(repeat('00', 32), 'hex');
        IF last_seq IS NOT NULL AND length(last_entry) >= 64 THEN
            prev := substring(last_entry FROM 33 FOR 32);
        END IF;
        seqs[i] := coalesce(last_seq, 0) + 1;
        entries[i] := prev || sha256(convert_to('agentgraph-audit-1', 'UTF8')
            || int4send(length(p_runs[i])) || p_runs[i] || int8send(seqs[i]) || prev
            || p_bodies[i]) || p_bodies[i];
        o_run := p_runs[i];
        o_seq := seqs[i];
        o_entry := entries[i];
        RETURN NEXT;
    END LOOP;
END
$audit$;
"#,
    // 9: caps on a tenant's jobs in flight, across every worker (see
    // `worker::Queue::set_tenant_limit`). `claim_jobs` is the workers' claim: one statement
    // (`FOR UPDATE SKIP LOCKED`, as before) while `tenant_limits` is empty; otherwise first,
    // tenant by tenant (the one whose oldest ready job has waited longest first), the jobs of
    // the capped tenants with places left, then those of tenants without a cap (a capped
    // tenant takes at most its places, so neither starves the other). A capped tenant's jobs
    // are claimed under a transaction-scoped advisory lock of the tenant taken with
    // `pg_try_advisory_xact_lock` (a tenant another claim holds is skipped, as `SKIP LOCKED`
    // skips a row: no claim waits, none deadlocks), counting its live claims (`running`, claim
    // not expired) in a statement that starts after the lock is taken (a volatile function's
    // query sees what committed before it), and taking at most the places left. The lock is
    // held until the claim commits, so two claims never both take the last place. An expired
    // claim is no place: a killed worker's place is free once its claim expires. The function
    // returns the columns the claim returned before. `held_tenants` lists the tenants with no
    // place left (what `JobInfo::held_by_tenant_cap` and the queue's depth read).
    r#"
CREATE TABLE tenant_limits (
    tenant text PRIMARY KEY,
    max_in_flight integer NOT NULL CHECK (max_in_flight >= 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX jobs_tenant_running ON jobs (tenant, claim_until)
    WHERE status = 'running' AND tenant IS NOT NULL;
CREATE INDEX jobs_tenant_queued ON jobs (tenant, available_at, id)
    WHERE status = 'queued' AND tenant IS NOT NULL;
-- The tenants with no place left: as many live claims as their cap, or more.
CREATE FUNCTION held_tenants() RETURNS TABLE (tenant text)
LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $held$
    SELECT l.tenant FROM tenant_limits l
    WHERE l.max_in_flight <= (SELECT count(*) FROM jobs r WHERE r.tenant = l.tenant
                              AND r.status = 'running' AND r.claim_until > clock_timestamp())
$held$;
CREATE FUNCTION claim_jobs(p_worker text, p_ttl_ms bigint, p_graphs text[], p_limit bigint)
RETURNS TABLE (o_id bigint, o_kind text, o_graph text, o_run text, o_input text,
               o_attempts integer, o_cancel boolean, o_waited float8, o_base_step bigint,
               o_tenant text, o_caller text)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $claim$
DECLARE
    got bigint := 0;
    n bigint;
    cap record;
    live bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tenant_limits) THEN
        -- No tenant has a cap: the claim as it was, one statement.
        RETURN QUERY WITH
        queued AS (SELECT id, available_at AS ready_at FROM jobs
              WHERE status = 'queued' AND available_at <= clock_timestamp() AND graph = ANY(p_graphs)
                AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.run_id = jobs.run_id AND e.id < jobs.id
                                AND e.status IN ('queued', 'running'))
              ORDER BY available_at, id LIMIT p_limit FOR UPDATE SKIP LOCKED),
        expired AS (SELECT id, claim_until AS ready_at FROM jobs
              WHERE status = 'running' AND claim_until <= clock_timestamp() AND graph = ANY(p_graphs)
                AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.run_id = jobs.run_id AND e.id < jobs.id
                                AND e.status IN ('queued', 'running'))
              ORDER BY claim_until LIMIT p_limit FOR UPDATE SKIP LOCKED),
        c AS (SELECT id, ready_at FROM (SELECT * FROM queued UNION ALL SELECT * FROM expired) ready
              ORDER BY ready_at, id LIMIT p_limit)
        UPDATE jobs j SET status = 'running', worker = p_worker, attempts = j.attempts + 1,
            claimed_at = clock_timestamp(), claim_until = clock_timestamp() + p_ttl_ms * interval '1 millisecond'
        FROM c WHERE j.id = c.id
        RETURNING j.id, j.kind, j.graph, j.run_id, j.input::text, j.attempts, j.cancel_requested,
            extract(epoch FROM clock_timestamp() - c.ready_at)::float8, j.base_step, j.tenant, j.caller;
        RETURN;
    END IF;
    -- The capped tenants with a job ready, the longest waiting first.
    FOR cap IN
        SELECT l.tenant, l.max_in_flight, r.ready_at FROM tenant_limits l
        CROSS JOIN LATERAL (
            SELECT min(x.ready_at) AS ready_at FROM (
                (SELECT q.available_at AS ready_at FROM jobs q
                 WHERE q.tenant = l.tenant AND q.status = 'queued'
                   AND q.available_at <= clock_timestamp() AND q.graph = ANY(p_graphs)
                 ORDER BY q.available_at LIMIT 1)
                UNION ALL
                (SELECT ex.claim_until FROM jobs ex
                 WHERE ex.tenant = l.tenant AND ex.status = 'running'
                   AND ex.claim_until <= clock_timestamp() AND ex.graph = ANY(p_graphs)
                 ORDER BY ex.claim_until LIMIT 1)) x) r
        WHERE r.ready_at IS NOT NULL
          -- Places left, as far as this snapshot sees (counted again under the lock).
          AND l.max_in_flight > (SELECT count(*) FROM jobs lc WHERE lc.tenant = l.tenant
                                 AND lc.status = 'running' AND lc.claim_until > clock_timestamp())
        ORDER BY r.ready_at, l.tenant
    LOOP
        EXIT WHEN got >= p_limit;
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtext('agentgraph-tenant-cap'), hashtext(cap.tenant));
        SELECT count(*) INTO live FROM jobs
            WHERE tenant = cap.tenant AND status = 'running' AND claim_until > clock_timestamp();
        CONTINUE WHEN live >= cap.max_in_flight;
        RETURN QUERY WITH
        queued AS (SELECT id, available_at AS ready_at FROM jobs
              WHERE tenant = cap.tenant AND status = 'queued' AND available_at <= clock_timestamp()
                AND graph = ANY(p_graphs)
                AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.run_id = jobs.run_id AND e.id < jobs.id
                                AND e.status IN ('queued', 'running'))
              ORDER BY available_at, id LIMIT least(p_limit - got, cap.max_in_flight - live)
              FOR UPDATE SKIP LOCKED),
        expired AS (SELECT id, claim_until AS ready_at FROM jobs
              WHERE tenant = cap.tenant AND status = 'running' AND claim_until <= clock_timestamp()
                AND graph = ANY(p_graphs)
                AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.run_id = jobs.run_id AND e.id < jobs.id
                                AND e.status IN ('queued', 'running'))
              ORDER BY claim_until LIMIT least(p_limit - got, cap.max_in_flight - live)
              FOR UPDATE SKIP LOCKED),
        c AS (SELECT id, ready_at FROM (SELECT * FROM queued UNION ALL SELECT * FROM expired) ready
              ORDER BY ready_at, id LIMIT least(p_limit - got, cap.max_in_flight - live))
        UPDATE jobs j SET status = 'running', worker = p_worker, attempts = j.attempts + 1,
            claimed_at = clock_timestamp(), claim_until = clock_timestamp() + p_ttl_ms * interval '1 millisecond'
        FROM c WHERE j.id = c.id
        RETURNING j.id, j.kind, j.graph, j.run_id, j.input::text, j.attempts, j.cancel_requested,
            extract(epoch FROM clock_timestamp() - c.ready_at)::float8, j.base_step, j.tenant, j.caller;
        GET DIAGNOSTICS n = ROW_COUNT;
        got := got + n;
    END LOOP;
    IF got >= p_limit THEN
        RETURN;
    END IF;
    -- The jobs of tenants without a cap (and of no tenant).
    RETURN QUERY WITH
    queued AS (SELECT id, available_at AS ready_at FROM jobs
          WHERE status = 'queued' AND available_at <= clock_timestamp() AND graph = ANY(p_graphs)
            AND (tenant IS NULL OR NOT EXISTS (SELECT 1 FROM tenant_limits l WHERE l.tenant = jobs.tenant))
            AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.run_id = jobs.run_id AND e.id < jobs.id
                            AND e.status IN ('queued', 'running'))
          ORDER BY available_at, id LIMIT p_limit - got FOR UPDATE SKIP LOCKED),
    expired AS (SELECT id, claim_until AS ready_at FROM jobs
          WHERE status = 'running' AND claim_until <= clock_timestamp() AND graph = ANY(p_graphs)
            AND (tenant IS NULL OR NOT EXISTS (SELECT 1 FROM tenant_limits l WHERE l.tenant = jobs.tenant))
            AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.run_id = jobs.run_id AND e.id < jobs.id
                            AND e.status IN ('queued', 'running'))
          ORDER BY claim_until LIMIT p_limit - got FOR UPDATE SKIP LOCKED),
    c AS (SELECT id, ready_at FROM (SELECT * FROM queued UNION ALL SELECT * FROM expired) ready
          ORDER BY ready_at, id LIMIT p_limit - got)
    UPDATE jobs j SET status = 'running', worker = p_worker, attempts = j.attempts + 1,
        claimed_at = clock_timestamp(), claim_until = clock_timestamp() + p_ttl_ms * interval '1 millisecond'
    FROM c WHERE j.id = c.id
    RETURNING j.id, j.kind, j.graph, j.run_id, j.input::text, j.attempts, j.cancel_requested,
        extract(epoch FROM clock_timestamp() - c.ready_at)::float8, j.base_step, j.tenant, j.caller;
END
$claim$;
"#,
    // 10: tenants' usage totals, shared by the processes that keep them here (see
    // `ledger::PostgresLedger`, an `agentgraph_engine::TenantLedger`): each add is one
    // `INSERT .. ON CONFLICT DO UPDATE .. RETURNING` of the deltas. Plain bigints (amounts, not
    // orderings: they never near 2^63).
    r#"
CREATE TABLE tenant_usage (
    tenant text PRIMARY KEY,
    steps bigint NOT NULL DEFAULT 0,
    tokens bigint NOT NULL DEFAULT 0,
    cost_nanos bigint NOT NULL DEFAULT 0,
    tool_calls bigint NOT NULL DEFAULT 0,
    wall_ms bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"#,
];

/// The SQLSTATE of a failed fence check.
pub(crate) const FENCED: &str = "AGF01";

/// `x` as a `bigint` that sorts as `x` does.
pub(crate) fn flip(x: u64) -> i64 {
    (x ^ (1 << 63)) as i64
}

/// The `u64` that [`flip`] stored as `x`.
pub(crate) fn unflip(x: i64) -> u64 {
    (x as u64) ^ (1 << 63)
}

/// Brings `schema` up to the newest version, under an advisory lock of the schema's name (two
/// processes connecting at once apply each migration once).
///
/// # Errors
///
/// [`StoreError::Backend`] (a [`SchemaTooNew`]) when the schema is newer than [`MIGRATIONS`].
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<()> {
    migrate_to(client, schema, MIGRATIONS.len()).await
}

/// [`migrate`], applying the first `upto` migrations only (a test makes an older schema).
async fn migrate_to(client: &mut Client, schema: &str, upto: usize) -> Result<()> {
    let tx = client.transaction().await.map_err(db)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('agentgraph-postgres migrate ' || $1::text))",
        &[&schema],
    )
    .await
    .map_err(db)?;
    // The schema name is a checked plain identifier.
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS schema_version (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(db)?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(db)?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if found > known {
        return Err(StoreError::Backend(Box::new(SchemaTooNew {
            schema: schema.to_owned(),
            found,
            known,
        })));
    }
    for (i, sql) in MIGRATIONS[..upto].iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await
        .map_err(db)?;
        tracing::info!(
            schema,
            version = i + 1,
            "agentgraph-postgres: migration applied"
        );
    }
    tx.commit().await.map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flipped_numbers_keep_their_order() {
        let xs = [0, 1, 2, (1 << 63) - 1, 1 << 63, u64::MAX - 1, u64::MAX];
        for w in xs.windows(2) {
            assert!(flip(w[0]) < flip(w[1]), "{} < {}", w[0], w[1]);
        }
        for x in xs {
            assert_eq!(unflip(flip(x)), x);
        }
    }

    /// A database at schema 6 (audit entries appended one statement each by `append_audit`)
    /// upgrades to the latest at connect, and the trail it had goes on: the next entries, written by
    /// `audit_rows` in the batch's one statement, link to the old ones and the whole chain
    /// verifies in Rust.
    #[tokio::test]
    async fn a_database_at_schema_6_upgrades() {
        use agentgraph_checkpoint::audit::{self, AuditAction, AuditRecord};
        use agentgraph_checkpoint::{CheckpointStore, WriteBatch};

        let url = std::env::var("AGENTGRAPH_TEST_POSTGRES_URL")
            .expect("AGENTGRAPH_TEST_POSTGRES_URL names the test server (scripts/test)");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!("t_upgrade6_{}_{nanos}", std::process::id());
        let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        migrate_to(&mut client, &schema, 6).await.unwrap();
        let entry = |action, n: u64| AuditRecord::new("upgrade", action).at(n);
        for n in 1..=2 {
            let body = audit::encode_body(&entry(AuditAction::StateEdited, n)).unwrap();
            client
                .execute(
                    &format!("SELECT {schema}.append_audit($1, $2)"),
                    &[&b"r".as_slice(), &body],
                )
                .await
                .unwrap();
        }
        let found: i32 = client
            .query_one(
                &format!("SELECT max(version) FROM {schema}.schema_version"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(found, 6);

        let options = crate::PostgresOptions::new(&url)
            .unwrap()
            .with_schema(&schema)
            .unwrap();
        let store = crate::PostgresStore::connect_with(options).await.unwrap();
        let found: i32 = client
            .query_one(
                &format!("SELECT max(version) FROM {schema}.schema_version"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(found, crate::SCHEMA_VERSION);
        let mut batch = WriteBatch::new();
        batch
            .put_audit("r", entry(AuditAction::Resumed, 3))
            .put_audit("r", entry(AuditAction::Cancelled, 4));
        store.commit(batch).await.unwrap();
        let entries = store.audit("r").await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(
            entries[2].prev, entries[1].hash,
            "the new entries go on the old chain"
        );
        let head = audit::verify(&store, "r")
            .await
            .unwrap()
            .unwrap_or_else(|broken| panic!("the upgraded chain verifies: {broken}"));
        assert_eq!(head.entries, 4);
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
}
