//! `/shake/stats` on the DPDK telemetry socket: the node's counter totals as a dict.
//!
//! `dpdk-telemetry.py -f <file-prefix>` then `/shake/stats`. DPDK's callback has no user
//! argument, so the counters it reads are published in a process-wide slot; commands cannot
//! be unregistered, so an empty slot answers with `workers: 0`.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use dpdk_sys::rte_tel_data;

use super::error::{check, DpdkError};
use crate::control::Stats;
use crate::counters::{DropReason, Event, Reply, Snapshot};
use crate::wire::shake::Outcome;

/// The command's name.
pub const COMMAND: &str = "/shake/stats";

static STATS: Mutex<Option<Stats>> = Mutex::new(None);
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Publishes `stats` to the command, registering it on first use (after `Eal::init`).
pub fn publish(stats: Stats) -> Result<(), DpdkError> {
    *STATS.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats);
    if REGISTERED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let cmd = CString::new(COMMAND).expect("no NUL");
    let help =
        CString::new("Counter totals of all shake workers. Takes no parameters.").expect("no NUL");
    // SAFETY: both strings are NUL-terminated; the telemetry library copies them. The
    // callback is a plain function valid for the life of the process.
    let ret = unsafe {
        dpdk_sys::rte_telemetry_register_cmd(cmd.as_ptr(), Some(stats_cb), help.as_ptr())
    };
    check(ret, || format!("rte_telemetry_register_cmd {COMMAND}")).map(|_| ())
}

/// Stops publishing (before the workers' counters go away).
pub fn withdraw() {
    *STATS.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Every key and value of the dict, in order.
pub fn entries(workers: usize, t: &Snapshot) -> Vec<(String, u64)> {
    let mut out = vec![
        ("workers".to_owned(), workers as u64),
        ("rx".to_owned(), t.rx),
        ("tx".to_owned(), t.tx),
        ("answered".to_owned(), t.answered()),
        ("dropped".to_owned(), t.dropped_total()),
        ("cycles".to_owned(), t.cycles),
        ("busy_cycles".to_owned(), t.busy_cycles),
    ];
    out.extend(
        Outcome::ALL
            .iter()
            .map(|&o| (o.name().to_owned(), t.outcome(o))),
    );
    out.extend(
        Reply::OTHERS
            .iter()
            .map(|&r| (r.name().to_owned(), t.replies(r))),
    );
    out.extend(
        DropReason::ALL
            .iter()
            .map(|&d| (format!("drop_{}", d.name()), t.dropped(d))),
    );
    out.extend(
        Event::ALL
            .iter()
            .map(|&e| (e.name().to_owned(), t.event(e))),
    );
    out
}

unsafe extern "C" fn stats_cb(
    _cmd: *const c_char,
    _params: *const c_char,
    d: *mut rte_tel_data,
) -> c_int {
    let (workers, total) = match &*STATS.lock().unwrap_or_else(|e| e.into_inner()) {
        Some(s) => (s.workers.len(), s.total()),
        None => (0, Snapshot::default()),
    };
    // SAFETY: d is the telemetry library's output object for this call.
    unsafe { dpdk_sys::rte_tel_data_start_dict(d) };
    for (key, value) in entries(workers, &total) {
        let Ok(key) = CString::new(key) else { continue };
        // SAFETY: d is started as a dict; key is NUL-terminated and copied by the call.
        unsafe { dpdk_sys::rte_tel_data_add_dict_u64(d, key.as_ptr(), value) };
    }
    0
}
