//! What stored pending writes mean to a resumed run: the commands of finished tasks, and the
//! interrupts a run waits on.

use std::sync::Arc;

use serde_bytes::ByteBuf;

use super::record::{
    CheckpointRecord, GateRecord, PendingOutcome, PendingWriteRecord, RouteRecord,
};
use crate::codec;
use crate::define::route::{Command, Route};
use crate::define::state::State;
use crate::error::{Error, Result};
use crate::ids::TaskId;
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
    Ok(Command { update, goto })
}
