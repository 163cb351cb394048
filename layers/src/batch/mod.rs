//! Concurrent calls combined into one: [`Batcher`].

mod batcher;

pub use batcher::Batcher;
