//! Crash safety under SIGKILL. A child process (the binary `crash_child` of this package)
//! runs a checkpointed graph on sled (and, in a second test, on redb) with `Durability::Sync`: rounds of three
//! parallel branches (two async nodes, one CPU node) joined by a tally node that loops back.
//! Every node, when it runs, appends `step,node,task` to a log: the side effect whose
//! repetitions are counted. The parent kills the child with SIGKILL at random instants and
//! starts it again (it resumes the run), many times, and checks after every kill:
//!
//! - the store opens again, and no acknowledged checkpoint is lost: the store's newest checkpoint is
//!   at least the last one the child announced (`CheckpointSaved`, emitted after the flush),
//!   and no durable checkpoint ever disappears;
//! - no node of a durable step runs again, nor a task whose pending write was durable;
//! - every run of a node has the task id of the uninterrupted run (the idempotency key).
//!
//! Every other round's summary is over 64 KiB, so that values the sled store keeps in files of
//! their own are written, replaced and read back across the kills too.
//!
//! When a run completes: its final state equals an uninterrupted run's, every node of that run
//! ran at least once, and the reruns are at most three (the widest step) per kill. Then a new
//! run starts in a new store, until the kills are spent.
//!
//! 50 kills by default. `AGENTGRAPH_CRASH_KILLS=1000` sets the number of kills (the long
//! version); `AGENTGRAPH_CRASH_SEED=<n>` replays the kill instants of a printed seed.

#[path = "../src/crash.rs"]
mod crash;
#[path = "../src/kills.rs"]
mod kills;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentgraph::prelude::*;
use agentgraph_checkpoint::RunStatus;
use crash::*;
use kills::{Draws, env_u64};

/// What the store holds once a child is dead.
#[derive(Debug, Clone, Default)]
struct Durable {
    /// The checkpoint steps, oldest first.
    steps: Vec<u64>,
    /// The nodes of the step after the newest checkpoint whose pending write is stored.
    finished: BTreeSet<String>,
    status: Option<RunStatus>,
    /// The state at the newest checkpoint of a completed run.
    last_state: Option<Tally>,
}

impl Durable {
    fn latest(&self) -> Option<u64> {
        self.steps.last().copied()
    }
}

async fn inspect(dir: &Path, kind: &str) -> Result<Durable, String> {
    let store = open_store(dir, kind)?;
    let history = graph(Effects::Memory(Arc::default())).history(store.clone());
    let Some(record) = history.run(RUN).await.map_err(|e| e.to_string())? else {
        return Ok(Durable::default());
    };
    let checkpoints = history
        .checkpoints(RUN)
        .await
        .map_err(|e| format!("the checkpoints do not read back: {e}"))?;
    let latest = checkpoints
        .last()
        .ok_or("a run record without checkpoints")?;
    // The tasks of the step after the newest checkpoint whose writes are stored (pending
    // writes): `next` lists only the tasks still to run, these are the others.
    let finished: BTreeSet<String> = history
        .pending(RUN)
        .await
        .map_err(|e| format!("the pending writes do not read back: {e}"))?
        .into_iter()
        .map(|task| task.node)
        .collect();
    if let Some(stray) = finished.iter().find(|node| latest.next.contains(node)) {
        return Err(format!(
            "`{stray}` has a stored pending write of step {} but is listed among the tasks to run",
            latest.step + 1
        ));
    }
    let last_state = match record.status {
        RunStatus::Completed => Some(
            history
                .state(RUN, None)
                .await
                .map_err(|e| format!("the final state does not read back: {e}"))?,
        ),
        _ => None,
    };
    Ok(Durable {
        steps: checkpoints.iter().map(|c| c.step).collect(),
        finished,
        status: Some(record.status),
        last_state,
    })
}

/// The lines of a child's log, parsed by `parse`; a missing file is empty.
fn read_lines<T>(path: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(format!("{} ends with a torn line", path.display()));
    }
    text.lines()
        .map(|line| parse(line).ok_or_else(|| format!("{}: bad line {line:?}", path.display())))
        .collect()
}

fn parse_effect(line: &str) -> Option<Effect> {
    let mut parts = line.split(',');
    let effect = Effect {
        step: parts.next()?.parse().ok()?,
        node: parts.next()?.to_owned(),
        task: parts.next()?.to_owned(),
    };
    parts.next().is_none().then_some(effect)
}

/// A step, or "none".
fn shown(step: Option<u64>) -> String {
    step.map_or_else(|| "none".to_owned(), |s| s.to_string())
}

/// Where a check stands, for failure messages.
struct Place {
    seed: u64,
    kills: usize,
    child: usize,
    cycle: usize,
}

impl Place {
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!(
            "seed {} (replay with AGENTGRAPH_CRASH_SEED={}), after kill {}, child {} of run {}: {what}",
            self.seed, self.seed, self.kills, self.child, self.cycle
        )
    }
}

fn spawn_child(dir: &Path, id: usize, kind: &str) -> Child {
    let stderr = fs::File::create(dir.join(format!("child-{id}.err"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_crash_child"))
        .arg(kind)
        .env(CHILD_DIR, dir)
        .env(CHILD_ID, id.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn the child")
}

/// Waits until `child` has started its run (it has created its acknowledgement log `acked`)
/// or has exited.
fn wait_for_start(child: &mut Child, acked: &Path, place: &Place) {
    let started = Instant::now();
    while !acked.exists() && child.try_wait().unwrap().is_none() {
        if started.elapsed() > CHILD_TIMEOUT {
            place.fail(format!(
                "the child did not start its run in {CHILD_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits for `child` to exit by itself.
fn wait_for(child: &mut Child, place: &Place) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            place.fail(format!("the child did not finish in {CHILD_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[derive(Debug, Default)]
struct Totals {
    kills: usize,
    children: usize,
    cycles: usize,
    /// Kills after which the child had neither run a node nor saved a checkpoint.
    idle_kills: usize,
    /// Node runs beyond the uninterrupted runs'.
    reruns: usize,
    /// Kills that left finished tasks of an unfinished step in the store, as pending writes.
    mid_step: usize,
}

#[test]
fn sigkill_at_random_instants_loses_no_acknowledged_step() {
    crash_test("sled");
}

/// The same on the redb store.
#[test]
fn sigkill_at_random_instants_loses_no_acknowledged_step_on_redb() {
    crash_test("redb");
}

fn crash_test(kind: &str) {
    let budget = env_u64("AGENTGRAPH_CRASH_KILLS").unwrap_or(50) as usize;
    assert!(budget > 0, "AGENTGRAPH_CRASH_KILLS must be at least 1");
    let seed = kills::seed("AGENTGRAPH_CRASH_SEED");
    eprintln!(
        "crash test on {kind}: {budget} kills, seed {seed} (AGENTGRAPH_CRASH_SEED={seed} replays)"
    );
    let mut rng = Draws::new(seed);
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // The uninterrupted run, same graph and settings, in memory.
    let runs = Arc::new(Mutex::new(Vec::new()));
    let memory: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let run = graph(Effects::Memory(runs.clone())).run_with(Tally::default(), config(&memory));
    let reference = rt
        .block_on(async { run.await })
        .expect("the uninterrupted run");
    let runs = std::mem::take(&mut *runs.lock().unwrap());
    assert_eq!(reference.rounds, ROUNDS);
    assert_eq!(runs.len(), ROUNDS as usize * (WIDTH + 1));
    let tasks: BTreeMap<(u64, String), String> = runs
        .iter()
        .map(|e| ((e.step, e.node.clone()), e.task.clone()))
        .collect();
    assert_eq!(tasks.len(), runs.len(), "each node runs once per step");

    let root = tempfile::tempdir().unwrap();
    let mut totals = Totals::default();
    while totals.kills < budget {
        totals.cycles += 1;
        let dir = root.path().join(format!("run-{}", totals.cycles));
        fs::create_dir(&dir).unwrap();
        let mut durable = Durable::default();
        let mut acked_before: Option<u64> = None;
        let mut seen: Vec<Effect> = Vec::new();
        let mut cycle_kills = 0;
        loop {
            let id = totals.children;
            totals.children += 1;
            let place = Place {
                seed,
                kills: totals.kills,
                child: id,
                cycle: totals.cycles,
            };
            let mut child = spawn_child(&dir, id, kind);
            let status = if totals.kills < budget {
                if rng.below(4) == 0 {
                    std::thread::sleep(Duration::from_millis(rng.below(START_WINDOW_MS + 1)));
                } else {
                    wait_for_start(&mut child, &dir.join(format!("acked-{id}.log")), &place);
                    std::thread::sleep(Duration::from_millis(rng.below(RUN_WINDOW_MS + 1)));
                }
                // SIGKILL; a child that has already exited is only reaped.
                child.kill().expect("kill the child");
                child.wait().unwrap()
            } else {
                wait_for(&mut child, &place)
            };
            let killed = status.signal() == Some(9);
            if killed {
                totals.kills += 1;
                cycle_kills += 1;
            } else if !status.success() {
                let err = fs::read_to_string(dir.join(format!("child-{id}.err")));
                place.fail(format!(
                    "the child failed ({status}):\n{}",
                    err.unwrap_or_default()
                ));
            }
            let place = Place {
                kills: totals.kills,
                ..place
            };

            let after = rt
                .block_on(inspect(&dir, kind))
                .unwrap_or_else(|e| place.fail(e));
            let effects = read_lines(&dir.join(format!("effects-{id}.log")), parse_effect)
                .unwrap_or_else(|e| place.fail(e));
            let acked = read_lines(&dir.join(format!("acked-{id}.log")), |l| {
                l.parse::<u64>().ok()
            })
            .unwrap_or_else(|e| place.fail(e));
            if killed && effects.is_empty() && acked.is_empty() {
                totals.idle_kills += 1;
            }
            if killed && !after.finished.is_empty() {
                totals.mid_step += 1;
            }

            // Nothing acknowledged or durable is lost.
            if let Some(&top) = acked.iter().max()
                && after.latest().is_none_or(|latest| latest < top)
            {
                place.fail(format!(
                    "checkpoint {top} was acknowledged, but the newest in the store is {}",
                    shown(after.latest())
                ));
            }
            let expected: Vec<u64> = (0..=after.latest().unwrap_or(0)).collect();
            if !after.steps.is_empty() && after.steps != expected {
                place.fail(format!("the checkpoints have gaps: {:?}", after.steps));
            }
            if after.latest() < durable.latest() {
                place.fail(format!(
                    "the newest checkpoint went back from {} to {}",
                    shown(durable.latest()),
                    shown(after.latest())
                ));
            }
            if let Some(&again) = acked.iter().find(|&&s| Some(s) <= durable.latest()) {
                place.fail(format!(
                    "checkpoint {again} was saved again, though checkpoint {} was durable",
                    shown(durable.latest())
                ));
            }

            // No node of a durable step, nor a task with a durable pending write, runs again;
            // every run has the task id of the uninterrupted run.
            let mut once = BTreeSet::new();
            for e in &effects {
                let durable_step = durable.latest().is_some_and(|latest| e.step <= latest);
                let restored = durable.latest().map(|l| l + 1) == Some(e.step)
                    && durable.finished.contains(&e.node);
                if durable_step || restored {
                    place.fail(format!(
                        "`{}` ran again at step {}, though checkpoint {} was durable \
                         (acknowledged: {}) and so were the pending writes of {:?}",
                        e.node,
                        e.step,
                        shown(durable.latest()),
                        shown(acked_before),
                        durable.finished
                    ));
                }
                match tasks.get(&(e.step, e.node.clone())) {
                    Some(task) if *task == e.task => {}
                    Some(task) => place.fail(format!(
                        "`{}` at step {} ran as task {}, the uninterrupted run as {task}",
                        e.node, e.step, e.task
                    )),
                    None => place.fail(format!(
                        "`{}` ran at step {}, which the uninterrupted run never did",
                        e.node, e.step
                    )),
                }
                if !once.insert((e.step, e.node.clone())) {
                    place.fail(format!(
                        "`{}` ran twice at step {} in one process",
                        e.node, e.step
                    ));
                }
            }
            seen.extend(effects);
            acked_before = acked_before.max(acked.iter().max().copied());

            if status.success() && after.status != Some(RunStatus::Completed) {
                place.fail(format!(
                    "the child finished, but the run is {:?}",
                    after.status
                ));
            }
            if status.success() {
                let state = after.last_state.as_ref().expect("a completed run's state");
                if *state != reference {
                    place.fail(format!(
                        "the final state differs from the uninterrupted run's:\n{state:?}\n{reference:?}"
                    ));
                }
                let ran: BTreeSet<(u64, String)> =
                    seen.iter().map(|e| (e.step, e.node.clone())).collect();
                if let Some(missing) = tasks.keys().find(|k| !ran.contains(k)) {
                    place.fail(format!("`{}` never ran at step {}", missing.1, missing.0));
                }
                let reruns = seen.len() - runs.len();
                if reruns > WIDTH * cycle_kills {
                    place.fail(format!(
                        "{reruns} node runs repeated over {cycle_kills} kills: pending writes \
                         should keep it to {WIDTH} per kill"
                    ));
                }
                totals.reruns += reruns;
                break;
            }
            durable = after;
        }
    }
    drop(rt);
    eprintln!(
        "crash test on {kind}: {} kills over {} runs and {} processes ({} before the child ran anything, \
         {} with finished tasks of the step left as pending writes), {} node runs repeated, \
         in {:.1?}",
        totals.kills,
        totals.cycles,
        totals.children,
        totals.idle_kills,
        totals.mid_step,
        totals.reruns,
        started.elapsed()
    );
}
