//! DPDK bindings (placeholder until the shim lands).
