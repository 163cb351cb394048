//! A batch as one transaction: one statement per run of consecutive operations of one kind
//! (rows passed as arrays and `unnest`ed) and the fence check, sent as **one statement** when
//! those touch each table at most once (what a step's commit is: the statements become the
//! data-modifying `WITH` queries of one statement whose own query is the fence check, a
//! transaction of its own), otherwise as `BEGIN`, the fence check, the statements, `COMMIT`,
//! all sent before the first answer is read.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;

use agentgraph_checkpoint::items::{check_target as check_item, encode_item, is_item_op};
use agentgraph_checkpoint::{Op, Result, StoreError, WriteBatch, check_run_id, encode_run};
use tokio_postgres::types::ToSql;

use crate::migrate::{FENCED, flip};

/// A parameter of a statement, owned until the statement is sent.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// One statement of a commit: its SQL (prepared once per connection), its parameters, and
/// the tables it writes (bits of [`table`]).
pub(crate) struct Statement {
    pub(crate) sql: &'static str,
    pub(crate) params: Vec<Param>,
    tables: u8,
}

/// What a commit sends, and the fences it checks (to name the run of a failed one).
pub(crate) struct Plan {
    pub(crate) statements: Vec<Statement>,
    pub(crate) fences: Vec<(String, u64)>,
}

/// The tables a statement writes, as bits.
mod table {
    pub(super) const RUNS: u8 = 1;
    pub(super) const CHECKPOINTS: u8 = 2;
    pub(super) const BLOBS: u8 = 4;
    pub(super) const PENDING: u8 = 8;
    pub(super) const EVENTS: u8 = 16;
    pub(super) const AUDIT: u8 = 32;
    pub(super) const NONE: u8 = 0;
}

const FENCE: &str = "SELECT fence($1::bytea[], $2::bigint[])";
const PUT_RUNS: &str = "INSERT INTO runs (run_id, record, status, graph, updated_at_ms, expires_at_ms) \
     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) \
     ON CONFLICT (run_id) DO UPDATE SET record = EXCLUDED.record, status = EXCLUDED.status, \
     graph = EXCLUDED.graph, updated_at_ms = EXCLUDED.updated_at_ms, expires_at_ms = EXCLUDED.expires_at_ms";
const PUT_CHECKPOINTS: &str = "INSERT INTO checkpoints (run_id, step, bytes) \
     SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[]) \
     ON CONFLICT (run_id, step) DO UPDATE SET bytes = EXCLUDED.bytes";
const PUT_BLOBS: &str = "INSERT INTO blobs (run_id, field, version, bytes) \
     SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bytea[]) \
     ON CONFLICT (run_id, field, version) DO UPDATE SET bytes = EXCLUDED.bytes";
const PUT_PENDING: &str = "INSERT INTO pending_writes (run_id, step, task, bytes) \
     SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bytea[]) \
     ON CONFLICT (run_id, step, task) DO UPDATE SET bytes = EXCLUDED.bytes";
const PUT_EVENTS: &str = "INSERT INTO events (run_id, seq, bytes) \
     SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[]) \
     ON CONFLICT (run_id, seq) DO UPDATE SET bytes = EXCLUDED.bytes";
const DELETE_PENDING: &str = "DELETE FROM pending_writes t USING unnest($1::bytea[], $2::bigint[]) d(run_id, step) \
     WHERE t.run_id = d.run_id AND t.step <= d.step";
const DELETE_CHECKPOINTS_BEFORE: &str = "DELETE FROM checkpoints t USING unnest($1::bytea[], $2::bigint[]) d(run_id, step) \
     WHERE t.run_id = d.run_id AND t.step < d.step";
const DELETE_BLOBS_BEFORE: &str = "DELETE FROM blobs t USING unnest($1::bytea[], $2::bigint[], $3::bigint[]) d(run_id, field, version) \
     WHERE t.run_id = d.run_id AND t.field = d.field AND t.version < d.version";
const DELETE_CHECKPOINTS_AFTER: &str = "DELETE FROM checkpoints t USING unnest($1::bytea[], $2::bigint[]) d(run_id, step) \
     WHERE t.run_id = d.run_id AND t.step > d.step";
const DELETE_PENDING_AFTER: &str = "DELETE FROM pending_writes t USING unnest($1::bytea[], $2::bigint[]) d(run_id, step) \
     WHERE t.run_id = d.run_id AND t.step > d.step";
const DELETE_BLOBS_AFTER: &str = "DELETE FROM blobs t USING unnest($1::bytea[], $2::bigint[]) d(run_id, step) \
     WHERE t.run_id = d.run_id AND t.version > d.step";
const DELETE_RUNS: [(&str, u8); 5] = [
    (
        "DELETE FROM runs WHERE run_id = ANY($1::bytea[])",
        table::RUNS,
    ),
    (
        "DELETE FROM checkpoints WHERE run_id = ANY($1::bytea[])",
        table::CHECKPOINTS,
    ),
    (
        "DELETE FROM blobs WHERE run_id = ANY($1::bytea[])",
        table::BLOBS,
    ),
    (
        "DELETE FROM pending_writes WHERE run_id = ANY($1::bytea[])",
        table::PENDING,
    ),
    (
        "DELETE FROM events WHERE run_id = ANY($1::bytea[])",
        table::EVENTS,
    ),
];

/// Audit entries, numbered and chained by the database in their order (`audit_rows`,
/// migration 8), written by one `INSERT`: a data-modifying statement, so it can be a `WITH`
/// query of the one-statement form (which runs it after the fence check).
const PUT_AUDIT: &str = "INSERT INTO audit (run_id, seq, entry) \
     SELECT * FROM audit_rows($1::bytea[], $2::bytea[])";

const BUMP_ITEMS: &str = "UPDATE item_changes SET version = version + 1 WHERE id = 1";
const PUT_ITEMS: &str = "INSERT INTO items (namespace, key, item, expires_at_ms, seq) \
     SELECT n, k, i, e, (SELECT version FROM item_changes WHERE id = 1) \
     FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bigint[]) u(n, k, i, e) \
     ON CONFLICT (namespace, key) DO UPDATE SET item = EXCLUDED.item, \
     expires_at_ms = EXCLUDED.expires_at_ms, seq = EXCLUDED.seq, deleted_at = NULL";
const DELETE_ITEMS: &str = "UPDATE items t SET item = NULL, expires_at_ms = NULL, \
     seq = (SELECT version FROM item_changes WHERE id = 1), deleted_at = clock_timestamp() \
     FROM unnest($1::bytea[], $2::bytea[], $3::bigint[]) d(namespace, key, if_expired) \
     WHERE t.namespace = d.namespace AND t.key = d.key AND t.item IS NOT NULL \
     AND (d.if_expired IS NULL OR t.expires_at_ms <= d.if_expired)";

/// The kind of an operation: consecutive operations of one kind make one statement.
fn kind(op: &Op) -> u8 {
    match op {
        Op::PutRun(_) => 0,
        Op::PutCheckpoint { .. } => 1,
        Op::PutBlob { .. } => 2,
        Op::PutPendingWrite { .. } => 3,
        Op::PutEvent { .. } => 4,
        Op::DeletePendingWrites { .. } => 5,
        Op::DeleteCheckpointsBefore { .. } => 6,
        Op::DeleteBlobsBefore { .. } => 7,
        Op::DeleteAfter { .. } => 8,
        Op::DeleteRun { .. } => 9,
        Op::Fence { .. } => 10,
        Op::PutItem(_) => 11,
        Op::DeleteItem { .. } => 12,
        Op::PutAudit { .. } => 13,
        _ => 14,
    }
}

/// The tables the operations of a [`kind`] write.
fn tables_of(kind: u8) -> u8 {
    use table::*;
    match kind {
        0 => RUNS,
        1 | 6 => CHECKPOINTS,
        2 | 7 => BLOBS,
        3 | 5 => PENDING,
        4 => EVENTS,
        8 => CHECKPOINTS | BLOBS | PENDING,
        9 => RUNS | CHECKPOINTS | BLOBS | PENDING | EVENTS,
        13 => AUDIT,
        _ => NONE,
    }
}

/// Puts operations of one kind together (keeping their order) when every table is written
/// by operations of one kind only: operations on different tables commute, so the batch
/// means the same, and a group of `Durability::Async` steps (blobs, checkpoint, run, blobs,
/// checkpoint, run...) becomes one statement per table.
fn by_kind(ops: &mut [Op]) {
    let mut writer = [None::<u8>; 8];
    for op in ops.iter() {
        let k = kind(op);
        let tables = tables_of(k);
        if tables == table::NONE {
            return;
        }
        for (t, w) in writer.iter_mut().enumerate() {
            if tables & (1 << t) != 0 {
                match w {
                    None => *w = Some(k),
                    Some(other) if *other == k => {}
                    Some(_) => return,
                }
            }
        }
    }
    ops.sort_by_key(kind); // stable
}

fn param<T: ToSql + Sync + Send + 'static>(value: T) -> Param {
    Box::new(value)
}

/// Checks `batch` (run ids, run records) and plans its statements; `group` puts consecutive
/// operations of one kind in one statement, otherwise each has its own.
///
/// # Errors
///
/// [`StoreError::InvalidRunId`], [`StoreError::Corrupt`] (a record that does not encode):
/// nothing is sent.
pub(crate) fn plan(batch: WriteBatch, group: bool) -> Result<Plan> {
    let mut fences = Vec::new();
    let mut ops = Vec::with_capacity(batch.len());
    let items = batch.ops().iter().any(is_item_op);
    for op in batch.into_ops() {
        if let Op::PutItem(item) = &op {
            check_item(&item.namespace, &item.key)?;
            ops.push(op);
            continue;
        }
        if let Op::DeleteItem { namespace, key, .. } = &op {
            check_item(namespace, key)?;
            ops.push(op);
            continue;
        }
        let run = match &op {
            Op::PutRun(record) => &record.run_id,
            Op::PutCheckpoint { run, .. }
            | Op::PutBlob { run, .. }
            | Op::PutPendingWrite { run, .. }
            | Op::PutEvent { run, .. }
            | Op::DeletePendingWrites { run, .. }
            | Op::DeleteCheckpointsBefore { run, .. }
            | Op::DeleteBlobsBefore { run, .. }
            | Op::DeleteAfter { run, .. }
            | Op::DeleteRun { run }
            | Op::Fence { run, .. }
            | Op::PutAudit { run, .. } => run,
            other => {
                return Err(StoreError::Backend(
                    format!("agentgraph-postgres does not know the operation {other:?}").into(),
                ));
            }
        };
        check_run_id(run)?;
        match op {
            Op::Fence { run, epoch } => fences.push((run, epoch)),
            op => ops.push(op),
        }
    }
    if group {
        by_kind(&mut ops);
    }
    let mut statements = Vec::with_capacity(ops.len() + 3);
    statements.push(Statement {
        sql: "BEGIN",
        params: Vec::new(),
        tables: table::NONE,
    });
    if !fences.is_empty() {
        let runs: Vec<Vec<u8>> = fences.iter().map(|(r, _)| r.as_bytes().to_vec()).collect();
        let epochs: Vec<i64> = fences.iter().map(|(_, e)| *e as i64).collect();
        statements.push(Statement {
            sql: FENCE,
            params: vec![param(runs), param(epochs)],
            tables: table::NONE,
        });
    }
    if items {
        // Serialises the transactions that write items (the row stays locked until the
        // commit): their versions follow commit order.
        statements.push(Statement {
            sql: BUMP_ITEMS,
            params: Vec::new(),
            // Not a table of the one-statement form: a batch that writes items is a
            // transaction (its item writes read the version this statement bumps).
            tables: table::NONE,
        });
    }
    let mut same: Vec<Op> = Vec::new();
    for op in ops {
        if let Some(last) = same.last()
            && (!group || kind(last) != kind(&op))
        {
            group_statements(std::mem::take(&mut same), &mut statements)?;
        }
        same.push(op);
    }
    if !same.is_empty() {
        group_statements(same, &mut statements)?;
    }
    statements.push(Statement {
        sql: "COMMIT",
        params: Vec::new(),
        tables: table::NONE,
    });
    Ok(Plan { statements, fences })
}

/// A plan sent as one statement: see [`one_statement`].
pub(crate) struct OneStatement<'a> {
    /// The statement's SQL: the writes as `WITH` queries, the fence check (or `SELECT 1`) as
    /// its own query.
    pub(crate) sql: Arc<str>,
    /// The parameters, in the order the SQL numbers them.
    pub(crate) params: Vec<&'a (dyn ToSql + Sync)>,
}

/// `sql` with every parameter number raised by `by`.
fn shift(sql: &str, by: usize, out: &mut String) {
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = 0usize;
        let mut digits = false;
        while let Some(&(_, d)) = chars.peek() {
            let Some(v) = d.to_digit(10) else { break };
            n = n * 10 + v as usize;
            digits = true;
            chars.next();
        }
        if digits {
            out.push_str(&(n + by).to_string());
        }
    }
}

/// The plan as one statement, when the statements between its `BEGIN` and `COMMIT` write
/// each table at most once: they become the data-modifying `WITH` queries of one statement
/// whose own query is the fence check. A statement is a transaction of its own, applied whole
/// or not at all, and one that writes each table once does the same whatever order its parts
/// run in (PostgreSQL runs the `WITH` queries nobody reads after the statement's own query,
/// so the fence is checked first, its leases' rows locked until the commit). `None`: send the
/// plan as it is.
pub(crate) fn one_statement(plan: &Plan) -> Option<OneStatement<'_>> {
    let inner = plan
        .statements
        .get(1..plan.statements.len().checked_sub(1)?)?;
    let (fence, writes) = match inner.split_first() {
        Some((first, rest)) if first.sql == FENCE => (Some(first), rest),
        _ => (None, inner),
    };
    let mut seen = 0u8;
    for w in writes {
        if w.tables == table::NONE || w.tables & seen != 0 {
            return None;
        }
        seen |= w.tables;
    }
    let parts: Vec<&Statement> = writes.iter().chain(fence).collect();
    let params = parts
        .iter()
        .flat_map(|s| s.params.iter().map(|p| &**p as &(dyn ToSql + Sync)))
        .collect();
    type Cache = Mutex<HashMap<Vec<usize>, Arc<str>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    // The statements' SQL are constants: their addresses name them.
    let key: Vec<usize> = parts.iter().map(|s| s.sql.as_ptr() as usize).collect();
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(sql) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Some(OneStatement {
            sql: sql.clone(),
            params,
        });
    }
    let mut sql = String::new();
    let mut numbered = 0;
    for (i, w) in writes.iter().enumerate() {
        sql.push_str(if i == 0 { "WITH " } else { ", " });
        sql.push_str(&format!("w{i} AS ("));
        shift(w.sql, numbered, &mut sql);
        sql.push_str(")\n");
        numbered += w.params.len();
    }
    match fence {
        Some(f) => shift(f.sql, numbered, &mut sql),
        None => sql.push_str("SELECT 1"),
    }
    let sql: Arc<str> = sql.into();
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, sql.clone());
    Some(OneStatement { sql, params })
}

/// Keeps the last of the operations with the same key (one `INSERT .. ON CONFLICT` may not
/// touch a row twice), in their order.
fn last_per_key<K: std::hash::Hash + Eq>(ops: Vec<Op>, key: impl Fn(&Op) -> K) -> Vec<Op> {
    let mut seen = HashSet::new();
    let mut kept: Vec<Op> = ops
        .into_iter()
        .rev()
        .filter(|op| seen.insert(key(op)))
        .collect();
    kept.reverse();
    kept
}

/// The statements of `ops`, operations of one kind.
fn group_statements(ops: Vec<Op>, out: &mut Vec<Statement>) -> Result<()> {
    let mut runs: Vec<Vec<u8>> = Vec::with_capacity(ops.len());
    macro_rules! push {
        ($sql:expr, $tables:expr, $($p:expr),*) => {
            out.push(Statement { sql: $sql, params: vec![$(param($p)),*], tables: $tables })
        };
    }
    match &ops[0] {
        Op::PutRun(_) => {
            let ops = last_per_key(ops, |op| match op {
                Op::PutRun(r) => r.run_id.clone(),
                _ => unreachable!(),
            });
            let (mut records, mut status, mut graph, mut updated, mut expires) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for op in ops {
                let Op::PutRun(r) = op else { unreachable!() };
                records.push(encode_run(&r)?);
                status.push(r.status.as_str().to_owned());
                // The column is for queries; the record holds the name. `text` refuses NUL.
                graph.push(r.graph.clone().filter(|g| !g.contains('\0')));
                updated.push(flip(r.updated_at_ms));
                expires.push(r.expires_at_ms.map(flip));
                runs.push(r.run_id.into_bytes());
            }
            push!(
                PUT_RUNS,
                table::RUNS,
                runs,
                records,
                status,
                graph,
                updated,
                expires
            );
        }
        Op::PutCheckpoint { .. } | Op::PutEvent { .. } => {
            let (sql, tables) = if matches!(ops[0], Op::PutCheckpoint { .. }) {
                (PUT_CHECKPOINTS, table::CHECKPOINTS)
            } else {
                (PUT_EVENTS, table::EVENTS)
            };
            let ops = last_per_key(ops, |op| match op {
                Op::PutCheckpoint { run, step, .. } => (run.clone(), *step),
                Op::PutEvent { run, seq, .. } => (run.clone(), *seq),
                _ => unreachable!(),
            });
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            for op in ops {
                let (Op::PutCheckpoint { run, step, bytes }
                | Op::PutEvent {
                    run,
                    seq: step,
                    bytes,
                }) = op
                else {
                    unreachable!()
                };
                runs.push(run.into_bytes());
                keys.push(flip(step));
                values.push(bytes);
            }
            push!(sql, tables, runs, keys, values);
        }
        Op::PutBlob { .. } | Op::PutPendingWrite { .. } => {
            let (sql, tables) = if matches!(ops[0], Op::PutBlob { .. }) {
                (PUT_BLOBS, table::BLOBS)
            } else {
                (PUT_PENDING, table::PENDING)
            };
            // (run, first key, second key): blobs (field, version), pending (step, task).
            let ops = last_per_key(ops, |op| match op {
                Op::PutBlob {
                    run,
                    field,
                    version,
                    ..
                } => (run.clone(), u64::from(*field), *version),
                Op::PutPendingWrite {
                    run, step, task, ..
                } => (run.clone(), *step, u64::from(*task)),
                _ => unreachable!(),
            });
            let (mut first, mut second, mut values) = (Vec::new(), Vec::new(), Vec::new());
            for op in ops {
                match op {
                    Op::PutBlob {
                        run,
                        field,
                        version,
                        bytes,
                    } => {
                        runs.push(run.into_bytes());
                        first.push(i64::from(field));
                        second.push(flip(version));
                        values.push(bytes);
                    }
                    Op::PutPendingWrite {
                        run,
                        step,
                        task,
                        bytes,
                    } => {
                        runs.push(run.into_bytes());
                        first.push(flip(step));
                        second.push(i64::from(task));
                        values.push(bytes);
                    }
                    _ => unreachable!(),
                }
            }
            push!(sql, tables, runs, first, second, values);
        }
        Op::DeletePendingWrites { .. } | Op::DeleteCheckpointsBefore { .. } => {
            let (sql, tables) = if matches!(ops[0], Op::DeletePendingWrites { .. }) {
                (DELETE_PENDING, table::PENDING)
            } else {
                (DELETE_CHECKPOINTS_BEFORE, table::CHECKPOINTS)
            };
            let mut steps = Vec::new();
            for op in ops {
                let (Op::DeletePendingWrites { run, step }
                | Op::DeleteCheckpointsBefore { run, step }) = op
                else {
                    unreachable!()
                };
                runs.push(run.into_bytes());
                steps.push(flip(step));
            }
            push!(sql, tables, runs, steps);
        }
        Op::DeleteBlobsBefore { .. } => {
            let (mut fields, mut versions) = (Vec::new(), Vec::new());
            for op in ops {
                let Op::DeleteBlobsBefore {
                    run,
                    field,
                    version,
                } = op
                else {
                    unreachable!()
                };
                runs.push(run.into_bytes());
                fields.push(i64::from(field));
                versions.push(flip(version));
            }
            push!(DELETE_BLOBS_BEFORE, table::BLOBS, runs, fields, versions);
        }
        Op::DeleteAfter { .. } => {
            let mut steps = Vec::new();
            for op in ops {
                let Op::DeleteAfter { run, step } = op else {
                    unreachable!()
                };
                runs.push(run.into_bytes());
                steps.push(flip(step));
            }
            push!(
                DELETE_CHECKPOINTS_AFTER,
                table::CHECKPOINTS,
                runs.clone(),
                steps.clone()
            );
            push!(
                DELETE_PENDING_AFTER,
                table::PENDING,
                runs.clone(),
                steps.clone()
            );
            push!(DELETE_BLOBS_AFTER, table::BLOBS, runs, steps);
        }
        Op::DeleteRun { .. } => {
            for op in ops {
                let Op::DeleteRun { run } = op else {
                    unreachable!()
                };
                runs.push(run.into_bytes());
            }
            for (sql, tables) in DELETE_RUNS {
                push!(sql, tables, runs.clone());
            }
        }
        Op::PutItem(_) => {
            let ops = last_per_key(ops, |op| match op {
                Op::PutItem(i) => (i.namespace.encode(), i.key.clone()),
                _ => unreachable!(),
            });
            let (mut spaces, mut keys, mut records, mut expires) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for op in ops {
                let Op::PutItem(item) = op else {
                    unreachable!()
                };
                records.push(encode_item(&item)?);
                spaces.push(item.namespace.encode());
                keys.push(item.key.into_bytes());
                expires.push(item.expires_at_ms.map(flip));
            }
            push!(PUT_ITEMS, table::NONE, spaces, keys, records, expires);
        }
        Op::DeleteItem { .. } => {
            let (mut spaces, mut keys, mut conditions) = (Vec::new(), Vec::new(), Vec::new());
            for op in ops {
                let Op::DeleteItem {
                    namespace,
                    key,
                    if_expired_at,
                } = op
                else {
                    unreachable!()
                };
                spaces.push(namespace.encode());
                keys.push(key.into_bytes());
                conditions.push(if_expired_at.map(flip));
            }
            push!(DELETE_ITEMS, table::NONE, spaces, keys, conditions);
        }
        Op::PutAudit { .. } => {
            // Every entry is kept, in its order: `audit_rows` chains them.
            let mut bodies = Vec::with_capacity(ops.len());
            for op in ops {
                let Op::PutAudit { run, record } = op else {
                    unreachable!()
                };
                bodies.push(agentgraph_checkpoint::audit::encode_body(&record)?);
                runs.push(run.into_bytes());
            }
            push!(PUT_AUDIT, table::AUDIT, runs, bodies);
        }
        _ => unreachable!("fences are taken out before"),
    }
    Ok(())
}

/// The first error of a commit's statements as a [`StoreError`]: a failed fence check is
/// [`StoreError::Fenced`]; errors that only follow from an earlier one ("the transaction is
/// aborted") are not the cause.
pub(crate) fn first_error(
    results: Vec<std::result::Result<u64, tokio_postgres::Error>>,
    fences: &[(String, u64)],
) -> Result<()> {
    let Some(e) = results.into_iter().find_map(|r| r.err()) else {
        return Ok(());
    };
    if let Some(dbe) = e.as_db_error()
        && dbe.code().code() == FENCED
    {
        let mut parts = dbe.detail().unwrap_or("").split(' ');
        let index: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
        let current: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let (run, epoch) = fences
            .get(index.saturating_sub(1))
            .cloned()
            .unwrap_or_default();
        return Err(StoreError::Fenced {
            run,
            epoch,
            current,
        });
    }
    Err(crate::error::db(e))
}

/// Runs `futures` to completion, polling them for the first time in their order (each sends
/// its statement when first polled, so the statements go out in that order, before any
/// answer is read), and gives their results in that order.
pub(crate) async fn in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered() {
        let mut out = String::new();
        shift(
            "SELECT $1, $2::bigint[], $10 FROM t WHERE a = '$'",
            3,
            &mut out,
        );
        assert_eq!(out, "SELECT $4, $5::bigint[], $13 FROM t WHERE a = '$'");
    }

    #[test]
    fn a_step_is_one_statement_fenced_last() {
        let mut batch = WriteBatch::new();
        batch
            .fence("r", 3)
            .put_blob("r", 0, 1, vec![1])
            .put_blob("r", 1, 1, vec![2])
            .put_checkpoint("r", 1, vec![3])
            .delete_pending_writes("r", 1);
        let planned = plan(batch, true).unwrap();
        let one = one_statement(&planned).expect("one statement");
        // By kind: checkpoints 3, blobs 4, pending 2, then the fence's 2.
        assert!(one.sql.starts_with("WITH w0 AS (INSERT INTO checkpoints"));
        assert_eq!(one.params.len(), 11);
        assert!(
            one.sql
                .ends_with("SELECT fence($10::bytea[], $11::bigint[])")
        );
        // Cached: the same SQL again.
        let again = one_statement(&planned).unwrap();
        assert!(Arc::ptr_eq(&one.sql, &again.sql));
    }

    #[test]
    fn a_table_written_twice_keeps_the_transaction() {
        let mut batch = WriteBatch::new();
        batch.put_checkpoint("r", 1, vec![3]).delete_after("r", 0);
        assert!(one_statement(&plan(batch, true).unwrap()).is_none());
        let mut batch = WriteBatch::new();
        batch
            .put_blob("r", 0, 1, vec![1])
            .put_blob("r", 1, 1, vec![2]);
        assert!(one_statement(&plan(batch, false).unwrap()).is_none());
        assert!(one_statement(&plan(batch_of_one(), true).unwrap()).is_some());
    }

    #[test]
    fn steps_of_a_group_are_one_statement() {
        let mut batch = WriteBatch::new();
        for step in 1..4 {
            batch
                .put_blob("r", 0, step, vec![1])
                .put_checkpoint("r", step, vec![2])
                .put_run(agentgraph_checkpoint::RunRecord::new(
                    "r",
                    agentgraph_checkpoint::RunStatus::Running,
                    7,
                    0,
                ));
        }
        let planned = plan(batch, true).unwrap();
        assert_eq!(
            planned.statements.len(),
            5,
            "BEGIN, runs, checkpoints, blobs, COMMIT"
        );
        assert!(one_statement(&planned).is_some());
        // A table written by two kinds keeps the order.
        let mut batch = WriteBatch::new();
        batch
            .put_pending_write("r", 2, 0, vec![1])
            .put_checkpoint("r", 2, vec![2])
            .delete_pending_writes("r", 2)
            .put_pending_write("r", 3, 0, vec![1]);
        let planned = plan(batch, true).unwrap();
        assert_eq!(planned.statements.len(), 6);
        assert!(one_statement(&planned).is_none());
    }

    fn entry(n: u64) -> agentgraph_checkpoint::audit::AuditRecord {
        agentgraph_checkpoint::audit::AuditRecord::new(
            "test",
            agentgraph_checkpoint::audit::AuditAction::Started,
        )
        .at(n)
    }

    #[test]
    fn a_batch_with_audit_entries_is_one_statement() {
        // A run's first step: its record, checkpoint and blobs, and the `started` entry.
        let mut batch = WriteBatch::new();
        batch
            .fence("r", 3)
            .put_run(agentgraph_checkpoint::RunRecord::new(
                "r",
                agentgraph_checkpoint::RunStatus::Running,
                7,
                0,
            ))
            .put_audit("r", entry(1))
            .put_blob("r", 0, 1, vec![1])
            .put_checkpoint("r", 1, vec![3])
            .put_audit("r", entry(2));
        let planned = plan(batch, true).unwrap();
        let one = one_statement(&planned).expect("one statement");
        // By kind: runs 6, checkpoints 3, blobs 4, audit 2 (both entries), the fence's 2.
        assert_eq!(one.params.len(), 17);
        assert!(
            one.sql.contains(
                "w3 AS (INSERT INTO audit (run_id, seq, entry) \
                 SELECT * FROM audit_rows($14::bytea[], $15::bytea[]))"
            ),
            "{}",
            one.sql
        );
        assert!(
            one.sql
                .ends_with("SELECT fence($16::bytea[], $17::bigint[])")
        );
        assert!(!one.sql.contains("append_audit"));
        // Not grouped: the two entries are two statements writing one table, a transaction.
        let mut batch = WriteBatch::new();
        batch.put_audit("r", entry(1)).put_audit("r", entry(2));
        assert!(one_statement(&plan(batch, false).unwrap()).is_none());
        // A deleted run's last entry goes with its deletion (the trail is kept).
        let mut batch = WriteBatch::new();
        batch.delete_run("r").put_audit("r", entry(3));
        let planned = plan(batch, true).unwrap();
        let one = one_statement(&planned).expect("one statement");
        assert!(one.sql.ends_with("SELECT 1"), "{}", one.sql);
    }

    fn batch_of_one() -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put_checkpoint("r", 1, vec![3]);
        batch
    }
}
