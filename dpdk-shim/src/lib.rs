//! Raw FFI bindings to Debian's DPDK 22.11 LTS for the shake access node.
//!
//! This crate only binds; it holds no policy and no safe API.
//!
//! - **Declarations** come from `bindgen`, run at build time over the installed headers
//!   (`shim/bindings.h`) with the include paths and flags `pkg-config libdpdk` reports, so
//!   struct layouts such as `rte_eth_conf`, `rte_eth_dev_info`, `rte_eth_rxconf` and
//!   `rte_mbuf` are the ones the installed libraries were built with; bindgen's layout
//!   assertions check them at compile time. Structs derive or implement `Default` as
//!   all-zero, which is how DPDK expects `rte_eth_conf` to start out.
//! - **The C shim** (`shim/shim.c`, compiled by `cc`) exists because DPDK's fast path is
//!   `static inline` functions, macros and a thread-local `rte_errno`, none of which have a
//!   symbol to link against. Each `shake_*` function forwards to exactly one of them, in one
//!   line, with no logic of its own: `shake_eth_rx_burst` is `rte_eth_rx_burst`,
//!   `shake_pktmbuf_mtod` is `rte_pktmbuf_mtod`, `shake_errno` reads `rte_errno`, and so on.
//!   Exported DPDK functions are called directly through the bindgen declarations.
//! - **Safe wrappers** (owned mbufs, `Result` from negative returns and `rte_errno`, EAL
//!   arguments built from the config, port setup) live in the main crate's DPDK layer, not
//!   here.
//!
//! # Linking and poll-mode drivers
//!
//! The build script links the shared DPDK libraries `pkg-config` lists. Debian ships the
//! poll-mode drivers (`net_null`, `net_ring`, `net_pcap`, ...) as plugins in
//! `/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/`, which `rte_eal_init` loads by itself because
//! that directory is compiled into `librte_eal`. Binaries therefore need no driver libraries
//! on their link line; `-d <path>` in the EAL arguments adds drivers from elsewhere.
//!
//! # Testing safely
//!
//! The EAL can be initialised once per process, so one test function owns it. It runs with
//! `--no-pci --no-huge --no-shconf --no-telemetry`, a per-process `--file-prefix` and only
//! virtual devices, so it never touches a real NIC, hugepages or another process's DPDK state,
//! and removes the empty runtime directory the EAL leaves behind.

mod bindings {
    #![allow(
        non_camel_case_types,
        non_upper_case_globals,
        non_snake_case,
        // Lints on the shape of bindgen's output, not on anything written by hand.
        clippy::missing_safety_doc,
        clippy::too_many_arguments,
        clippy::useless_transmute,
        clippy::unnecessary_cast,
        clippy::manual_div_ceil,
        clippy::ptr_offset_with_cast
    )]
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

pub use bindings::*;
