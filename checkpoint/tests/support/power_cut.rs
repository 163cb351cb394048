//! A simulated disk for redb that loses power: every write since the last `sync_data` is
//! volatile, and a power cut keeps none of it (or, torn, a random subset of its 512-byte
//! sectors), as a disk with a volatile write cache may. Shared by the redb store's tests and
//! the engine's (`engine/tests/durable_power_cut.rs`): each uses some of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, MutexGuard};

use redb::{BackendError, StorageBackend};

/// Sectors: the unit a torn cut keeps or drops.
const SECTOR: usize = 512;

#[derive(Debug, Default)]
struct State {
    /// What the disk holds for sure: the bytes as of the last sync.
    durable: Vec<u8>,
    /// What the running system sees: `durable` with every write since.
    current: Vec<u8>,
    /// The writes since the last sync, in order (`None`: a length change).
    unsynced: Vec<(u64, Vec<u8>, Option<u64>)>,
    /// Operations (writes, length changes, syncs) left before the power goes; `None`: never.
    left: Option<u64>,
    /// The power went: every operation fails, nothing changes any more.
    off: bool,
    /// Syncs done.
    syncs: u64,
    /// Mutating operations done.
    made: u64,
}

/// A disk shared by the backend (given to redb) and the test that cuts its power.
#[derive(Debug, Clone, Default)]
pub(crate) struct Disk(Arc<Mutex<State>>);

impl Disk {
    /// A disk holding `bytes`, all durable.
    pub(crate) fn with(bytes: Vec<u8>) -> Disk {
        Disk(Arc::new(Mutex::new(State {
            durable: bytes.clone(),
            current: bytes,
            ..State::default()
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The backend to give redb.
    pub(crate) fn backend(&self) -> Backend {
        Backend(self.clone())
    }

    /// Cuts the power after `ops` more operations (writes, length changes, syncs).
    pub(crate) fn cut_after(&self, ops: u64) {
        self.state().left = Some(ops);
    }

    /// Mutating operations (writes, length changes, syncs) done so far.
    pub(crate) fn ops(&self) -> u64 {
        self.state().made
    }

    /// Syncs done so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Cuts the power now (if it is still on) and returns what the disk holds afterwards:
    /// the synced bytes, plus, when `torn` gives a seed, a random subset of the sectors
    /// written since.
    pub(crate) fn survivors(&self, torn: Option<u64>) -> Vec<u8> {
        let mut s = self.state();
        s.off = true;
        let mut bytes = s.durable.clone();
        let Some(seed) = torn else {
            return bytes;
        };
        let mut rng = seed | 1;
        let mut coin = move || {
            // xorshift64
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng & 1 == 1
        };
        for (offset, data, len) in &s.unsynced {
            if let Some(len) = len {
                if coin() {
                    bytes.resize(*len as usize, 0);
                }
                continue;
            }
            for (i, sector) in data.chunks(SECTOR).enumerate() {
                if coin() {
                    let at = *offset as usize + i * SECTOR;
                    if bytes.len() < at + sector.len() {
                        bytes.resize(at + sector.len(), 0);
                    }
                    bytes[at..at + sector.len()].copy_from_slice(sector);
                }
            }
        }
        bytes
    }
}

/// The storage backend over a [`Disk`].
#[derive(Debug)]
pub(crate) struct Backend(Disk);

fn power_off() -> BackendError {
    BackendError::Io(std::io::Error::other("the power is off"))
}

impl Backend {
    /// Counts one mutating operation; fails once the power is off.
    fn operate(s: &mut State) -> Result<(), BackendError> {
        if s.off {
            return Err(power_off());
        }
        if let Some(left) = s.left.as_mut() {
            if *left == 0 {
                s.off = true;
                return Err(power_off());
            }
            *left -= 1;
        }
        s.made += 1;
        Ok(())
    }
}

impl StorageBackend for Backend {
    fn len(&self) -> Result<u64, BackendError> {
        let s = self.0.state();
        if s.off {
            return Err(power_off());
        }
        Ok(s.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        let s = self.0.state();
        if s.off {
            return Err(power_off());
        }
        let at = offset as usize;
        let source = s
            .current
            .get(at..at + out.len())
            .ok_or_else(|| BackendError::Io(std::io::Error::other("read past the end")))?;
        out.copy_from_slice(source);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        let mut s = self.0.state();
        Backend::operate(&mut s)?;
        s.current.resize(len as usize, 0);
        s.unsynced.push((0, Vec::new(), Some(len)));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        let mut s = self.0.state();
        Backend::operate(&mut s)?;
        s.durable = s.current.clone();
        s.unsynced.clear();
        s.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        let mut s = self.0.state();
        Backend::operate(&mut s)?;
        let at = offset as usize;
        if s.current.len() < at + data.len() {
            s.current.resize(at + data.len(), 0);
        }
        s.current[at..at + data.len()].copy_from_slice(data);
        s.unsynced.push((offset, data.to_vec(), None));
        Ok(())
    }
}
