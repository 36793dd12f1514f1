//! Build script of the `shake` crate itself. The split with `dpdk-shim/build.rs`:
//!
//! - `dpdk-shim` (the `dpdk-sys` crate) finds DPDK with pkg-config, compiles the C shim of
//!   inline forwarders, generates the bindings and links the libraries every DPDK program
//!   needs (EAL, ethdev, mbuf, mempool, ring, ...). Poll-mode drivers are not linked: Debian's
//!   EAL loads them all from its plugin directory at `rte_eal_init`.
//! - this script only records the DPDK version, which `shake --version` reports. Nothing
//!   that only tests use is linked: in-process ring ports (`dpdk::RingPort`) find
//!   `rte_eth_from_rings` at run time in the net_ring plugin the EAL has loaded.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_DPDK").is_none() {
        println!("cargo:rustc-env=SHAKE_DPDK_VERSION=none (built without the dpdk feature)");
        return;
    }
    let dpdk = pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(false)
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!("libdpdk (22.11 or later) not found by pkg-config: `make deps` installs Debian's dpdk and libdpdk-dev ({e})")
        });
    println!("cargo:rustc-env=SHAKE_DPDK_VERSION={}", dpdk.version);
}
