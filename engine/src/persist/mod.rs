//! Checkpointing a run to a [`CheckpointStore`], loading it back to resume, and reading what
//! is stored: the one module that knows the on-disk format. Nothing outside it reads or writes
//! a record; a change of the format touches this folder only.
//!
//! After each step the engine commits one atomic batch: the blobs of the fields the step wrote,
//! the checkpoint record, and the deletion of the step's pending writes. A field written by an
//! `overwrite` reducer is stored whole; any other field is stored as the values its updates
//! wrote (deltas), until those add up to more than its last full value, when it is stored whole
//! again (compaction). Cost follows the change, not the size of the state.
//!
//! | file | role |
//! |---|---|
//! | [`record`] | the stored records, with tags of their own (never a public type's) |
//! | [`blob`] | a field's stored values: full values and deltas, and their bookkeeping |
//! | [`persister`] | the writer of one run: its checkpoints, pending writes and end |
//! | [`writer`] | the background group commit of `Durability::Async` |
//! | [`load`] | the loader: the newest intact checkpoint of a run, past damage |
//! | [`pending`] | what pending writes mean: commands, interrupts |
//! | [`restored`] | what a loaded checkpoint restores, in the scheduler's terms |
//! | [`events`] | stored events: their own shape (`stored`), converted to and from `Event` (`convert`) |
//! | [`reader`] | a read-only view of a store's runs, for `StoreInspector` and `GraphHistory` |
//! | [`fork`], [`prune`] | new runs from a checkpoint; pruning and deleting runs |
//! | [`runs`] | run ids: subgraph runs and the ids reserved for them |
//! | [`session`] | a run's metadata and time to live on its record |
//! | [`packing`] | how records are stored: compressed when the run's configuration asks |

pub(crate) mod audit;
pub(crate) mod blob;
pub(crate) mod events;
pub(crate) mod fork;
mod heartbeat;
pub(crate) mod lease;
pub(crate) mod load;
pub(crate) mod packing;
pub(crate) mod pending;
pub(crate) mod persister;
pub(crate) mod prune;
pub(crate) mod reader;
mod record;
mod restored;
pub(crate) mod runs;
pub(crate) mod session;
mod writer;

use std::time::{SystemTime, UNIX_EPOCH};

use agentgraph_checkpoint::envelope::FormatError;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_checkpoint::CheckpointStore;

use crate::codec::CodecError;
use crate::error::{Error, Result};

pub(crate) use audit::answer_details;
pub(crate) use lease::{RunOwnership, SHORT_TTL};
pub(crate) use load::Loaded;
pub(crate) use persister::{Persister, Position, RunSettings, Unfinished};
pub(crate) use restored::{RestoredTask, Standing};
pub(crate) use session::Session;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Takes ownership of `run` in `store` for `ttl` (renewed in the background while the
/// ownership lives): the one place a run's lease is taken (to write it, fork into it, prune or
/// delete it). Write through [`RunOwnership::store`]: it fences every batch with the lease's
/// epoch.
pub(crate) async fn lease(
    store: &Arc<dyn CheckpointStore>,
    run: &str,
    ttl: Duration,
) -> Result<RunOwnership> {
    RunOwnership::acquire(store, run, ttl).await
}

fn encode_error(what: &str, source: CodecError) -> Error {
    Error::Encode {
        what: what.to_owned(),
        source,
    }
}

fn format_encode_error(e: FormatError) -> Error {
    encode_error("a record", CodecError::new(e.to_string()))
}
