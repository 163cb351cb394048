//! The loader: a run's newest intact checkpoint, its state and pending writes.
//!
//! Damage found while loading, whether a record that fails its checksum or a value the store
//! cannot read back intact (`StoreError::Corrupt`: a damaged, cut or missing value file), makes
//! the loader fall back to the newest older checkpoint that is intact; a damaged pending write
//! is dropped (its task runs again). A record that is intact but of another format version,
//! codec or state type stops the load instead: falling back would re-run steps another build
//! already ran.

use agentgraph_checkpoint::envelope::{self, FormatError, RecordKind};
use agentgraph_checkpoint::{CheckpointStore, RunRecord, StoreError};

use super::blob::FieldTrack;
use super::pending::pending_interrupts;
use super::record::{BlobRecord, CheckpointRecord, PendingOutcome, PendingWriteRecord};
use crate::codec::CodecError;
use crate::define::migrate::{MigrationError, Migrations, decode_stored};
use crate::define::state::State;
use crate::error::{Error, Result};
use crate::run::interrupt::Interrupt;

/// A run loaded from its newest intact checkpoint.
pub(crate) struct Loaded<S> {
    pub(crate) state: S,
    pub(super) record: CheckpointRecord,
    pub(crate) run: RunRecord,
    /// Pending writes of the step after the checkpoint, by task index.
    pub(super) pending: Vec<(u32, PendingWriteRecord)>,
    /// Whether newer checkpoints were damaged and skipped.
    pub(super) fell_back: bool,
    pub(super) fields: Vec<FieldTrack>,
}

impl<S> Loaded<S> {
    /// The step of the checkpoint.
    pub(crate) fn step(&self) -> u64 {
        self.record.step
    }

    /// What the run used by the checkpoint: its totals, and the totals its invocation began
    /// with (nothing for a checkpoint written before usage was stored).
    pub(crate) fn usage(
        &self,
    ) -> (
        crate::run::budget::BudgetUsage,
        crate::run::budget::BudgetUsage,
    ) {
        let (total, base) = self
            .record
            .usage
            .map(|u| (u.total.into(), u.base.into()))
            .unwrap_or_default();
        (
            super::pending::with_refused_step(total, &self.pending),
            base,
        )
    }

    /// The invocation (the thread's turn, from 1) the checkpoint belongs to.
    pub(crate) fn invocation(&self) -> u32 {
        self.record.invocation
    }

    /// Whether the run rests between invocations: its checkpoint has no task left to run,
    /// held or waiting at a gate, and no task of a next step left a result or a failure.
    pub(crate) fn at_rest(&self) -> bool {
        let r = &self.record;
        r.next.is_empty()
            && r.deferred.is_empty()
            && r.interrupts.is_empty()
            && self.pending.is_empty()
    }

    /// Whether the run failed and compensated its failure in full: its saga ran every
    /// compensation, so nothing is left to resume.
    pub(crate) fn compensated(&self) -> bool {
        self.record
            .saga
            .as_ref()
            .and_then(|s| s.compensating.as_ref())
            .is_some_and(|c| c.remaining.is_empty())
    }

    /// The sequence number of the run's next event, as the checkpoint stored it.
    pub(crate) fn next_event(&self) -> u64 {
        self.record.events
    }

    /// The interrupts the run waits on, each with the index of the pending record of the task
    /// that raised it (none for an `interrupt_after` gate of the checkpoint).
    pub(crate) fn waiting(&self) -> Vec<(Interrupt, Option<usize>)> {
        pending_interrupts(&self.record, &self.pending, true)
    }

    /// Gives the answer `value` to the interrupt `id`, raised by the task of pending record
    /// `at` (an index from [`Loaded::waiting`]); false (nothing given) if that task is not
    /// waiting at interrupts.
    pub(crate) fn answer(&mut self, at: usize, id: String, value: String) -> bool {
        let PendingOutcome::Interrupted { answers, .. } = &mut self.pending[at].1.outcome else {
            return false;
        };
        answers.retain(|(i, _)| *i != id);
        answers.push((id, value));
        true
    }
}

/// Loads the newest checkpoint of `run` whose record and blobs are intact, falling back to
/// older ones past damage.
pub(crate) async fn load<S: State>(
    store: &dyn CheckpointStore,
    run: &str,
    schema: &S::Schema,
    migrations: &Migrations<S>,
) -> Result<Loaded<S>> {
    let Some(run_record) = store.get_run(run).await? else {
        return Err(Error::RunNotFound(run.to_owned()));
    };
    let mut candidates = Candidates::new(store, run, run_record.last_step).await?;
    while let Some(step) = candidates.next().await? {
        match load_at::<S>(store, run, step, schema, migrations).await {
            Ok((state, record, fields)) => {
                let fell_back = candidates.fell_back();
                let pending = if fell_back {
                    // Past damage, the later timeline is not trusted: its writes are dropped.
                    Vec::new()
                } else {
                    let mut pending = load_pending(store, run, step + 1).await?;
                    upgrade_pending::<S>(run, &record, schema, migrations, &mut pending)?;
                    pending
                };
                return Ok(Loaded {
                    state,
                    record,
                    run: run_record,
                    pending,
                    fell_back,
                    fields,
                });
            }
            Err(LoadError::Damaged(reason)) => candidates.damaged(reason),
            Err(LoadError::Fatal(e)) => return Err(e),
        }
    }
    Err(candidates.exhausted())
}

/// The newest checkpoint record of `run` that is intact (resume falls back past a damaged
/// newest one the same way), with the run's record.
pub(super) async fn newest_record(
    store: &dyn CheckpointStore,
    run: &str,
) -> Result<(RunRecord, CheckpointRecord)> {
    let Some(run_record) = store.get_run(run).await? else {
        return Err(Error::RunNotFound(run.to_owned()));
    };
    let mut candidates = Candidates::new(store, run, run_record.last_step).await?;
    while let Some(step) = candidates.next().await? {
        let read = match store.get_checkpoint(run, step).await {
            Ok(Some(bytes)) => CheckpointRecord::decode(&bytes)
                .map_err(|e| LoadError::from_format(run, format!("checkpoint {step}"), e)),
            Ok(None) => Err(LoadError::Damaged(format!("checkpoint {step} vanished"))),
            Err(e) => Err(e.into()),
        };
        match read {
            Ok(record) => return Ok((run_record, record)),
            Err(LoadError::Damaged(reason)) => candidates.damaged(reason),
            Err(LoadError::Fatal(e)) => return Err(e),
        }
    }
    Err(candidates.exhausted())
}

/// The checkpoints of a run to load, newest first: the newest alone (it is almost always
/// intact: the others are not listed for it), then, once something was damaged, the older ones.
struct Candidates<'a> {
    store: &'a dyn CheckpointStore,
    run: &'a str,
    /// The run record's last step.
    last_step: Option<u64>,
    /// The newest checkpoint's step, unless even its listing was damaged.
    newest: Option<u64>,
    /// The steps still to try, oldest first.
    steps: Vec<u64>,
    listed: bool,
    /// The first damage found.
    problem: Option<String>,
}

impl<'a> Candidates<'a> {
    async fn new(
        store: &'a dyn CheckpointStore,
        run: &'a str,
        last_step: Option<u64>,
    ) -> Result<Self> {
        let mut c = Candidates {
            store,
            run,
            last_step,
            newest: None,
            steps: Vec::new(),
            listed: false,
            problem: None,
        };
        match store.latest_checkpoint(run).await {
            Ok(Some((newest, _))) => {
                c.newest = Some(newest);
                c.steps.push(newest);
            }
            Ok(None) => {
                return Err(Error::Corrupt {
                    run: run.to_owned(),
                    reason: "it has no checkpoint".to_owned(),
                });
            }
            // Its record is unreadable: every checkpoint up to the run's last step is a
            // candidate.
            Err(e @ StoreError::Corrupt { .. }) => c.damaged(e.to_string()),
            Err(e) => return Err(e.into()),
        }
        Ok(c)
    }

    /// The next step to try.
    async fn next(&mut self) -> Result<Option<u64>> {
        if self.problem.is_some() && !self.listed {
            self.listed = true;
            self.steps = steps_before(self.store, self.run, self.newest, self.last_step).await?;
        }
        Ok(self.steps.pop())
    }

    /// The step last tried is damaged.
    fn damaged(&mut self, reason: String) {
        self.problem.get_or_insert(reason);
    }

    /// Whether a newer checkpoint was damaged.
    fn fell_back(&self) -> bool {
        self.problem.is_some()
    }

    /// The error when no checkpoint is intact.
    fn exhausted(self) -> Error {
        Error::Corrupt {
            run: self.run.to_owned(),
            reason: self
                .problem
                .unwrap_or_else(|| "it has no checkpoint".to_owned()),
        }
    }
}

/// The steps of `run`'s checkpoints before `before` (all of them for `None`), oldest first.
/// When a checkpoint cannot be listed (a damaged value), every step up to `before` (or the
/// run's `last_step`) is given, and those that do not exist are passed over as damaged.
async fn steps_before(
    store: &dyn CheckpointStore,
    run: &str,
    before: Option<u64>,
    last_step: Option<u64>,
) -> Result<Vec<u64>> {
    let mut steps = Vec::new();
    let mut after = None;
    loop {
        let page = match store.list_checkpoints(run, after, 1024).await {
            Ok(page) => page,
            Err(StoreError::Corrupt { .. }) => {
                let Some(top) = before.map(|b| b.checked_sub(1)).unwrap_or(last_step) else {
                    return Ok(Vec::new());
                };
                return Ok((0..=top).collect());
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        steps.extend(
            page.iter()
                .map(|(s, _)| *s)
                .filter(|s| before.is_none_or(|b| *s < b)),
        );
    }
    Ok(steps)
}

enum LoadError {
    /// This checkpoint is damaged; an older one may do.
    Damaged(String),
    Fatal(Error),
}

impl LoadError {
    /// Damage (a checksum mismatch, a truncated, cut or overwritten record) lets an older
    /// checkpoint serve; a record that is intact but newer, of another codec or another shape
    /// stops the resume: falling back would re-run steps another build already ran.
    fn from_format(run: &str, what: String, e: FormatError) -> Self {
        match e {
            FormatError::Truncated { .. }
            | FormatError::Checksum { .. }
            | FormatError::Foreign { .. }
            | FormatError::TrailingBytes { .. }
            | FormatError::TooLarge(_) => LoadError::Damaged(format!("{what}: {e}")),
            _ => LoadError::Fatal(Error::Incompatible {
                run: run.to_owned(),
                reason: format!("{what}: {e}"),
            }),
        }
    }
}

impl From<StoreError> for LoadError {
    /// A value the store cannot read back intact is damage, as a damaged record is.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt { .. } => LoadError::Damaged(e.to_string()),
            e => LoadError::Fatal(e.into()),
        }
    }
}

/// The state and record of the checkpoint of `run` at `step`.
async fn load_at<S: State>(
    store: &dyn CheckpointStore,
    run: &str,
    step: u64,
    schema: &S::Schema,
    migrations: &Migrations<S>,
) -> std::result::Result<(S, CheckpointRecord, Vec<FieldTrack>), LoadError> {
    let Some(bytes) = store.get_checkpoint(run, step).await? else {
        return Err(LoadError::Damaged(format!("checkpoint {step} vanished")));
    };
    let record = CheckpointRecord::decode(&bytes)
        .map_err(|e| LoadError::from_format(run, format!("checkpoint {step}"), e))?;
    // The fields as the version that stored them has them: a later version's may differ.
    let fields = stored_fields::<S>(run, &record, schema, migrations).map_err(LoadError::Fatal)?;
    // Fewer stored fields than the type has: fields added at the end since, read with their
    // defaults (`decode_stored`); more: fields removed, which only a new version can say.
    if record.bases.len() > fields.len() {
        return Err(LoadError::Fatal(Error::Incompatible {
            run: run.to_owned(),
            reason: format!(
                "checkpoint {step} has {} fields, the state type {}",
                record.bases.len(),
                fields.len()
            ),
        }));
    }
    let mut fulls = Vec::with_capacity(fields.len());
    let mut deltas = Vec::with_capacity(fields.len());
    let mut tracks = Vec::with_capacity(fields.len());
    for (f, base) in record.bases.iter().enumerate() {
        let name = fields[f].name;
        let blobs = store.get_blobs(run, f as u32, *base, step).await?;
        let mut blobs = blobs.into_iter();
        let damaged =
            |what: String| LoadError::Damaged(format!("checkpoint {step}, field `{name}`: {what}"));
        let format = |v: u64, e| {
            LoadError::from_format(
                run,
                format!("checkpoint {step}, field `{name}`, version {v}"),
                e,
            )
        };
        let full = match blobs.next() {
            Some((v, bytes)) if v == *base => match envelope::decode(RecordKind::Blob, &bytes) {
                Ok(BlobRecord::Full(full)) => full,
                Ok(BlobRecord::Deltas(_)) => {
                    return Err(damaged(format!("version {v} should be a full value")));
                }
                Err(e) => return Err(format(v, e)),
            },
            _ => return Err(damaged(format!("its value at version {base} is missing"))),
        };
        let mut track = FieldTrack {
            base: *base,
            full_len: full.len(),
            delta_len: 0,
        };
        let mut field_deltas = Vec::new();
        for (v, bytes) in blobs {
            match envelope::decode(RecordKind::Blob, &bytes) {
                Ok(BlobRecord::Deltas(d)) => {
                    track.delta_len += d.iter().map(|b| b.len()).sum::<usize>();
                    field_deltas.extend(d);
                }
                Ok(BlobRecord::Full(_)) => {
                    return Err(damaged(format!("version {v} should be deltas")));
                }
                Err(e) => return Err(format(v, e)),
            }
        }
        fulls.push(full);
        deltas.push(field_deltas);
        tracks.push(track);
    }
    let slices: Vec<&[u8]> = fulls.iter().map(|b| b.as_slice()).collect();
    // The bytes passed their checksums: a value that does not decode means the state type
    // changed, not that the store is damaged. Older checkpoints would not decode either.
    let incompatible = |e: CodecError| {
        LoadError::Fatal(Error::Incompatible {
            run: run.to_owned(),
            reason: format!("checkpoint {step}: {e}"),
        })
    };
    let state = if record.state_version == S::VERSION {
        decode_stored::<S>(schema, &slices, &deltas).map_err(incompatible)?
    } else {
        migrations
            .upgrade_stored(record.state_version, &slices, &deltas)
            .map_err(incompatible)?
            .map_err(|error| {
                LoadError::Fatal(Error::Migration {
                    run: run.to_owned(),
                    error,
                })
            })?
    };
    Ok((state, record, tracks))
}

/// The fields of the state type of the version that stored `record`: `S`'s, or those of the
/// type the migration step from that version reads. [`Error::Migration`] when the version is
/// newer than `S`'s or no step is registered from it.
pub(super) fn stored_fields<'a, S: State>(
    run: &str,
    record: &CheckpointRecord,
    schema: &'a S::Schema,
    migrations: &Migrations<S>,
) -> Result<&'a [crate::define::state::Field]> {
    let version = record.state_version;
    let error = |error| Error::Migration {
        run: run.to_owned(),
        error,
    };
    match version.cmp(&S::VERSION) {
        std::cmp::Ordering::Equal => Ok(S::fields(schema)),
        std::cmp::Ordering::Greater => Err(error(MigrationError::Newer {
            stored: version,
            current: S::VERSION,
        })),
        std::cmp::Ordering::Less => migrations.fields_of(version).map_err(error),
    }
}

/// Brings the saved updates of `pending` (written with the checkpoint `record`) to `S`: those
/// of an older version through `migrations`, those of a state with fewer fields (added at the
/// end since) with the added fields unwritten.
pub(super) fn upgrade_pending<S: State>(
    run: &str,
    record: &CheckpointRecord,
    schema: &S::Schema,
    migrations: &Migrations<S>,
    pending: &mut [(u32, PendingWriteRecord)],
) -> Result<()> {
    let version = record.state_version;
    let added = S::fields(schema).len().saturating_sub(record.bases.len());
    if version == S::VERSION && added == 0 {
        return Ok(());
    }
    for (_, p) in pending.iter_mut() {
        let (PendingOutcome::Done { update, .. } | PendingOutcome::DoneWithMemory { update, .. }) =
            &mut p.outcome
        else {
            continue;
        };
        if version == S::VERSION {
            // An update is encoded as one optional value per field: an added field is `None`,
            // one byte 0.
            update.resize(update.len() + added, 0);
            continue;
        }
        let corrupt = |e: CodecError| Error::Corrupt {
            run: run.to_owned(),
            reason: format!(
                "the pending write of `{}` does not decode as version {version}: {e}",
                p.node
            ),
        };
        let upgraded = migrations
            .upgrade_stored_update(version, update)
            .map_err(corrupt)?
            .map_err(|error| Error::Migration {
                run: run.to_owned(),
                error,
            })?;
        let mut bytes = Vec::new();
        crate::codec::encode_into(&upgraded, &mut bytes)
            .map_err(|e| super::encode_error(&format!("the update of `{}`", p.node), e))?;
        *update = bytes;
    }
    Ok(())
}

/// The pending writes of `run`'s `step`, by task index.
pub(super) async fn load_pending(
    store: &dyn CheckpointStore,
    run: &str,
    step: u64,
) -> Result<Vec<(u32, PendingWriteRecord)>> {
    let mut out = Vec::new();
    let stored = match store.get_pending_writes(run, step).await {
        Ok(stored) => stored,
        // Which one is damaged is not known: all are dropped, and their tasks run again.
        Err(StoreError::Corrupt { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    for (index, bytes) in stored {
        // A damaged pending write is dropped: its task runs again (at-least-once).
        if let Ok(record) = envelope::decode::<PendingWriteRecord>(RecordKind::PendingWrite, &bytes)
        {
            out.push((index, record));
        }
    }
    Ok(out)
}

/// The state of `run` at the checkpoint of `step`, with its record.
pub(super) async fn state_at<S: State>(
    store: &dyn CheckpointStore,
    run: &str,
    step: u64,
    schema: &S::Schema,
    migrations: &Migrations<S>,
) -> Result<(S, CheckpointRecord)> {
    match load_at::<S>(store, run, step, schema, migrations).await {
        Ok((state, record, _)) => Ok((state, record)),
        Err(LoadError::Fatal(e)) => Err(e),
        Err(LoadError::Damaged(reason)) => Err(Error::Corrupt {
            run: run.to_owned(),
            reason,
        }),
    }
}

/// Decodes a checkpoint record.
pub(super) fn decode_record(run: &str, bytes: &[u8]) -> Result<CheckpointRecord> {
    CheckpointRecord::decode(bytes).map_err(|e| Error::Corrupt {
        run: run.to_owned(),
        reason: e.to_string(),
    })
}
