//! Zero-copy views over frame bytes.
pub mod shake;
