//! A batch as one transaction of pipelined statements: `BEGIN`, the fence check, one
//! statement per run of consecutive operations of one kind (rows passed as arrays and
//! `unnest`ed), `COMMIT`, all sent before the first answer is read.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use agentgraph_checkpoint::items::{check_target as check_item, encode_item, is_item_op};
use agentgraph_checkpoint::{Op, Result, StoreError, WriteBatch, check_run_id, encode_run};
use tokio_postgres::types::ToSql;

use crate::migrate::{FENCED, flip};

/// A parameter of a statement, owned until the statement is sent.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// One statement of a commit: its SQL (prepared once per connection) and its parameters.
pub(crate) struct Statement {
    pub(crate) sql: &'static str,
    pub(crate) params: Vec<Param>,
}

/// What a commit sends, and the fences it checks (to name the run of a failed one).
pub(crate) struct Plan {
    pub(crate) statements: Vec<Statement>,
    pub(crate) fences: Vec<(String, u64)>,
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
const DELETE_RUNS: [&str; 5] = [
    "DELETE FROM runs WHERE run_id = ANY($1::bytea[])",
    "DELETE FROM checkpoints WHERE run_id = ANY($1::bytea[])",
    "DELETE FROM blobs WHERE run_id = ANY($1::bytea[])",
    "DELETE FROM pending_writes WHERE run_id = ANY($1::bytea[])",
    "DELETE FROM events WHERE run_id = ANY($1::bytea[])",
];

const BUMP_ITEMS: &str = "UPDATE item_changes SET version = version + 1 WHERE id = 1";
const PUT_ITEMS: &str = "INSERT INTO items (namespace, key, item, expires_at_ms, seq) \
     SELECT n, k, i, e, (SELECT version FROM item_changes WHERE id = 1) \
     FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bigint[]) u(n, k, i, e) \
     ON CONFLICT (namespace, key) DO UPDATE SET item = EXCLUDED.item, \
     expires_at_ms = EXCLUDED.expires_at_ms, seq = EXCLUDED.seq";
const DELETE_ITEMS: &str = "UPDATE items t SET item = NULL, expires_at_ms = NULL, \
     seq = (SELECT version FROM item_changes WHERE id = 1) \
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
        _ => 13,
    }
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
            | Op::Fence { run, .. } => run,
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
    let mut statements = Vec::with_capacity(ops.len() + 3);
    statements.push(Statement {
        sql: "BEGIN",
        params: Vec::new(),
    });
    if !fences.is_empty() {
        let runs: Vec<Vec<u8>> = fences.iter().map(|(r, _)| r.as_bytes().to_vec()).collect();
        let epochs: Vec<i64> = fences.iter().map(|(_, e)| *e as i64).collect();
        statements.push(Statement {
            sql: FENCE,
            params: vec![param(runs), param(epochs)],
        });
    }
    if items {
        // Serialises the transactions that write items (the row stays locked until the
        // commit): their versions follow commit order.
        statements.push(Statement {
            sql: BUMP_ITEMS,
            params: Vec::new(),
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
    });
    Ok(Plan { statements, fences })
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
        ($sql:expr, $($p:expr),*) => {
            out.push(Statement { sql: $sql, params: vec![$(param($p)),*] })
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
            push!(PUT_RUNS, runs, records, status, graph, updated, expires);
        }
        Op::PutCheckpoint { .. } | Op::PutEvent { .. } => {
            let sql = if matches!(ops[0], Op::PutCheckpoint { .. }) {
                PUT_CHECKPOINTS
            } else {
                PUT_EVENTS
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
            push!(sql, runs, keys, values);
        }
        Op::PutBlob { .. } | Op::PutPendingWrite { .. } => {
            let sql = if matches!(ops[0], Op::PutBlob { .. }) {
                PUT_BLOBS
            } else {
                PUT_PENDING
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
            push!(sql, runs, first, second, values);
        }
        Op::DeletePendingWrites { .. } | Op::DeleteCheckpointsBefore { .. } => {
            let sql = if matches!(ops[0], Op::DeletePendingWrites { .. }) {
                DELETE_PENDING
            } else {
                DELETE_CHECKPOINTS_BEFORE
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
            push!(sql, runs, steps);
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
            push!(DELETE_BLOBS_BEFORE, runs, fields, versions);
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
            push!(DELETE_CHECKPOINTS_AFTER, runs.clone(), steps.clone());
            push!(DELETE_PENDING_AFTER, runs.clone(), steps.clone());
            push!(DELETE_BLOBS_AFTER, runs, steps);
        }
        Op::DeleteRun { .. } => {
            for op in ops {
                let Op::DeleteRun { run } = op else {
                    unreachable!()
                };
                runs.push(run.into_bytes());
            }
            for sql in DELETE_RUNS {
                push!(sql, runs.clone());
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
            push!(PUT_ITEMS, spaces, keys, records, expires);
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
            push!(DELETE_ITEMS, spaces, keys, conditions);
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
