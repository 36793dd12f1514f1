//! `make bench-seeds` (part): memory of the user table at 100 million users.
//!
//! SPEC 5: 100 million users per node in at most 2.5 GB. Builds a table planned for
//! `SHAKE_BENCH_USERS` users (default 100M), admits every one of them once (each gets a
//! throttle entry), and reports the table's bytes, the process's resident memory growth, and
//! the admit rate. Not a criterion benchmark: the figure is memory, measured once.

use std::time::Instant;

use shake::engine::users::{Admit, UserTable};

#[path = "mem_stats.rs"]
mod mem_stats;
use mem_stats::anon_huge_bytes;

fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident shared ... in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let users: u64 = std::env::var("SHAKE_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000_000);
    let before = rss_bytes();
    let t = Instant::now();
    let mut table = UserTable::new(users as usize, 0);
    let created = t.elapsed().as_secs_f64();
    table.wait_populated();
    let populated = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut full = 0u64;
    // Spread ids the way a node's share of a population looks: every 8th id (node 3 of 8).
    for i in 0..users {
        if table.admit(i * 8 + 3, 1, 60_000) == Admit::Full {
            full += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let rss = rss_bytes() - before;
    let gb = |b: u64| b as f64 / 1e9;
    println!(
        "user table: {users} users, table {:.2} GB ({:.1} bytes/user), resident +{:.2} GB ({:.2} GB in huge pages), created in {created:.2} s and populated in the background by {populated:.2} s, {full} refused as full, {:.1} M admits/s",
        gb(table.bytes() as u64),
        table.bytes() as f64 / users as f64,
        gb(rss),
        gb(anon_huge_bytes()),
        users as f64 / secs / 1e6
    );
    assert_eq!(full, 0, "the table must hold its planned users");
    assert!(
        table.bytes() as u64 <= users * 25 + 64,
        "over 25 bytes per user"
    );
}
