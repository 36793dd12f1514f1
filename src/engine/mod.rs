//! One worker's state and the decision for one shake.
pub mod config;
pub mod users;
pub mod winners;
pub mod worker;

pub use config::{Identity, Live, Throttle};
pub use worker::Worker;
