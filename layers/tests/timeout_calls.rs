//! `TimeoutLayer`: a call over the limit fails with `TimedOut` after its future was dropped;
//! calls under it pass through; it works where the graph's own timeout does not reach (a
//! fallback), and a retry policy can retry it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use agentgraph_engine::{
    BoxError, Context, END, Error as EngineError, GraphBuilder, Layer, Node, NodeBuilder,
    NodeFuture, RetryPolicy, START, async_node,
};
use agentgraph_layers::{FallbackLayer, TimedOut, TimeoutLayer};
use common::{Tally, TallyUpdate};

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A node that sleeps `delay` while holding a [`DropFlag`].
fn sleeper(delay: Duration, dropped: Arc<AtomicBool>) -> impl Node<Tally> {
    async_node(move |_: Arc<Tally>, _| {
        let flag = DropFlag(dropped.clone());
        async move {
            tokio::time::sleep(delay).await;
            drop(flag);
            Ok(TallyUpdate::note("done"))
        }
    })
}

/// Checks, when the wrapped node's call ends with an error, that the flag is set already.
struct AssertDroppedFirst<N> {
    inner: N,
    dropped: Arc<AtomicBool>,
    checked: Arc<AtomicUsize>,
}

impl<N: Node<Tally>> Node<Tally> for AssertDroppedFirst<N> {
    fn call(&self, state: Arc<Tally>, ctx: Context) -> NodeFuture<Tally> {
        let call = self.inner.call(state, ctx);
        let (dropped, checked) = (self.dropped.clone(), self.checked.clone());
        Box::pin(async move {
            let result = call.await;
            if result.is_err() {
                assert!(
                    dropped.load(Ordering::SeqCst),
                    "the inner call is dropped first"
                );
                checked.fetch_add(1, Ordering::SeqCst);
            }
            result
        })
    }
}

fn graph_of(node: impl Node<Tally>) -> agentgraph_engine::CompiledGraph<Tally> {
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", node)
        .add_edge(START, "call")
        .add_edge("call", END);
    b.compile().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_call_over_the_limit_is_dropped_then_fails_with_timed_out() {
    let dropped = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    let node = AssertDroppedFirst {
        inner: TimeoutLayer::new(Duration::from_secs(2))
            .layer(sleeper(Duration::from_secs(60), dropped.clone())),
        dropped: dropped.clone(),
        checked: checked.clone(),
    };
    let started = tokio::time::Instant::now();
    match graph_of(node).invoke(Tally::default()).await {
        Err(EngineError::NodeFailed { source, .. }) => {
            let e = source.downcast_ref::<TimedOut>().expect("a TimedOut");
            assert_eq!(e, &TimedOut::new("call", Duration::from_secs(2)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(checked.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_under_the_limit_passes_through() {
    let dropped = Arc::new(AtomicBool::new(false));
    let node = TimeoutLayer::new(Duration::from_secs(2))
        .layer(sleeper(Duration::from_secs(1), dropped.clone()));
    let done = graph_of(node).invoke(Tally::default()).await.unwrap();
    assert_eq!(done.log, ["done"]);
}

#[tokio::test(start_paused = true)]
async fn it_limits_a_fallback_which_the_graphs_timeout_does_not_see_alone() {
    // The graph's timeout covers the whole task (30 s); the fallback gets 2 s of it.
    let dropped = Arc::new(AtomicBool::new(false));
    let hanging_backup = NodeBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .node(sleeper(Duration::from_secs(3600), dropped.clone()));
    let primary =
        async_node(|_: Arc<Tally>, _| async { Err::<TallyUpdate, BoxError>("down".into()) });
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", FallbackLayer::new(hanging_backup).layer(primary))
        .timeout("call", Duration::from_secs(30))
        .add_edge(START, "call")
        .add_edge("call", END);
    let started = tokio::time::Instant::now();
    match b.compile().unwrap().invoke(Tally::default()).await {
        Err(EngineError::NodeFailed { source, .. }) => assert!(source.is::<TimedOut>(), "{source}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_retry_policy_can_retry_it() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    // Hangs on the first attempt, answers at once on the second.
    let node = TimeoutLayer::new(Duration::from_secs(1)).layer(async_node(
        move |_: Arc<Tally>, ctx: Context| {
            a.fetch_add(1, Ordering::SeqCst);
            async move {
                if ctx.attempt() == 1 {
                    std::future::pending::<()>().await;
                }
                Ok(TallyUpdate::note(format!("attempt {}", ctx.attempt())))
            }
        },
    ));
    let mut b = GraphBuilder::<Tally>::new();
    b.add_node_with("call", node)
        .retry(
            "call",
            RetryPolicy::new(2)
                .backoff(Duration::from_millis(10), Duration::from_millis(10))
                .retry_if(|e| e.is::<TimedOut>()),
        )
        .add_edge(START, "call")
        .add_edge("call", END);
    let done = b.compile().unwrap().invoke(Tally::default()).await.unwrap();
    assert_eq!(done.log, ["attempt 2"]);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}
