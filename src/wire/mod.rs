//! Zero-copy views over frame bytes.
