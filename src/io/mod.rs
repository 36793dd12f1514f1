//! I/O backends. Each feeds frames or payloads to the same workers; none decides anything.
pub mod socket;
