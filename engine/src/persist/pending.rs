//! What stored pending writes mean to a resumed run: the commands of finished tasks, and the
//! interrupts a run waits on.

use std::sync::Arc;

use serde_bytes::ByteBuf;

use std::borrow::Cow;

use super::record::{
    CheckpointRecord, GateRecord, PendingOutcome, PendingWriteRecord, RouteRecord, TaskRecord,
};
use crate::codec;
use crate::define::route::{Command, Route};
use crate::define::state::State;
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::inspect::pending::{PendingStatus, PendingTask};
use crate::run::interrupt::{Interrupt, InterruptKind};

/// The interrupt of a stored gate.
fn gate_interrupt(gate: &GateRecord, kind: InterruptKind, step: u64) -> Interrupt {
    Interrupt::at_gate(gate.node.clone(), TaskId::from_u128(gate.task), kind, step)
}

/// The interrupts a run loaded from `record` and its `pending` records waits on, each with the
/// index of its pending record: the `interrupt_after` gates of the checkpoint (with `gates`,
/// and only while the next step has no record: a step that began has passed them), then what
/// tasks raised (gates before their node, their node's `interrupt` calls, their subgraph's
/// interrupts).
pub(super) fn pending_interrupts(
    record: &CheckpointRecord,
    pending: &[(u32, PendingWriteRecord)],
    gates: bool,
) -> Vec<(Interrupt, Option<usize>)> {
    let mut out: Vec<(Interrupt, Option<usize>)> = Vec::new();
    if gates && pending.is_empty() {
        out.extend(
            record
                .interrupts
                .iter()
                .map(|g| (gate_interrupt(g, InterruptKind::After, record.step), None)),
        );
    }
    for (at, (_, p)) in pending.iter().enumerate() {
        if let PendingOutcome::Interrupted { raised, .. } = &p.outcome {
            out.extend(raised.iter().map(|r| (Interrupt::from_record(r), Some(at))));
        }
    }
    out
}

/// The record of a go-to.
pub(super) fn route_record(route: &Route) -> RouteRecord {
    RouteRecord {
        targets: route.targets.iter().map(|t| t.to_string()).collect(),
        packets: route
            .packets
            .iter()
            .map(|p| {
                (
                    p.node.to_string(),
                    ByteBuf::from(p.input.as_deref().map(<[u8]>::to_vec).unwrap_or_default()),
                )
            })
            .collect(),
    }
}

/// The handler and encoded failure of a command that is a caught failure (its go-to is the
/// error edge's route).
pub(super) fn caught_failure<S: State>(cmd: &Command<S>) -> Option<(String, Vec<u8>)> {
    let route = cmd.goto.as_ref().filter(|r| r.caught)?;
    let packet = route.packets.first()?;
    let input = packet.input.as_deref().ok()?;
    Some((packet.node.to_string(), input.to_vec()))
}

/// The command of a caught failure: no update, a route of one packet to the handler.
pub(super) fn caught_command<S: State>(handler: &str, failure: &[u8]) -> Command<S> {
    Command {
        memory: Vec::new(),
        update: S::Update::default(),
        goto: Some(Route {
            targets: Vec::new(),
            packets: vec![crate::define::route::Packet {
                node: handler.to_owned().into(),
                input: Ok(Arc::from(failure)),
            }],
            caught: true,
            failed: None,
        }),
    }
}

/// The command a pending write recorded.
pub(super) fn command_from<S: State>(
    run: &str,
    node: &str,
    update: &[u8],
    goto: Option<&RouteRecord>,
) -> Result<Command<S>> {
    let update: S::Update = codec::decode(update).map_err(|e| Error::Corrupt {
        run: run.to_owned(),
        reason: format!("the pending write of `{node}` does not decode: {e}"),
    })?;
    let goto = goto.map(|r| Route {
        caught: false,
        failed: None,
        targets: r.targets.iter().map(|t| t.clone().into()).collect(),
        packets: r
            .packets
            .iter()
            .map(|(node, input)| crate::define::route::Packet {
                node: node.clone().into(),
                input: Ok(Arc::from(input.as_slice())),
            })
            .collect(),
    });
    Ok(Command {
        update,
        goto,
        memory: Vec::new(),
    })
}

/// The view of a pending write of `step`: `written` names the fields of a finished task's
/// update (`None` when the state type is not known).
pub(super) fn pending_task(
    step: u64,
    record: &PendingWriteRecord,
    written: Option<Vec<Cow<'static, str>>>,
) -> PendingTask {
    let (status, error, retry_at_ms, interrupts) = match &record.outcome {
        PendingOutcome::Done { .. }
        | PendingOutcome::DoneWithMemory { .. }
        | PendingOutcome::Caught { .. } => (PendingStatus::Done, None, None, Vec::new()),
        PendingOutcome::Retrying {
            error, retry_at_ms, ..
        } => (
            PendingStatus::Retrying,
            Some(error.clone()),
            Some(*retry_at_ms),
            Vec::new(),
        ),
        PendingOutcome::Failed { error } => {
            (PendingStatus::Failed, Some(error.clone()), None, Vec::new())
        }
        PendingOutcome::Interrupted { raised, .. } => (
            PendingStatus::Interrupted,
            None,
            None,
            raised.iter().map(|r| r.id.clone()).collect(),
        ),
        PendingOutcome::OverBudget { .. } => (PendingStatus::OverBudget, None, None, Vec::new()),
    };
    PendingTask {
        step,
        node: record.node.clone(),
        task: TaskId::from_u128(record.task),
        attempts: record.attempts,
        status,
        written: written.filter(|_| status == PendingStatus::Done),
        error,
        retry_at_ms,
        interrupts,
    }
}

/// The names of the fields a finished task's stored update writes (none for another
/// outcome); [`Error::Corrupt`] if the update does not decode as an `S::Update`.
pub(super) fn written_fields<S: State>(
    run: &str,
    record: &PendingWriteRecord,
    schema: &S::Schema,
) -> Result<Option<Vec<Cow<'static, str>>>> {
    let (update, goto) = match &record.outcome {
        PendingOutcome::Done { update, goto }
        | PendingOutcome::DoneWithMemory { update, goto, .. } => (update, goto),
        // A caught failure writes nothing.
        PendingOutcome::Caught { .. } => return Ok(Some(Vec::new())),
        _ => return Ok(None),
    };
    let cmd = command_from::<S>(run, &record.node, update, goto.as_ref())?;
    let mut names = Vec::new();
    S::for_each_written(&cmd.update, |f| {
        names.push(Cow::Borrowed(S::fields(schema)[f].name))
    });
    Ok(Some(names))
}

/// Splits the tasks of a checkpoint's next step into those that will run and those that
/// finished (a `Done` pending write), by node name, each in the step's order. A pending
/// write's index is its task's position in the step, which is its entry's in `next`; an
/// entry of another node there (a record from another build) is matched by name instead.
pub(super) fn split_next(
    next: &[TaskRecord],
    pending: &[(u32, PendingWriteRecord)],
) -> (Vec<String>, Vec<String>) {
    let mut done = vec![false; next.len()];
    for (index, p) in pending {
        if !matches!(
            p.outcome,
            PendingOutcome::Done { .. }
                | PendingOutcome::DoneWithMemory { .. }
                | PendingOutcome::Caught { .. }
        ) {
            continue;
        }
        let at = usize::try_from(*index)
            .ok()
            .filter(|&i| next.get(i).is_some_and(|t| t.node == p.node) && !done[i])
            .or_else(|| (0..next.len()).find(|&i| !done[i] && next[i].node == p.node));
        if let Some(i) = at {
            done[i] = true;
        }
    }
    let (mut will_run, mut finished) = (Vec::new(), Vec::new());
    for (t, done) in next.iter().zip(done) {
        if done {
            finished.push(t.node.clone());
        } else {
            will_run.push(t.node.clone());
        }
    }
    (will_run, finished)
}

/// The totals `total` of a checkpoint, with what its next step used before a budget refused
/// one of its tasks (its `OverBudget` records): the step's finished tasks do not run again, so
/// what they used still counts. Steps are not taken from them: the step counts as it runs
/// again.
pub(super) fn with_refused_step(
    mut total: crate::run::budget::BudgetUsage,
    pending: &[(u32, PendingWriteRecord)],
) -> crate::run::budget::BudgetUsage {
    for (_, p) in pending {
        if let PendingOutcome::OverBudget { used, .. } = &p.outcome {
            total.tokens = total.tokens.max(used.tokens);
            total.cost_nanos = total.cost_nanos.max(used.cost_nanos);
            total.tool_calls = total.tool_calls.max(used.tool_calls);
            total.wall_ms = total.wall_ms.max(used.wall_ms);
        }
    }
    total
}
