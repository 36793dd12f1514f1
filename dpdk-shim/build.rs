//! Finds Debian's DPDK through pkg-config, compiles the C shim of inline forwarders with the
//! same flags DPDK was built for, and generates the Rust declarations with bindgen.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const DPDK_MIN_VERSION: &str = "22.11";

fn main() {
    let dpdk = pkg_config::Config::new()
        .atleast_version(DPDK_MIN_VERSION)
        .probe("libdpdk")
        .expect("libdpdk not found by pkg-config: install dpdk and libdpdk-dev");
    let other_cflags = cflags_only_other();

    let mut shim = cc::Build::new();
    shim.file("shim/shim.c").warnings(true).extra_warnings(true);
    for path in &dpdk.include_paths {
        shim.include(path);
    }
    for flag in &other_cflags {
        shim.flag(flag);
    }
    shim.compile("shake_dpdk_shim");

    let mut builder = bindgen::Builder::default()
        .header("shim/bindings.h")
        .clang_arg("-Ishim")
        .clang_args(
            dpdk.include_paths
                .iter()
                .map(|p| format!("-I{}", p.display())),
        )
        .clang_args(&other_cflags)
        .allowlist_function("rte_.*|shake_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*|rte_.*|SOCKET_ID_ANY|LCORE_ID_ANY")
        // Most offload and flag constants are defined through RTE_BIT64() and friends, which
        // cexpr cannot expand; let clang evaluate them.
        .clang_macro_fallback()
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(true)
        .generate_comments(false)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .parse_callbacks(Box::new(U64Masks))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    // Packed headers that contain aligned members: bindgen cannot reproduce their layout, and
    // the node parses wire formats itself, so they stay opaque.
    for opaque in OPAQUE_TYPES {
        builder = builder.opaque_type(opaque);
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed on shim/bindings.h");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs");

    println!("cargo:rerun-if-changed=shim");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
}

/// Flag masks whose C fields are `uint64_t`. bindgen types a macro by its value, so
/// `RTE_BIT64(1)` would otherwise come out as `u32` and need a cast at every use.
const U64_MASK_PREFIXES: &[&str] = &[
    "RTE_ETH_RX_OFFLOAD_",
    "RTE_ETH_TX_OFFLOAD_",
    "RTE_ETH_RSS_",
    "RTE_ETH_DEV_CAPA_",
    "RTE_MBUF_F_",
];

#[derive(Debug)]
struct U64Masks;

impl bindgen::callbacks::ParseCallbacks for U64Masks {
    fn int_macro(&self, name: &str, _value: i64) -> Option<bindgen::callbacks::IntKind> {
        U64_MASK_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
            .then_some(bindgen::callbacks::IntKind::U64)
    }
}

const OPAQUE_TYPES: &[&str] = &["rte_arp_hdr", "rte_l2tpv2_combined_msg_hdr"];

/// `pkg-config --cflags-only-other libdpdk`: `-include rte_config.h` and the target `-march`
/// Debian built DPDK for. The pkg-config crate keeps only include paths and defines.
fn cflags_only_other() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let output = Command::new(pkg_config)
        .args(["--cflags-only-other", "libdpdk"])
        .output()
        .expect("cannot run pkg-config");
    assert!(
        output.status.success(),
        "pkg-config --cflags-only-other libdpdk failed"
    );
    String::from_utf8(output.stdout)
        .expect("pkg-config printed non-UTF-8 flags")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}
