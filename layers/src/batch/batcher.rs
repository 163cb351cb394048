//! [`Batcher`].

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agentgraph_engine::BoxError;
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, oneshot};

use crate::error::Error;

/// The batch function, type-erased.
type BatchFn<I, O> =
    dyn Fn(Vec<I>) -> BoxFuture<'static, Result<Vec<Result<O, BoxError>>, BoxError>> + Send + Sync;

/// One call waiting in a batch.
struct Entry<I, O> {
    item: I,
    answer: oneshot::Sender<Result<O, BoxError>>,
}

/// A batch being filled.
struct Open<I, O> {
    entries: Mutex<Vec<Entry<I, O>>>,
    /// Told when the batch is full, so that it goes before its window ends.
    full: Notify,
}

struct Shared<I, O> {
    f: Box<BatchFn<I, O>>,
    max_size: usize,
    window: Duration,
    /// The batch new calls join, if one is being filled.
    open: Mutex<Option<Arc<Open<I, O>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only non-panicking code runs under these locks.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Combines concurrent calls into one call of a batch function and hands each call its own
/// result: for services that take many inputs at once (embeddings, bulk lookups, a model
/// server that batches).
///
/// A call ([`call`](Batcher::call)) joins the batch being filled, or starts one. A batch goes
/// to the batch function when it holds `max_size` items, or `window` after its first item
/// came, whichever is first; calls made meanwhile start the next batch. The function gets the
/// items in the order their calls came and returns one result per item, in that order: each
/// call gets its own result, so one item's failure fails only its call. When the function
/// fails as a whole, every call of the batch fails with
/// [`Error::BatchFailed`](crate::Error::BatchFailed), sharing the error; when it returns
/// another number of results, with [`Error::BatchSize`](crate::Error::BatchSize).
///
/// The batch runs on a tokio task of its own: a call that is dropped (its task timed out or
/// was cancelled) does not stop it, and the other calls get their results. A call dropped
/// before its batch goes is left out of the batch; a batch whose calls are all gone is not
/// made.
///
/// The batcher belongs to the value: clones share the batches. Call it from the nodes whose
/// calls should be combined: the tasks of one step run concurrently in
/// [`Mode::Parallel`](agentgraph_engine::Mode::Parallel) (a fan-out of packets is the usual
/// case), so their calls meet in batches; in `Mode::Sequential` each task waits for its batch
/// before the next starts, so every batch holds one call and waits for the window.
///
/// Batching changes what a call does rather than wrapping it, so it is a handle that nodes
/// call rather than a [`Layer`](agentgraph_engine::Layer); the layers of this crate still wrap
/// those nodes as usual.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use std::sync::atomic::{AtomicUsize, Ordering};
/// # use std::time::Duration;
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Docs { #[reducer(append)] lengths: Vec<(String, usize)> }
/// use agentgraph_layers::Batcher;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let batches = Arc::new(AtomicUsize::new(0));
/// let counted = batches.clone();
/// // One request for many texts; `Err` for an item fails only its call.
/// let measure = Batcher::new(16, Duration::from_millis(5), move |texts: Vec<String>| {
///     counted.fetch_add(1, Ordering::Relaxed);
///     async move { Ok(texts.iter().map(|t| Ok(t.len())).collect()) }
/// });
///
/// let mut b = GraphBuilder::<Docs>::new();
/// b.add_node("measure", move |_, ctx: Context| {
///     let measure = measure.clone();
///     async move {
///         let text: String = ctx.input()?;
///         let len = measure.call(text.clone()).await?;
///         Ok(DocsUpdate::new().lengths(vec![(text, len)]))
///     }
/// })
/// .add_conditional_edges(START, ["measure"], |_: &Docs| {
///     Route::packets(["a", "bb", "ccc"].map(|t| Packet::new("measure", &t)))
/// })
/// .add_edge("measure", END);
/// let config = RunConfig::new().mode(Mode::Parallel);
/// let done = b.compile()?.run_with(Docs::default(), config).await?;
/// assert_eq!(done.lengths, [("a".into(), 1), ("bb".into(), 2), ("ccc".into(), 3)]);
/// assert_eq!(batches.load(Ordering::Relaxed), 1); // three calls, one batch
/// # Ok(()) }
/// ```
pub struct Batcher<I, O> {
    shared: Arc<Shared<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            shared: self.shared.clone(),
        }
    }
}

impl<I, O> fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("max_size", &self.shared.max_size)
            .field("window", &self.shared.window)
            .finish_non_exhaustive()
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// A batcher that gives `f` batches of at most `max_size` items (0 is taken as 1),
    /// collected for at most `window` after each batch's first item.
    ///
    /// `f` returns one result per item, in the items' order, or an error for the whole batch.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), agentgraph_engine::BoxError> {
    /// let double = Batcher::new(8, Duration::from_millis(1), |xs: Vec<u32>| async move {
    ///     Ok(xs.into_iter().map(|x| Ok(x * 2)).collect())
    /// });
    /// let (a, b) = tokio::join!(double.call(1), double.call(2));
    /// assert_eq!((a?, b?), (2, 4));
    /// # Ok(()) }
    /// ```
    pub fn new<F, Fut>(max_size: usize, window: Duration, f: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Result<O, BoxError>>, BoxError>> + Send + 'static,
    {
        Batcher {
            shared: Arc::new(Shared {
                f: Box::new(move |items| Box::pin(f(items))),
                max_size: max_size.max(1),
                window,
                open: Mutex::new(None),
            }),
        }
    }

    /// The most items a batch holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::Batcher;
    /// let b = Batcher::new(0, Duration::ZERO, |xs: Vec<u8>| async move {
    ///     Ok(xs.into_iter().map(Ok).collect())
    /// });
    /// assert_eq!(b.max_size(), 1);
    /// ```
    pub fn max_size(&self) -> usize {
        self.shared.max_size
    }

    /// How long a batch waits for more items after its first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::Batcher;
    /// let b = Batcher::new(4, Duration::from_millis(3), |xs: Vec<u8>| async move {
    ///     Ok(xs.into_iter().map(Ok).collect())
    /// });
    /// assert_eq!(b.window(), Duration::from_millis(3));
    /// ```
    pub fn window(&self) -> Duration {
        self.shared.window
    }

    /// Adds `item` to a batch and waits for its result.
    ///
    /// Must be called within a tokio runtime (the batch runs on a task of its own).
    ///
    /// # Errors
    ///
    /// The error the batch function returned for this item; or, for the whole batch,
    /// [`Error::BatchFailed`](crate::Error::BatchFailed),
    /// [`Error::BatchSize`](crate::Error::BatchSize) or
    /// [`Error::BatchLost`](crate::Error::BatchLost) (the function panicked).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agentgraph_layers::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let parse = Batcher::new(8, Duration::from_millis(1), |xs: Vec<&'static str>| async move {
    ///     Ok(xs.into_iter().map(|x| x.parse::<u32>().map_err(Into::into)).collect())
    /// });
    /// let (ok, bad) = tokio::join!(parse.call("7"), parse.call("x"));
    /// assert_eq!(ok.unwrap(), 7);
    /// assert!(bad.is_err()); // only the bad item's call fails
    /// # }
    /// ```
    pub fn call(&self, item: I) -> impl Future<Output = Result<O, BoxError>> + Send + 'static {
        let (answer, rx) = oneshot::channel();
        self.join(Entry { item, answer });
        async move { rx.await.unwrap_or_else(|_| Err(Error::BatchLost.into())) }
    }

    /// Puts `entry` in the open batch, opening one (and its task) if there is none, and sends
    /// the batch off when it is full.
    fn join(&self, entry: Entry<I, O>) {
        let shared = &self.shared;
        let mut open = lock(&shared.open);
        let batch = match &*open {
            Some(batch) => batch.clone(),
            None => {
                let batch = Arc::new(Open {
                    entries: Mutex::new(Vec::with_capacity(shared.max_size.min(1024))),
                    full: Notify::new(),
                });
                *open = Some(batch.clone());
                tokio::spawn(run(shared.clone(), batch.clone()));
                batch
            }
        };
        let len = {
            let mut entries = lock(&batch.entries);
            entries.push(entry);
            entries.len()
        };
        if len >= shared.max_size {
            // Closed to new calls; its task sends it now.
            *open = None;
            batch.full.notify_one();
        }
    }
}

/// A batch's task: waits for the window or for the batch to fill, then calls the batch
/// function and answers each call.
async fn run<I, O>(shared: Arc<Shared<I, O>>, batch: Arc<Open<I, O>>) {
    tokio::select! {
        () = tokio::time::sleep(shared.window) => {}
        () = batch.full.notified() => {}
    }
    {
        let mut open = lock(&shared.open);
        if open.as_ref().is_some_and(|b| Arc::ptr_eq(b, &batch)) {
            *open = None;
        }
    }
    let entries = std::mem::take(&mut *lock(&batch.entries));
    // Calls dropped while they waited are left out.
    let (items, answers): (Vec<I>, Vec<_>) = entries
        .into_iter()
        .filter(|e| !e.answer.is_closed())
        .map(|e| (e.item, e.answer))
        .unzip();
    if items.is_empty() {
        return;
    }
    let calls = items.len();
    match (shared.f)(items).await {
        Ok(results) if results.len() == calls => {
            for (answer, result) in answers.into_iter().zip(results) {
                // A call dropped meanwhile no longer wants its result.
                let _ = answer.send(result);
            }
        }
        Ok(results) => {
            for answer in answers {
                let _ = answer.send(Err(Error::BatchSize {
                    expected: calls,
                    returned: results.len(),
                }
                .into()));
            }
        }
        Err(e) => {
            let source: Arc<dyn std::error::Error + Send + Sync> = Arc::from(e);
            for answer in answers {
                let _ = answer.send(Err(Error::BatchFailed {
                    calls,
                    source: source.clone(),
                }
                .into()));
            }
        }
    }
}
