//! How a run's records are packed for storage: compressed (feature `compression`, when the
//! run's configuration asks), or stored as encoded. Only writers need it: the envelope says how
//! a record was packed, so readers open both.

/// A run's packing of its records: none unless configured (a zero-sized no-op without the
/// `compression` feature).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Packing {
    #[cfg(feature = "compression")]
    pub(crate) compression: Option<agentgraph_checkpoint::envelope::Compression>,
}

impl Packing {
    /// `record` (an envelope as `envelope::encode` makes it) as it is stored.
    #[inline]
    pub(crate) fn pack(&self, record: Vec<u8>) -> Vec<u8> {
        #[cfg(feature = "compression")]
        if let Some(compression) = &self.compression {
            return compression.compress(record);
        }
        record
    }
}
