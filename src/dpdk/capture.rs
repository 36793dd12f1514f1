//! Live packet capture (`[dpdk] capture = true`): DPDK's packet-capture framework, so that
//! `dpdk-dumpcap` can copy what a running node's ports receive and send into a pcapng file.
//!
//! The node only registers the framework (`rte_pdump_init`: a handler on the EAL's
//! multi-process socket). `dpdk-dumpcap`, a DPDK secondary process started with the node's
//! `--file-prefix`, asks it to enable capture on a port and queue (or all); the node then
//! installs RX and TX callbacks on those queues, which copy each frame into the capture's
//! ring (in the capture's own mempool, in the node's shared hugepage memory) as the worker
//! receives or sends it. Until a capture attaches, nothing runs on the datapath, and when it
//! detaches the callbacks go. The cost that makes capture opt-in is the node's memory: the
//! secondary maps the node's hugepage files by name and talks over the multi-process
//! socket, so the EAL must keep both (no `--no-huge`, `--huge-unlink`, `--no-shconf` or
//! `--in-memory`: [`crate::node_config::capture_conflict`]), and a capture in progress costs
//! the worker a copy per frame.

use std::marker::PhantomData;

use super::eal::Eal;
use super::error::{check, DpdkError};

/// The packet-capture framework, registered while this lives; dropping it unregisters it.
/// Borrows the EAL (the framework needs it) and stays on the main lcore.
#[derive(Debug)]
pub struct Capture<'eal> {
    /// The prefix a capture process must be given (`dpdk-dumpcap --file-prefix`).
    file_prefix: String,
    _eal: PhantomData<&'eal Eal>,
}

impl<'eal> Capture<'eal> {
    /// `rte_pdump_init`: from now on `dpdk-dumpcap --file-prefix <prefix>` can attach. Fails
    /// (naming the reason) where the EAL has no multi-process socket (`--no-shconf`,
    /// `--in-memory`).
    pub fn init(eal: &'eal Eal) -> Result<Capture<'eal>, DpdkError> {
        // SAFETY: the EAL is initialised (`eal` exists); rte_pdump_init registers a
        // multi-process action and a memzone for its statistics, and is called once per
        // process (a Capture is made once, by the backend that opened the ports).
        let ret = unsafe { dpdk_sys::rte_pdump_init() };
        check(ret, || {
            "rte_pdump_init (packet capture needs the EAL's multi-process socket: \
             no --no-shconf or --in-memory)"
                .to_owned()
        })?;
        let file_prefix = eal
            .runtime_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Capture {
            file_prefix,
            _eal: PhantomData,
        })
    }

    /// What the start line says: capture is on, and the command that attaches to it.
    pub fn describe(&self) -> String {
        format!(
            "packet capture on (dpdk-dumpcap --file-prefix {})",
            self.file_prefix
        )
    }
}

impl Drop for Capture<'_> {
    fn drop(&mut self) {
        // SAFETY: rte_pdump_init succeeded on this process's EAL, which outlives `self`.
        let ret = unsafe { dpdk_sys::rte_pdump_uninit() };
        if let Err(e) = check(ret, || "rte_pdump_uninit".to_owned()) {
            eprintln!("shake: {e}");
        }
    }
}
