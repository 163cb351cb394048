//! The store's flushes, on a thread of its own.
//!
//! sled's [`flush_async`](::sled::Tree::flush_async) hands the flush to sled's thread pool,
//! whose every task wakes all of its idle threads (seven), and the flush then hands the write
//! of the log buffer to that pool again. On a machine with few cores those wake-ups compete
//! with the run for the processor while the run waits for its flush. A blocking
//! [`flush`](::sled::Tree::flush) on a thread of the store's own costs one hand-off each way
//! instead. On the 2-core machine of `benches/README.md` ("A flush thread of the store's
//! own"), the agent's durable turn went from a median of 299 to 277 µs of engine time; a
//! commit and flush measured alone, on an idle runtime, is 5–10 µs slower.
//!
//! The thread starts with the store's first flush (a store that only reads starts none) and
//! stops when the store's last clone goes. It serves every flush asked for before it began
//! with one sled flush: each of those was asked for after its commits returned, and a sled
//! flush makes every write before it durable. A flush asked for while one runs waits for the
//! next.
//!
//! Each request carries its own handle on the database, dropped before it is answered, so
//! the idle thread holds none: the store's last clone closes the database as before (sled's
//! own pool may hold it a moment longer after a flush, as it did; [`SledStore::open`]
//! waits for its lock).
//!
//! [`SledStore::open`]: super::SledStore::open

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::error::{Result, StoreError};

/// A flush to make: the database, and who waits for the outcome.
struct Request {
    db: ::sled::Db,
    done: oneshot::Sender<::sled::Result<usize>>,
}

/// The store's flush thread (see the module's docs), shared by its clones.
#[derive(Debug, Default)]
pub(super) struct Flusher {
    /// Sends flushes to the thread, once started.
    requests: Mutex<Option<Sender<Request>>>,
}

impl Flusher {
    /// Makes everything committed to `db` so far durable (see [`::sled::Tree::flush`]).
    ///
    /// When no thread can be started, flushes through sled's own pool instead.
    pub(super) async fn flush(&self, db: &::sled::Db) -> Result<()> {
        let (done, outcome) = oneshot::channel();
        let request = Request {
            db: db.clone(),
            done,
        };
        if !self.send(request) {
            // No thread: sled's pool does it.
            return db.flush_async().await.map(drop).map_err(super::backend);
        }
        match outcome.await {
            Ok(flushed) => flushed.map(drop).map_err(super::backend),
            // The thread went without answering: the flush panicked in sled.
            Err(_) => Err(StoreError::Backend(
                "the store's flush thread stopped during a flush (sled panicked)".into(),
            )),
        }
    }

    /// Sends `request` to the thread, starting one if none runs (the first flush, or after
    /// the last one panicked). `false` if no thread can be started.
    fn send(&self, request: Request) -> bool {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let request = match requests.as_ref() {
            Some(sender) => match sender.send(request) {
                Ok(()) => return true,
                // The thread ended (a flush panicked): a new one takes over.
                Err(std::sync::mpsc::SendError(request)) => request,
            },
            None => request,
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("agentgraph-sled-flush".to_owned())
            .spawn(move || serve(&receiver));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread for the sled store's flushes; using sled's pool");
            *requests = None;
            return false;
        }
        // The thread holds the receiver until it ends, and it has not ended yet.
        let sent = sender.send(request).is_ok();
        *requests = Some(sender);
        sent
    }
}

/// The thread: one sled flush for all the requests waiting when it begins, until the store
/// (the sender) goes.
fn serve(requests: &Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let (dbs, waiting): (Vec<_>, Vec<_>) = std::iter::once(first)
            .chain(requests.try_iter())
            .map(|r| (r.db, r.done))
            .unzip();
        let flushed = dbs[0].flush();
        // The handles go before the answers: a waiter may close the database next.
        drop(dbs);
        for done in waiting {
            // A waiter that went (its flush future dropped) needs no answer.
            let _ = done.send(flushed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    /// Concurrent flushes share sled flushes, and each leaves on disk what was committed
    /// before it: a copy of the directory taken right after (what a killed process leaves)
    /// holds every key.
    #[test]
    fn concurrent_flushes_each_make_their_writes_durable() {
        let dir = tempfile::tempdir().unwrap();
        let db = ::sled::Config::new()
            .path(dir.path().join("db"))
            .flush_every_ms(None)
            .open()
            .unwrap();
        let flusher = Arc::new(Flusher::default());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..8u32)
                .map(|t| {
                    let (db, flusher) = (db.clone(), flusher.clone());
                    tokio::spawn(async move {
                        for i in 0..50u32 {
                            let key = format!("{t}/{i:03}");
                            db.insert(key.as_bytes(), &i.to_be_bytes()).unwrap();
                            flusher.flush(&db).await.unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&dir.path().join("db"), copy.path());
        let recovered = ::sled::Config::new().path(copy.path()).open().unwrap();
        assert_eq!(recovered.len(), 8 * 50, "every flushed write survives");
    }

    /// The idle thread holds no handle on the database: once the last other one goes, the
    /// database closes and its lock is free again (sled's own pool may hold it a moment
    /// longer after a flush, hence the wait), with no flush asked for meanwhile.
    #[test]
    fn the_idle_thread_keeps_the_database_closed() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match ::sled::Config::new().path(dir.path()).open() {
                    Ok(db) => return db,
                    Err(e) if std::time::Instant::now() < deadline => {
                        assert!(e.to_string().contains("lock"), "{e}");
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => panic!("the database stays locked: {e}"),
                }
            }
        };
        let flusher = Flusher::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for round in 0..3u8 {
            let db = open();
            db.insert([round], &[round]).unwrap();
            rt.block_on(flusher.flush(&db)).unwrap();
        }
        assert_eq!(open().len(), 3);
    }
}
