//! Build script of the `shake` crate itself. The split with `dpdk-shim/build.rs`:
//!
//! - `dpdk-shim` (the `dpdk-sys` crate) finds DPDK with pkg-config, compiles the C shim of
//!   inline forwarders, generates the bindings and links the libraries every DPDK program
//!   needs (EAL, ethdev, mbuf, mempool, ring, ...). Poll-mode drivers are not linked: Debian's
//!   EAL loads them all from its plugin directory at `rte_eal_init`.
//! - this script adds what only the appliance needs on top, with the `dpdk` feature on: the
//!   net_ring driver library, whose `rte_eth_from_rings` builds in-process ports for the
//!   generator and tests, found through the same pkg-config search path; and the DPDK
//!   version, which `shake --version` reports.

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
    for dir in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");
    println!("cargo:rustc-env=SHAKE_DPDK_VERSION={}", dpdk.version);
}
