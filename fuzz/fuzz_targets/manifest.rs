//! See `shake_fuzz::files::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shake_fuzz::files::manifest(data));
