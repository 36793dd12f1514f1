//! The one place C results become `Result`s: a negative return or a null pointer is an error
//! carrying DPDK's own text for it.

use std::ffi::CStr;
use std::ptr::NonNull;

/// What went wrong in the DPDK layer. Errors name the object (port, pool, ring) and carry
/// DPDK's error text.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// A DPDK call failed: `what` names the call and its object.
    #[error("{what}: {text} (errno {errno})")]
    Call {
        what: String,
        errno: i32,
        text: String,
    },
    /// The EAL can be initialised once per process.
    #[error("the DPDK EAL is already initialised in this process")]
    EalAlreadyInitialised,
    /// The node config has no `[dpdk]` section, or the section does not fit what the EAL
    /// found.
    #[error("config: {0}")]
    Config(String),
    /// A worker lcore panicked or returned an error.
    #[error("worker {worker} on lcore {lcore} failed: {message}")]
    Worker {
        worker: usize,
        lcore: u32,
        message: String,
    },
    #[error("signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// DPDK's text for an errno value (`rte_strerror`, which knows DPDK's own codes too).
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string, static or in
    // thread-local storage, valid until the next call on this thread; it is copied at once.
    unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

/// This thread's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local int; no preconditions.
    unsafe { dpdk_sys::shake_errno() }
}

impl DpdkError {
    /// An error from an errno value.
    pub fn errno(what: impl Into<String>, errno: i32) -> DpdkError {
        let errno = errno.abs();
        DpdkError::Call {
            what: what.into(),
            errno,
            text: strerror(errno),
        }
    }
}

/// A DPDK return code: negative is an error (`-errno`, or `-1` with `rte_errno` set), else the
/// value.
pub fn check(ret: i32, what: impl FnOnce() -> String) -> Result<u32, DpdkError> {
    if ret >= 0 {
        return Ok(ret as u32);
    }
    // Some calls return -1 and set rte_errno; most return -errno.
    let errno = if ret == -1 { rte_errno() } else { -ret };
    let errno = if errno == 0 { -ret } else { errno };
    Err(DpdkError::errno(what(), errno))
}

/// A DPDK pointer result: null is an error with `rte_errno`.
pub fn non_null<T>(p: *mut T, what: impl FnOnce() -> String) -> Result<NonNull<T>, DpdkError> {
    NonNull::new(p).ok_or_else(|| DpdkError::errno(what(), rte_errno()))
}
