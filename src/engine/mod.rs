//! One worker's state and the decision for one shake.
pub mod rng;
pub mod winners;
