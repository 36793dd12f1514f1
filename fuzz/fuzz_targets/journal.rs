//! See `shake_fuzz::files::journal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shake_fuzz::files::journal(data));
