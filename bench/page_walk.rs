//! `make bench-page-walk` (and part of `make bench-curve`): what a random access to a large
//! table costs in address translation alone on this host.
//!
//! The datapath's growth from 10M to 100M users is not its instructions: under `perf record
//! -e cpu-clock` most of the stage's samples (the 32 table-bucket prefetches of the next
//! burst, 5% of the datapath's instructions, a quarter of the samples at 10M users and half
//! at 100M) fall on the prefetch instruction, which holds retirement while its address is
//! translated. At 10M the stage still hides most of that wait (a 1K table with the frames in
//! cache is ~10% faster, bench/results/cost_curve.txt); at 100M it does not. A node's
//! table is mapped with huge pages (`src/hugemem.rs`), so on bare metal a 2.5 GB table needs
//! 1193 TLB entries of 2 MiB and the walk of a miss hits the caches. In a virtual
//! machine the host's pages count too: a guest huge page backed by 4 KiB host pages is cached
//! in the TLB as 4 KiB pieces, and each miss walks both the guest's and the host's tables.
//!
//! The probe separates translation from data: a chain of dependent loads over `n` cache lines
//! in a huge-page table ([`HugeArray`], the user table's allocator), laid out two ways:
//! - packed: the `n` lines next to each other;
//! - one per page: each line in a 4 KiB page of its own (the table spans `n` x 4 KiB), at a
//!   random offset in its page. An offset that followed the page number (`k % 64`) would put
//!   the lines of physically contiguous pages into 64 of the L2 cache's sets, and one per page
//!   would then miss the L2 where packed hits it, on exactly the hosts with huge pages.
//!
//! The same `n` lines of data either way, so what one-per-page costs over packed is the
//! translation of `n` distinct 4 KiB pages. With 2 MiB translations they lie in `n / 512`
//! huge pages, and the two layouts cost about the same until the data leaves the caches;
//! with 4 KiB translations one-per-page costs a page walk per load once `n` passes the TLB
//! (a few thousand entries). Packed needs walks too once its own span passes the TLB's reach
//! in 4 KiB pieces (8 MiB with 2048 entries): past that the difference is a lower bound. Not
//! a criterion benchmark: one pass of `LOADS` loads a layout.
//!
//! `SHAKE_PAGE_WALK_MAX_MB` caps the largest span (default: no cap; the last row is the
//! 100M-user table's span, 2.3 GiB).

use std::time::Instant;

use shake::engine::users::BYTES_PER_USER;
use shake::hugemem::HugeArray;
use shake::rng::Rng;

#[path = "mem_stats.rs"]
mod mem_stats;

/// u64 elements in a 64-byte line and in a 4 KiB page.
const LINE: usize = 8;
const PAGE: usize = 512;
/// Loads timed for each layout (after one untimed lap of the chain).
const LOADS: usize = 2_000_000;

/// The two layouts of `n` lines: where each lies, in u64 elements, in ascending order.
#[derive(Clone, Copy)]
enum Layout {
    Packed,
    OnePerPage,
}

fn lines(layout: Layout, n: usize, rng: &mut Rng) -> Vec<usize> {
    match layout {
        Layout::Packed => (0..n).map(|k| k * LINE).collect(),
        Layout::OnePerPage => (0..n)
            .map(|k| k * PAGE + rng.below((PAGE / LINE) as u64) as usize * LINE)
            .collect(),
    }
}

/// Mean ns of a dependent load over `n` lines laid out as `layout`, visited in one random
/// cycle, and the MiB of huge pages the process had while the table was mapped.
fn chase(n: usize, layout: Layout, rng: &mut Rng) -> (f64, u64) {
    let at = lines(layout, n, rng);
    let len = at[n - 1] + LINE;
    let mut table = HugeArray::<u64>::zeroed(len).expect("map the table");
    table.wait_populated();
    // Sattolo's shuffle: one cycle through all n lines, so the chain visits each once a lap.
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64) as usize;
        order.swap(i, j);
    }
    for w in 0..n {
        table[at[order[w]]] = at[order[(w + 1) % n]] as u64;
    }
    let mut i = at[order[0]];
    for _ in 0..n {
        i = table[i] as usize;
    }
    let t = Instant::now();
    for _ in 0..LOADS {
        i = table[i] as usize;
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / LOADS as f64;
    std::hint::black_box(i);
    (ns, mem_stats::anon_huge_bytes() >> 20)
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let max_mb: usize = std::env::var("SHAKE_PAGE_WALK_MAX_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let mut rng = Rng::new(13);
    println!("page walk probe: dependent loads, n lines one per 4 KiB page against the same n lines packed");
    println!(
        "{:>8} {:>10} {:>14} {:>10} {:>8} {:>11}  the span of",
        "lines", "span MiB", "one/page ns", "packed ns", "ratio", "huge MiB"
    );
    // 1024 lines: 4 MiB, 1024 small pages, within a second-level TLB's reach either way;
    // 4096: 16 MiB, 8 huge pages but 4096 small ones, past it with 4 KiB translations; then
    // the spans of the user tables of 1M, 10M and 100M users (the cost curve's populations).
    let mut in_reach = None;
    let tables = [1_000_000u64, 10_000_000, 100_000_000].map(|u| {
        (
            (u as usize * BYTES_PER_USER) >> 12,
            format!("{}M users", u / 1_000_000),
        )
    });
    let rows = [(1024, String::new()), (4096, String::new())]
        .into_iter()
        .chain(tables);
    for (n, what) in rows {
        let span_mb = (n * PAGE * 8) >> 20;
        if span_mb > max_mb {
            break;
        }
        let (spread, huge) = chase(n, Layout::OnePerPage, &mut rng);
        let (dense, _) = chase(n, Layout::Packed, &mut rng);
        println!(
            "{n:>8} {span_mb:>10} {spread:>14.1} {dense:>10.1} {:>8.1} {huge:>11}  {what}",
            spread / dense
        );
        if n == 4096 {
            in_reach = Some((spread, dense, huge));
        }
    }
    // 4096 lines of data fit the L2 cache; in 8 huge pages they need no page walk. Twice the
    // packed time means each load walked: the host translates the guest's huge pages in 4 KiB
    // pieces.
    if let Some((spread, dense, huge)) = in_reach {
        // 16 MiB hold 7 huge pages when the mapping does not start on a 2 MiB boundary.
        let verdict = if huge < 14 {
            "the kernel gave no huge pages (transparent_hugepage off?): 4 KiB translations"
        } else if spread > 2.0 * dense {
            "4 KiB translations under huge pages: the host backs this guest's memory with small pages, so every random table access past the TLB's reach pays a page walk"
        } else {
            "2 MiB translations: huge pages reach the TLB"
        };
        println!(
            "verdict (4096 lines in 8 huge pages, {spread:.1} against {dense:.1} ns): {verdict}"
        );
    }
}
