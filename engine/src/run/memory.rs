//! [`Memory`]: a node's handle on long-term memory ([`agentgraph_checkpoint::items`]), whose
//! writes commit with the node's step.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentgraph_checkpoint::items::{
    EmbedError, Embedder, Hit, Item, ItemQuery, ItemWrite, Namespace, check_target,
};
use agentgraph_checkpoint::{CheckpointStore, StoreError, TenantId};
use serde::Serialize;

use crate::run::context::Context;

/// Why a [`Memory`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// The run has neither a checkpoint store (`RunConfig::store`) nor a memory store
    /// (`RunConfig::memory`).
    #[error(
        "the run has no memory: give it a checkpoint store (RunConfig::store) or a memory store (RunConfig::memory)"
    )]
    NoStore,
    /// The store keeps no memory items.
    #[error("the run's store keeps no long-term memory items")]
    Unsupported,
    /// The run has no embedder (`RunConfig::embedder`) for a semantic put or search.
    #[error("semantic memory needs an embedder: set one with RunConfig::embedder")]
    NoEmbedder,
    /// The embedder failed, or answered with another number of vectors than texts.
    #[error("the embedder failed: {0}")]
    Embed(#[source] EmbedError),
    /// The value is not representable as JSON.
    #[error("the memory value is not JSON: {0}")]
    Value(#[source] serde_json::Error),
    /// The store refused the read, or the namespace or key ([`StoreError::InvalidItem`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A node's handle on long-term memory: items (JSON values under keys, in namespaces) that
/// outlive the run, shared by every run and thread of the store. Get it with
/// [`Context::memory`].
///
/// **Writes commit with the step.** [`put`](Memory::put) and [`delete`](Memory::delete) are
/// buffered with the task; when the task finishes they are kept with its result (its pending
/// write, so a failing sibling or a crash does not lose them) and committed in the same
/// atomic batch as the step's checkpoint. A failed attempt's writes are dropped with it: a
/// retried or resumed node never doubles nor loses a write. Reads see the committed items
/// plus this task's own buffered writes. A run without a checkpoint store commits the writes
/// to its memory store (`RunConfig::memory`) when the step ends.
///
/// **A tenant's run has the tenant's memory** (`RunConfig::tenant`): the namespaces its nodes
/// name are stored under the tenant's ([`TenantId::scope`]) and read back as named, so two
/// tenants' `users/ann` are two namespaces, and no namespace a node names reaches another
/// tenant's items.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use agentgraph_engine::*;
/// use agentgraph_checkpoint::items::{Namespace, ItemQuery};
/// use agentgraph_checkpoint::MemoryStore;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct Chat { seen: u32 }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut b = GraphBuilder::<Chat>::new();
/// b.add_node("remember", |_, ctx: Context| async move {
///     let memory = ctx.memory();
///     let ns = Namespace::new(["users", "ann"]);
///     let seen = memory.get(&ns, "visits").await?.map_or(0, |i| i.value.as_u64().unwrap_or(0));
///     memory.put(ns, "visits", &(seen + 1))?;
///     Ok(ChatUpdate::new().seen(seen as u32 + 1))
/// })
/// .add_edge(START, "remember")
/// .add_edge("remember", END);
/// let graph = b.compile()?;
/// let store = Arc::new(MemoryStore::new());
/// for run in ["r1", "r2"] {
///     graph.run_with(Chat::default(), RunConfig::new().store(store.clone()).run_id(run)).await?;
/// }
/// let ns = Namespace::new(["users", "ann"]);
/// assert_eq!(store.get_item(&ns, "visits", 0).await?.unwrap().value, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Memory {
    ctx: Context,
}

/// The time now, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Memory {
    pub(crate) fn new(ctx: Context) -> Self {
        Memory { ctx }
    }

    /// The store memory lives in: the run's checkpoint store, or its memory store.
    fn store(&self) -> Result<&Arc<dyn CheckpointStore>, MemoryError> {
        let config = &self.ctx.shared().config;
        let store = config
            .store
            .as_ref()
            .or(config.memory.as_ref())
            .ok_or(MemoryError::NoStore)?;
        if !store.supports_items() {
            return Err(MemoryError::Unsupported);
        }
        Ok(store)
    }

    /// The run's tenant, whose namespace every namespace named here is under.
    fn tenant(&self) -> Option<&TenantId> {
        self.ctx.shared().config.tenant_id()
    }

    /// `namespace` as stored: under the run's tenant's, if it has one.
    fn scope<'n>(&self, namespace: &'n Namespace) -> Cow<'n, Namespace> {
        match self.tenant() {
            Some(t) => Cow::Owned(t.scope(namespace)),
            None => Cow::Borrowed(namespace),
        }
    }

    /// A stored item as the run's nodes see it (its namespace without the tenant's), or
    /// `None` for an item not of the run's tenant.
    fn unscope(&self, mut item: Item) -> Option<Item> {
        if let Some(t) = self.tenant() {
            item.namespace = t.unscope(&item.namespace)?;
        }
        Some(item)
    }

    fn embedder(&self) -> Result<&Arc<dyn Embedder>, MemoryError> {
        self.ctx
            .shared()
            .config
            .embedder
            .as_ref()
            .ok_or(MemoryError::NoEmbedder)
    }

    /// The vectors of `texts`, from the run's embedder.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        let vectors = self
            .embedder()?
            .embed(texts)
            .await
            .map_err(MemoryError::Embed)?;
        if vectors.len() != texts.len() {
            return Err(MemoryError::Embed(
                format!("{} vectors for {} texts", vectors.len(), texts.len()).into(),
            ));
        }
        Ok(vectors)
    }

    /// The item under `key` in `namespace` (this task's own buffered write first), unless
    /// deleted or expired.
    ///
    /// # Errors
    ///
    /// [`MemoryError::NoStore`], [`MemoryError::Unsupported`], [`MemoryError::Store`].
    pub async fn get(&self, namespace: &Namespace, key: &str) -> Result<Option<Item>, MemoryError> {
        let now = now_ms();
        let namespace = &*self.scope(namespace);
        let buffered = self.ctx.with_memory(|writes| {
            writes
                .iter()
                .rev()
                .find(|w| w.target() == (namespace, key))
                .cloned()
        });
        match buffered {
            Some(ItemWrite::Put(item)) => {
                return Ok((!item.is_expired(now))
                    .then_some(item)
                    .and_then(|i| self.unscope(i)));
            }
            Some(_) => return Ok(None),
            None => {}
        }
        let item = self.store()?.get_item(namespace, key, now).await?;
        Ok(item.and_then(|i| self.unscope(i)))
    }

    /// The items `query` finds (its `now_ms` is set to now), with this task's buffered writes
    /// applied on top: its deletes hide items, its puts are found.
    ///
    /// # Errors
    ///
    /// As [`get`](Memory::get).
    pub async fn search(&self, mut query: ItemQuery) -> Result<Vec<Hit>, MemoryError> {
        query.now_ms = now_ms();
        if let Some(t) = self.tenant() {
            query.prefix = t.scope(&query.prefix);
        }
        let hits = self.search_stored(query).await?;
        Ok(hits
            .into_iter()
            .filter_map(|h| {
                let score = h.score;
                self.unscope(h.item).map(|item| Hit::new(item, score))
            })
            .collect())
    }

    /// [`search`](Memory::search) with `query` in stored namespaces.
    async fn search_stored(&self, query: ItemQuery) -> Result<Vec<Hit>, MemoryError> {
        let store = self.store()?;
        let buffered: Vec<ItemWrite> = self.ctx.with_memory(|w| w.clone());
        if buffered.is_empty() {
            return Ok(store.search_items(&query).await?);
        }
        // Enough of the store's items to page over once the buffered writes are applied.
        let mut wide = query.clone();
        wide.offset = 0;
        wide.limit = query
            .offset
            .saturating_add(query.limit)
            .saturating_add(buffered.len());
        let hits = store.search_items(&wide).await?;
        let written = |h: &Hit| {
            buffered
                .iter()
                .any(|w| w.target() == (&h.item.namespace, &h.item.key))
        };
        let mut items: Vec<Item> = hits
            .into_iter()
            .filter(|h| !written(h))
            .map(|h| h.item)
            .collect();
        // The last buffered write of each key.
        for (i, w) in buffered.iter().enumerate() {
            let later = buffered[i + 1..].iter().any(|l| l.target() == w.target());
            if let (ItemWrite::Put(item), false) = (w, later) {
                items.push(item.clone());
            }
        }
        Ok(agentgraph_checkpoint::items::search_in(items, &query))
    }

    /// Items similar to `text` under `prefix` (at most `limit`), through the run's embedder.
    ///
    /// # Errors
    ///
    /// As [`search`](Memory::search); [`MemoryError::NoEmbedder`], [`MemoryError::Embed`].
    pub async fn search_text(
        &self,
        prefix: Namespace,
        text: &str,
        limit: usize,
    ) -> Result<Vec<Hit>, MemoryError> {
        let vector = self.embed(&[text.to_owned()]).await?.remove(0);
        self.search(ItemQuery::new(prefix).vector(vector).limit(limit))
            .await
    }

    /// Buffers a put of `value` under `key` in `namespace`, committed with the step.
    ///
    /// # Errors
    ///
    /// [`MemoryError::Value`] when the value is not JSON; [`MemoryError::Store`] with
    /// [`StoreError::InvalidItem`] for an invalid namespace or key; as [`get`](Memory::get)
    /// when the run has no memory.
    pub fn put<T: Serialize + ?Sized>(
        &self,
        namespace: Namespace,
        key: impl Into<String>,
        value: &T,
    ) -> Result<(), MemoryError> {
        let value = serde_json::to_value(value).map_err(MemoryError::Value)?;
        self.put_item(Item::new(namespace, key, value))
    }

    /// Buffers a put that expires `ttl` from now.
    ///
    /// # Errors
    ///
    /// As [`put`](Memory::put).
    pub fn put_for<T: Serialize + ?Sized>(
        &self,
        namespace: Namespace,
        key: impl Into<String>,
        value: &T,
        ttl: Duration,
    ) -> Result<(), MemoryError> {
        let value = serde_json::to_value(value).map_err(MemoryError::Value)?;
        self.put_item(
            Item::new(namespace, key, value)
                .written_at(now_ms())
                .with_ttl(ttl),
        )
    }

    /// Buffers a put of `value` indexed for semantic search by `text`, embedded now by the
    /// run's embedder (the vector is stored with the item).
    ///
    /// # Errors
    ///
    /// As [`put`](Memory::put); [`MemoryError::NoEmbedder`], [`MemoryError::Embed`].
    pub async fn put_indexed<T: Serialize + ?Sized>(
        &self,
        namespace: Namespace,
        key: impl Into<String>,
        value: &T,
        text: &str,
    ) -> Result<(), MemoryError> {
        let value = serde_json::to_value(value).map_err(MemoryError::Value)?;
        let vector = self.embed(&[text.to_owned()]).await?.remove(0);
        self.put_item(Item::new(namespace, key, value).with_embedding(vector))
    }

    /// Buffers puts of several `(key, value, text)` under `namespace`, their texts embedded
    /// in one call to the embedder.
    ///
    /// # Errors
    ///
    /// As [`put_indexed`](Memory::put_indexed); nothing is buffered on an error.
    pub async fn put_indexed_many(
        &self,
        namespace: &Namespace,
        items: Vec<(String, serde_json::Value, String)>,
    ) -> Result<(), MemoryError> {
        let texts: Vec<String> = items.iter().map(|(_, _, t)| t.clone()).collect();
        let vectors = self.embed(&texts).await?;
        let items: Vec<Item> = items
            .into_iter()
            .zip(vectors)
            .map(|((key, value, _), v)| Item::new(namespace.clone(), key, value).with_embedding(v))
            .collect();
        for item in &items {
            check_target(&item.namespace, &item.key)?;
            check_target(&self.scope(&item.namespace), &item.key)?;
        }
        for item in items {
            self.put_item(item)?;
        }
        Ok(())
    }

    /// Buffers a put of `item` as it is (its time of writing set to now unless set; its
    /// expiry and embedding as given).
    ///
    /// # Errors
    ///
    /// As [`put`](Memory::put).
    pub fn put_item(&self, mut item: Item) -> Result<(), MemoryError> {
        self.store()?;
        check_target(&item.namespace, &item.key)?;
        if let Some(t) = self.tenant() {
            item.namespace = t.scope(&item.namespace);
            check_target(&item.namespace, &item.key)?;
        }
        if item.updated_at_ms == 0 {
            item.updated_at_ms = now_ms();
        }
        self.ctx.with_memory(|w| w.push(ItemWrite::Put(item)));
        Ok(())
    }

    /// Buffers a delete of the item under `key` in `namespace`, committed with the step.
    ///
    /// # Errors
    ///
    /// As [`put`](Memory::put).
    pub fn delete(&self, namespace: &Namespace, key: &str) -> Result<(), MemoryError> {
        self.store()?;
        check_target(namespace, key)?;
        let namespace = &*self.scope(namespace);
        check_target(namespace, key)?;
        self.ctx.with_memory(|w| {
            w.push(ItemWrite::Delete {
                namespace: namespace.clone(),
                key: key.to_owned(),
            })
        });
        Ok(())
    }
}
