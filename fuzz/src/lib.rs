//! Fuzz targets of shake (see the README, "Fuzzing"): the harness code they share, and the seed
//! inputs that `gen-seeds` writes from the project's own test frames and file writers.

pub mod config;
pub mod files;
pub mod frames;
