//! See `shake_fuzz::config::node_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shake_fuzz::config::node_config(data));
