//! The child process of the worker tests (`tests/worker_processes.rs`): a
//! [`Worker`] on a PostgreSQL schema, with the graph
//! `chain` (nodes `s1` … `s5` in a row) and the graph `fan` (`a`, then `b1`, `b2`, `b3` in
//! parallel, then `c`; `b2` fails its first attempt and is retried, through the queue: its
//! backoff is longer than the worker's `max_inline_backoff`). Each node appends `start KEY` to the effects file, sleeps, then
//! appends `done KEY` (KEY: the run id, the node and the task's idempotency key), so the test counts
//! what ran, and what finished, per task.
//!
//! Arguments: `URL SCHEMA WORKER_ID LEASE_TTL_MS EFFECTS_FILE PAUSE_MS`. It prints `ready`
//! once it runs, `fenced` when one of its runs had a write refused as fenced, and works until
//! its standard input closes (then it shuts down gracefully and exits 0).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentgraph::postgres::worker::Worker;
use agentgraph::postgres::{PostgresOptions, PostgresStore};
use agentgraph::prelude::*;
use agentgraph::run::GraphRegistry;

#[derive(Clone, Default, serde::Serialize, serde::Deserialize, State)]
struct Notes {
    #[reducer(append)]
    notes: Vec<String>,
}

fn effect(path: &PathBuf, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the effects file opens");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("an effect is written");
}

fn node(g: &mut GraphBuilder<Notes>, name: &'static str, effects: &Arc<PathBuf>, pause: Duration) {
    let effects = effects.clone();
    g.add_node(name, move |_, ctx: Context| {
        let effects = effects.clone();
        async move {
            let key = format!("{} {} {}", ctx.run_id(), ctx.node(), ctx.idempotency_key());
            effect(&effects, &format!("start {key}"));
            tokio::time::sleep(pause).await;
            if name == "b2" && ctx.attempt() == 1 {
                return Err::<NotesUpdate, BoxError>("b2 fails its first attempt".into());
            }
            effect(&effects, &format!("done {key}"));
            Ok(NotesUpdate::new().notes(vec![name.to_owned()]))
        }
    });
}

fn registry(effects: PathBuf, pause: Duration) -> GraphRegistry {
    let effects = Arc::new(effects);
    let mut chain = GraphBuilder::<Notes>::new();
    let names = ["s1", "s2", "s3", "s4", "s5"];
    for name in names {
        node(&mut chain, name, &effects, pause);
    }
    chain.add_edge(START, "s1");
    for w in names.windows(2) {
        chain.add_edge(w[0], w[1]);
    }
    chain.add_edge("s5", END);

    let mut fan = GraphBuilder::<Notes>::new();
    for name in ["a", "b1", "b2", "b3", "c"] {
        node(&mut fan, name, &effects, pause);
    }
    fan.add_edge(START, "a")
        .add_edges("a", ["b1", "b2", "b3"])
        .add_join(["b1", "b2", "b3"], "c")
        .add_edge("c", END)
        .retry(
            "b2",
            RetryPolicy::new(3).backoff(Duration::from_millis(10), Duration::from_millis(10)),
        );
    GraphRegistry::new()
        .with("chain", chain.compile().expect("the chain compiles"))
        .with("fan", fan.compile().expect("the fan compiles"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, schema, id, ttl_ms, effects, pause_ms] = &args[..] else {
        eprintln!(
            "worker_child: the child process of the test `tests/worker_processes.rs` of \
             agentgraph-process-tests (arguments: URL SCHEMA WORKER_ID LEASE_TTL_MS EFFECTS_FILE PAUSE_MS); \
             run that test instead"
        );
        return ExitCode::from(2);
    };
    let ttl = Duration::from_millis(ttl_ms.parse().expect("LEASE_TTL_MS is a number"));
    let pause = Duration::from_millis(pause_ms.parse().expect("PAUSE_MS is a number"));
    let registry = registry(PathBuf::from(effects), pause);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let options = PostgresOptions::new(url)
                .and_then(|o| o.with_schema(schema))
                .expect("the URL and schema are valid");
            let store = PostgresStore::connect_with(options)
                .await
                .expect("the worker connects");
            let worker = Worker::new(store, registry, id.clone())
                .concurrency(4)
                .lease_ttl(ttl)
                .poll_interval(Duration::from_millis(50))
                .busy_delay(Duration::from_millis(50))
                .shutdown_timeout(Duration::from_secs(10))
                // `b2`'s retry (10 to 20 ms away) waits in the queue, not on the run's lease.
                .max_inline_backoff(Duration::from_millis(5))
                .run_config(|| RunConfig::new().durability(Durability::Sync));
            let stats = worker.stats();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    if line.is_err() {
                        break;
                    }
                }
                stop.send(()).ok();
            });
            tokio::spawn(async move {
                loop {
                    if stats.fenced() > 0 {
                        println!("fenced");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            println!("ready");
            worker
                .run_until(async {
                    stopped.await.ok();
                })
                .await
                .expect("the worker runs");
            ExitCode::SUCCESS
        })
}
