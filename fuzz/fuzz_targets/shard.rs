//! See `shake_fuzz::files::shard`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shake_fuzz::files::shard(data));
