//! See `shake_fuzz::config::activity`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shake_fuzz::config::activity(data));
