//! I/O backends. Each feeds frames or payloads to the same workers; none decides anything.
//!
//! - [`socket`]: the kernel-socket backend, a [`crate::backend::Backend`].
//! - [`mmsg`]: reusable `recvmmsg`/`sendmmsg` batches, shared by the socket backend and the
//!   generator's socket mode.
pub mod mmsg;
pub mod socket;
