//! Damage to the large-value files of a sled store (values of 64 KiB or more live in files of
//! their own, under `values/`): a damaged, cut or missing file that the newest checkpoint needs
//! is damage like a damaged checkpoint record, and resuming falls back to the newest intact
//! checkpoint (defect 13).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentgraph_checkpoint::SledStore;
use agentgraph_engine::{
    BoxError, CheckpointStore, CompiledGraph, Context, Durability, END, GraphBuilder, Packet,
    Route, RunConfig, RunStatus, START,
};
use common::{Calls, Trace, TraceUpdate, chain};

/// The size of the value each node writes: over 64 KiB.
const BIG: usize = 70_000;

/// `n0 -> n1 -> n2`, each node setting `last` to a value of [`BIG`] bytes: every checkpoint
/// after the input stores `last` whole, in a value file.
fn graph(calls: &Calls) -> CompiledGraph<Trace> {
    let calls = calls.clone();
    chain(3, move |_, ctx: Context| {
        calls.hit(ctx.node());
        let node = ctx.node().to_owned();
        async move {
            let value = node.repeat(BIG / node.len());
            Ok::<_, BoxError>(TraceUpdate::note(node).count(1).last(value))
        }
    })
}

fn cfg(store: &Arc<dyn CheckpointStore>) -> RunConfig {
    RunConfig::new()
        .store(store.clone())
        .run_id("r")
        .durability(Durability::Sync)
}

/// The newest value file of the store at `dir` (file names are increasing hex ids).
fn newest_value_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("values"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .expect("the store has value files")
}

/// A sled store in a new directory, holding run `r` of `g` failed: `fail` is set for it.
async fn failed_run(
    g: &CompiledGraph<Trace>,
    fail: &AtomicBool,
) -> (tempfile::TempDir, Arc<dyn CheckpointStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    fail.store(true, Ordering::SeqCst);
    g.run_with(Trace::default(), cfg(&store)).await.unwrap_err();
    (dir, store)
}

/// Damages `file`, which holds `bytes`, as `how` says: `"flip"` flips the low bit of the byte
/// at `flip_at`, `"cut"` cuts the file to `cut_to` bytes, anything else deletes it.
fn damage_file(file: &Path, mut bytes: Vec<u8>, how: &str, flip_at: usize, cut_to: usize) {
    match how {
        "flip" => {
            bytes[flip_at] ^= 1;
            std::fs::write(file, bytes).unwrap();
        }
        "cut" => std::fs::write(file, &bytes[..cut_to]).unwrap(),
        _ => std::fs::remove_file(file).unwrap(),
    }
}

/// Every byte of the newest checkpoint's value file flipped (a dense sample of them, see
/// below), the file cut short and the file deleted: each time, resuming falls back to the
/// checkpoint before (running only the last node again) and ends with the right state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_value_file_falls_back_to_the_newest_intact_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    let calls = Calls::default();
    let g = graph(&calls);
    let reference = g.run_with(Trace::default(), cfg(&store)).await.unwrap();
    assert_eq!(reference.count, 3);
    assert_eq!(reference.last.len(), BIG);
    let file = newest_value_file(dir.path());
    let good = std::fs::read(&file).unwrap();
    assert!(good.len() >= 64 * 1024, "{} bytes", good.len());
    // The file holds the newest checkpoint's value of `last`: the bytes `n2` wrote.
    assert!(good.windows(6).any(|w| w == b"n2n2n2"));

    // Every flipped byte would fail the file's checksum alike; resuming once per byte of a
    // 70 KB file takes minutes in a debug build, so the sample is every byte of the first and
    // last 256 (the envelope's header, the record's start, the end) and every 41st between.
    let len = good.len();
    let mut flips: Vec<usize> = (0..256).chain(len - 256..len).collect();
    flips.extend((256..len - 256).step_by(41));
    let mut cases: Vec<(String, Option<Vec<u8>>)> = flips
        .into_iter()
        .map(|at| {
            let mut bytes = good.clone();
            bytes[at] ^= 0x5a;
            (format!("byte {at} flipped"), Some(bytes))
        })
        .collect();
    for cut in [0, 1, 16, len / 2, len - 1] {
        cases.push((format!("cut to {cut} bytes"), Some(good[..cut].to_vec())));
    }
    let mut longer = good.clone();
    longer.push(0);
    cases.push(("one byte longer".to_owned(), Some(longer)));
    cases.push(("deleted".to_owned(), None));

    let history = g.history(store.clone());
    for (what, damaged) in cases {
        // The newest checkpoint's file: a resume writes the last step again, in a new file.
        let file = newest_value_file(dir.path());
        assert_eq!(std::fs::read(&file).unwrap(), good, "{what}");
        match damaged {
            Some(bytes) => std::fs::write(&file, bytes).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        let before = (calls.get("n0"), calls.get("n1"), calls.get("n2"));
        let resumed = g.resume("r", cfg(&store)).await;
        let resumed = resumed.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(resumed == reference, "{what}: the state differs");
        assert_eq!(
            (calls.get("n0"), calls.get("n1"), calls.get("n2")),
            (before.0, before.1, before.2 + 1),
            "{what}: only the last step runs again"
        );
        let run = history.run("r").await.unwrap().unwrap();
        assert_eq!((run.status, run.last_step), (RunStatus::Completed, Some(3)));
        assert!(
            history.state("r", None).await.unwrap() == reference,
            "{what}"
        );
    }
}

/// A damaged value file of a pending write (the large update of a task that finished in a step
/// that failed) is dropped like a damaged pending record: the task runs again on resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_pending_write_file_runs_its_task_again() {
    let calls = Calls::default();
    let fail = Arc::new(AtomicBool::new(true));
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_node("big", move |_, _| {
        c.hit("big");
        async move { Ok::<_, BoxError>(TraceUpdate::new().count(1).last("b".repeat(BIG))) }
    });
    let (c, f) = (calls.clone(), fail.clone());
    b.add_node("flaky", move |_, _| {
        c.hit("flaky");
        let fail = f.load(Ordering::SeqCst);
        async move {
            if fail {
                return Err::<TraceUpdate, BoxError>("the service is down".into());
            }
            Ok(TraceUpdate::new().count(10))
        }
    });
    b.add_edges(START, ["big", "flaky"])
        .add_edge("big", END)
        .add_edge("flaky", END);
    let g = b.compile().unwrap();

    for damage in ["flip", "cut", "delete"] {
        let (dir, store) = failed_run(&g, &fail).await;
        // The only value file: the pending write of `big`.
        let file = newest_value_file(dir.path());
        let bytes = std::fs::read(&file).unwrap();
        let len = bytes.len();
        damage_file(&file, bytes, damage, len / 2, len - 1);
        fail.store(false, Ordering::SeqCst);
        let big = calls.get("big");
        let s = g
            .resume("r", cfg(&store))
            .await
            .unwrap_or_else(|e| panic!("{damage}: {e}"));
        assert_eq!((s.count, s.last.len()), (11, BIG), "{damage}");
        assert_eq!(calls.get("big"), big + 1, "{damage}: `big` runs again");
    }
}

/// A damaged value file of the newest checkpoint's record itself (a record of 64 KiB or more:
/// its next task's packet input is large): reading the run's interrupts and resuming both fall
/// back to the checkpoint before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_checkpoint_record_file_falls_back_too() {
    let calls = Calls::default();
    let fail = Arc::new(AtomicBool::new(true));
    let mut b = GraphBuilder::<Trace>::new();
    let c = calls.clone();
    b.add_node("plan", move |_, _| {
        c.hit("plan");
        async move { Ok::<_, BoxError>(TraceUpdate::note("plan")) }
    });
    let (c, f) = (calls.clone(), fail.clone());
    b.add_node("work", move |_, ctx: Context| {
        c.hit("work");
        let fail = f.load(Ordering::SeqCst);
        async move {
            let input: String = ctx.input()?;
            if fail {
                return Err::<TraceUpdate, BoxError>("the service is down".into());
            }
            Ok(TraceUpdate::new().count(1).last(input))
        }
    });
    b.add_edge(START, "plan")
        .add_conditional_edges("plan", ["work"], |_: &Trace| {
            Route::packets([Packet::new("work", &"w".repeat(BIG))])
        })
        .add_edge("work", END);
    let g = b.compile().unwrap();

    for damage in ["flip", "cut", "delete"] {
        let (dir, store) = failed_run(&g, &fail).await;
        // The only value file: the record of checkpoint 1, whose next task carries the packet.
        let file = newest_value_file(dir.path());
        let bytes = std::fs::read(&file).unwrap();
        let len = bytes.len();
        assert!(len >= BIG, "{len} bytes");
        damage_file(&file, bytes, damage, 7, len / 2);
        let history = g.history(store.clone());
        assert_eq!(history.interrupts("r").await.unwrap(), [], "{damage}");
        fail.store(false, Ordering::SeqCst);
        let plan = calls.get("plan");
        let s = g
            .resume("r", cfg(&store))
            .await
            .unwrap_or_else(|e| panic!("{damage}: {e}"));
        assert_eq!((s.count, s.last.len()), (1, BIG), "{damage}");
        assert_eq!(s.log, ["plan"], "{damage}");
        assert_eq!(calls.get("plan"), plan + 1, "{damage}: `plan` runs again");
    }
}
