//! What the crash tests share: the seeded draws of their kill instants, and their settings
//! from the environment.

#![allow(dead_code, unreachable_pub)]

use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand_chacha::ChaCha8Rng;

/// The kill instants of one test, drawn from its seed (printed, so a failure replays).
pub struct Draws(ChaCha8Rng);

impl Draws {
    pub fn new(seed: u64) -> Self {
        Draws(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A number below `n` (at least 1).
    pub fn below(&mut self, n: u64) -> u64 {
        Uniform::new(0, n)
            .expect("a non-empty range")
            .sample(&mut self.0)
    }
}

/// The whole number in the environment variable `name`, if it is set.
///
/// # Panics
///
/// When it is set to something else.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number"))
    })
}
