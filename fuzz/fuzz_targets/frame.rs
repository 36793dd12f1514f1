//! Arbitrary frames (IPv4 and IPv6) through `process_burst`, the function the DPDK worker,
//! the pcap replays and the tests call; every answer is checked by an independent parser
//! (etherparse, and SipHash from `siphasher` for the claim MAC): it parses, its checksums are
//! valid, its addresses and ports are the request's swapped, it is never longer than the
//! request, and its SHAKE/1 payload keeps the rules of SPEC section 2.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shake_fuzz::frames::{self, Burst};

fuzz_target!(|data: &[u8]| {
    let burst = Burst::from_bytes(data);
    frames::run_and_check(&burst);
});
