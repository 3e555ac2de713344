//! The mergeable sketches of the engine: t-digest for histograms and timers,
//! HyperLogLog for sets, both exchangeable with Veneur.

pub mod hll;
pub mod tdigest;
