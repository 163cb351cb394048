//! Forking: a new run from a checkpoint of another, its state optionally edited.

use agentgraph_checkpoint::audit::AuditAction;
use agentgraph_checkpoint::envelope::{self, RecordKind};
use agentgraph_checkpoint::{RunRecord, RunStatus, WriteBatch};

use super::reader::Reader;
use super::record::CheckpointRecord;
use super::runs::check_new_run_id;
use super::{SHORT_TTL, blob, format_encode_error, lease, now_ms};
use crate::define::state::State;
use crate::error::{Error, Result};
use crate::plan::compiled::CompiledGraph;

/// Forks `new_run` from the checkpoint of `run` at `step`, with the state changed by `edit`:
/// a pending run whose first checkpoint is `step`, every field stored whole, that runs the
/// tasks the original would have run next. `graph` is the graph that forks it (its name is
/// stored on the new run; a state stored by an older version is upgraded with its migrations);
/// `caller` who forks it, for the new run's audit trail.
#[allow(clippy::too_many_arguments)] // the fork's own terms, each once
pub(crate) async fn fork<S: State>(
    reader: &Reader,
    graph: &CompiledGraph<S>,
    run: &str,
    step: u64,
    new_run: &str,
    edit: impl FnOnce(&mut S),
    caller: Option<&str>,
) -> Result<()> {
    let schema = graph.schema();
    check_new_run_id(new_run)?;
    let owner = lease(reader.store(), new_run, SHORT_TTL).await?;
    let store = owner.store();
    if store.get_run(new_run).await?.is_some() {
        return Err(Error::RunExists(new_run.to_owned()));
    }
    let source = reader.run(run).await?;
    let (mut state, record) = reader
        .state_and_record::<S>(run, Some(step), schema, graph.migrations())
        .await?;
    // A state stored by an older version was upgraded: the fork stores it as this graph's.
    let upgraded =
        record.state_version != S::VERSION || record.bases.len() != S::fields(schema).len();
    edit(&mut state);
    let mut batch = WriteBatch::new();
    let mut blob_bytes = 0;
    let fields = S::fields(schema).len();
    for f in 0..fields {
        let (bytes, _) = blob::full(&state, schema, f, step, 0)?;
        blob_bytes += bytes.len() as u64;
        batch.put_blob(new_run, f as u32, step, bytes);
    }
    let forked = CheckpointRecord {
        parent: None,
        created_at_ms: now_ms(),
        bases: vec![step; fields],
        written: (0..fields as u32).collect(),
        blob_bytes,
        state_version: S::VERSION,
        ..record
    };
    batch.put_checkpoint(
        new_run,
        step,
        envelope::encode(RecordKind::Checkpoint, &forked).map_err(format_encode_error)?,
    );
    let fingerprint = if upgraded {
        graph.fingerprint().as_u128()
    } else {
        source.fingerprint
    };
    let mut rec = RunRecord::new(new_run, RunStatus::Pending, fingerprint, now_ms());
    rec.last_step = Some(step);
    rec.forked_from = Some((run.to_owned(), step));
    rec.graph = graph.name().map(str::to_owned);
    // A fork of a thread is a thread of the same session: its metadata and time to live.
    rec.metadata = source.metadata.clone();
    rec.tenant = source.tenant.clone();
    rec.set_ttl(source.ttl_ms);
    batch.put_run(rec);
    let from = serde_json::json!({ "run": run, "step": step });
    super::audit::put(
        &**store,
        &mut batch,
        new_run,
        caller,
        AuditAction::Forked,
        from,
    );
    store.commit(batch).await?;
    store.flush().await?;
    Ok(())
}
