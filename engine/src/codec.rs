//! The binary codec used for packet inputs (and, behind an envelope, for checkpoints).

/// The bincode configuration: standard, little endian, variable-length integers.
pub(crate) const fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}
