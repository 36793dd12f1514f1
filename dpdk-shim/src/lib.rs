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
//!   `shake_pktmbuf_alloc` is `rte_pktmbuf_alloc`, `shake_errno` reads `rte_errno`, and so on.
//!   There is a forwarder only for what the main crate calls.
//!   Exported DPDK functions are called directly through the bindgen declarations: among
//!   them `rte_pdump_init`/`rte_pdump_uninit` (`rte_pdump.h`), the packet-capture framework
//!   a node with `[dpdk] capture` registers for `dpdk-dumpcap`; `librte_pdump` is one of
//!   the libraries `pkg-config --libs libdpdk` lists, linked as the others are.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{CStr, CString};
    use std::os::raw::c_char;
    use std::path::PathBuf;
    use std::ptr;

    const BURST: u16 = 32;
    const PORT: u16 = 0;

    #[test]
    fn links_dpdk_22_11() {
        // SAFETY: rte_version returns a pointer to a static NUL-terminated string and needs
        // no EAL.
        let version = unsafe { CStr::from_ptr(rte_version()) };
        let version = version.to_str().expect("DPDK version is ASCII");
        assert!(
            version.contains("22.11"),
            "unexpected DPDK version {version}"
        );
    }

    /// Initialises the EAL with the machine-safe arguments. Returns the argument strings,
    /// which must outlive the EAL because it keeps pointers into them, and the runtime
    /// directory it created under /var/run/dpdk.
    fn eal_init() -> (Vec<CString>, PathBuf) {
        let prefix = format!("dpdksys-test-{}", std::process::id());
        let args: Vec<CString> = [
            "shake-test",
            "--no-pci",
            "--no-huge",
            "--no-shconf",
            "--no-telemetry",
            "-m",
            "256",
            "-l",
            "0",
            "--file-prefix",
            prefix.as_str(),
            "--vdev=net_null0",
            "--log-level=error",
        ]
        .iter()
        .map(|arg| CString::new(*arg).expect("no NUL in EAL arguments"))
        .collect();
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
        let argc = i32::try_from(argv.len()).expect("few arguments");
        // SAFETY: argv holds argc valid NUL-terminated strings that live as long as `args`,
        // which the caller keeps until rte_eal_cleanup. This is the only EAL init in the
        // process.
        let ret = unsafe { rte_eal_init(argc, argv.as_mut_ptr()) };
        assert!(ret >= 0, "rte_eal_init failed: {}", errno_text());
        // SAFETY: after a successful init the runtime directory is a NUL-terminated path in
        // EAL-owned memory; it is copied before rte_eal_cleanup.
        let runtime_dir = unsafe { CStr::from_ptr(rte_eal_get_runtime_dir()) };
        let runtime_dir = PathBuf::from(runtime_dir.to_str().expect("runtime dir is UTF-8"));
        (args, runtime_dir)
    }

    fn errno_text() -> String {
        // SAFETY: shake_errno reads this thread's rte_errno; rte_strerror returns a pointer
        // to a NUL-terminated string valid until the next call on this thread.
        unsafe { CStr::from_ptr(rte_strerror(shake_errno())) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn eal_null_port_round_trip() {
        let (_args, runtime_dir) = eal_init();
        // SAFETY (whole block): the EAL is initialised on this thread, which is the main
        // lcore; every pointer passed below is either checked non-null or points into a
        // live local array; mbufs received are either handed to TX (which takes ownership)
        // or freed exactly once.
        unsafe {
            assert_eq!(rte_eth_dev_count_avail(), 1, "expected exactly net_null0");

            let socket = match shake_eth_dev_socket_id(PORT) {
                s if s < 0 => rte_socket_id() as i32,
                s => s,
            };
            let pool_name = CString::new("dpdksys_test_pool").unwrap();
            let pool = rte_pktmbuf_pool_create(
                pool_name.as_ptr(),
                1023,
                32,
                0,
                RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            );
            assert!(!pool.is_null(), "pktmbuf pool: {}", errno_text());

            let mut info = rte_eth_dev_info::default();
            assert_eq!(rte_eth_dev_info_get(PORT, &mut info), 0);
            let conf = rte_eth_conf::default();
            assert_eq!(rte_eth_dev_configure(PORT, 1, 1, &conf), 0);
            let socket = socket as u32;
            assert_eq!(
                rte_eth_rx_queue_setup(PORT, 0, 256, socket, ptr::null(), pool),
                0
            );
            assert_eq!(rte_eth_tx_queue_setup(PORT, 0, 256, socket, ptr::null()), 0);
            assert_eq!(rte_eth_dev_start(PORT), 0, "start: {}", errno_text());

            let mut burst = [ptr::null_mut::<rte_mbuf>(); BURST as usize];
            let received = shake_eth_rx_burst(PORT, 0, burst.as_mut_ptr(), BURST);
            assert!(received > 0, "net_null delivers packets on every poll");
            for &m in &burst[..usize::from(received)] {
                assert!(!(*m).buf_addr.is_null());
                assert_eq!(u32::from((*m).data_len), (*m).pkt_len);
            }
            let sent = shake_eth_tx_burst(PORT, 0, burst.as_mut_ptr(), received);
            for &m in &burst[usize::from(sent)..usize::from(received)] {
                shake_pktmbuf_free(m);
            }

            // Allocation, one and in bulk, and free.
            let m = shake_pktmbuf_alloc(pool);
            assert!(!m.is_null());
            assert_eq!(((*m).data_len, (*m).pkt_len), (0, 0));
            shake_pktmbuf_free(m);
            let mut bulk = [ptr::null_mut::<rte_mbuf>(); 4];
            assert_eq!(shake_pktmbuf_alloc_bulk(pool, bulk.as_mut_ptr(), 4), 0);
            for &m in &bulk {
                assert!(!m.is_null());
                shake_pktmbuf_free(m);
            }

            assert!(shake_get_tsc_hz() > 0);
            let t = shake_rdtsc();
            assert!(shake_rdtsc() >= t);

            assert_eq!(rte_eth_dev_stop(PORT), 0);
            assert_eq!(rte_eth_dev_close(PORT), 0);
            rte_mempool_free(pool);
            assert_eq!(rte_eal_cleanup(), 0);
        }
        // With --no-shconf and --no-telemetry the EAL leaves only this empty directory.
        std::fs::remove_dir(&runtime_dir).expect("remove the EAL runtime directory");
    }
}
