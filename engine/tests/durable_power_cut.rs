//! Real runs on the redb store through a power cut: a simulated disk
//! (`checkpoint/tests/support/power_cut.rs`) loses every write that was not synced (or, torn,
//! keeps a random subset of its sectors) when its power goes, at each operation of a
//! run with `Durability::Sync`. The store opens on what survived, its newest checkpoint is at
//! least the last one the run acknowledged (`CheckpointSaved`, emitted after the flush), and
//! resuming the run finishes it with the state of an uninterrupted run, without running
//! again a node of an acknowledged step.

#[path = "../../checkpoint/tests/support/power_cut.rs"]
mod power_cut;

mod common;

use std::sync::{Arc, Mutex};

use agentgraph_checkpoint::RedbStore;
use agentgraph_engine::{CheckpointStore, Durability, EventKind, RunConfig};
use common::{Trace, TraceUpdate, chain};
use futures_util::StreamExt;
use power_cut::Disk;

const RUN: &str = "power";
const LEN: usize = 12;

/// The chain, recording the step of every node run in `ran`; every third step writes a
/// large value.
fn graph(ran: &Arc<Mutex<Vec<u64>>>) -> agentgraph_engine::CompiledGraph<Trace> {
    let ran = ran.clone();
    chain(LEN, move |_, ctx| {
        ran.lock().unwrap().push(ctx.step());
        let step = ctx.step();
        async move {
            let mut note = step.to_string();
            if step % 3 == 2 {
                note.push_str(&"~".repeat(30_000));
            }
            Ok(TraceUpdate::note(note).count(1))
        }
    })
}

fn config(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id(RUN)
        .durability(Durability::Sync)
}

/// Runs the chain on a store whose disk loses power after `ops` operations; returns the
/// last step acknowledged, the run's result, and the disk.
async fn run_until_cut(ops: Option<u64>) -> (Option<u64>, bool, Disk) {
    let disk = Disk::default();
    let store: Arc<dyn CheckpointStore> =
        Arc::new(RedbStore::with_backend(disk.backend()).unwrap());
    disk.cut_after(ops.unwrap_or(u64::MAX));
    let ran = Arc::default();
    let run = graph(&ran).run_with(Trace::default(), config(&store));
    let mut events = run.events();
    let acks = tokio::spawn(async move {
        let mut acked = None;
        while let Some(event) = events.next().await {
            if let Ok(event) = event
                && let EventKind::CheckpointSaved { step, .. } = event.kind
            {
                acked = acked.max(Some(step));
            }
        }
        acked
    });
    let finished = run.await.is_ok();
    let acked = acks.await.unwrap();
    (acked, finished, disk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_steps_survive_a_power_cut_and_the_run_resumes() {
    let reference = graph(&Arc::default())
        .invoke(Trace::default())
        .await
        .unwrap();
    let (acked, finished, disk) = run_until_cut(None).await;
    assert!(finished && acked.is_some());
    let total = disk.ops();
    let mut cuts = 0;
    let mut resumed_mid_run = 0;
    // At every operation, plain and torn.
    for ops in 0..total {
        for torn in [None, Some(ops.wrapping_mul(0x9e37_79b9) | 1)] {
            let (acked, finished, disk) = run_until_cut(Some(ops)).await;
            if finished {
                continue;
            }
            cuts += 1;
            let disk = Disk::with(disk.survivors(torn));
            let store: Arc<dyn CheckpointStore> =
                Arc::new(RedbStore::with_backend(disk.backend()).unwrap_or_else(|e| {
                    panic!("cut at {ops} (torn {torn:?}): the store does not open: {e}")
                }));
            let latest = store.latest_checkpoint(RUN).await.unwrap().map(|(s, _)| s);
            if let Some(acked) = acked {
                assert!(
                    latest >= Some(acked),
                    "cut at {ops} (torn {torn:?}): step {acked} was acknowledged, the newest checkpoint is {latest:?}"
                );
            }
            let Some(latest) = latest else {
                continue; // nothing durable: the run starts again from its input
            };
            resumed_mid_run += 1;
            let ran = Arc::default();
            let state = graph(&ran)
                .resume(RUN, config(&store))
                .await
                .unwrap_or_else(|e| panic!("cut at {ops} (torn {torn:?}): the resume fails: {e}"));
            assert_eq!(state, reference, "cut at {ops} (torn {torn:?})");
            let again: Vec<u64> = ran
                .lock()
                .unwrap()
                .iter()
                .copied()
                .filter(|s| *s <= latest)
                .collect();
            assert!(
                again.is_empty(),
                "cut at {ops} (torn {torn:?}): steps {again:?} ran again, though checkpoint {latest} was durable"
            );
        }
    }
    eprintln!(
        "{cuts} power cuts over {total} operations of the run, {resumed_mid_run} resumed from a checkpoint"
    );
    assert!(cuts > 100, "{cuts} cuts");
    assert!(resumed_mid_run > 50, "{resumed_mid_run} resumed mid-run");
}
