//! What the kernel says about a benchmark process's memory, for the benchmarks that report
//! it (`user_table.rs`, `page_walk.rs`); included by path, each benchmark being its own crate.

/// Huge pages backing anonymous memory (the tables ask for them), in bytes.
pub fn anon_huge_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("AnonHugePages:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
