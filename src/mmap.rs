//! Mapping shard and journal files into memory: with [`crate::hugemem`] and the DPDK layer,
//! the only code of the crate allowed `unsafe`. Below both money files, which share it.
//!
//! Shards and journal segments are written through `MAP_SHARED` mappings so that a store by
//! the worker is in the kernel's page cache the moment it is made: a `kill -9` right after it
//! loses nothing, and no syscall sits on the per-packet path. Durability is the flushers' job
//! (`fdatasync` on their own file handles, off the per-packet path).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use memmap2::{MmapMut, MmapOptions};

/// Maps `len` bytes of `file` from `offset` (a multiple of the page size) read-write and
/// shared.
///
/// The caller must hold the file's exclusive lock ([`lock_exclusive`]) for as long as the map
/// lives, must not change the file's length while it is mapped, and must not write the mapped
/// range by any other means (the flushers only `pwrite` bytes outside it and `fdatasync`).
pub fn map_shared(file: &File, offset: u64, len: usize) -> io::Result<MmapMut> {
    // SAFETY: memmap2 marks mapping unsafe because the file could be truncated (accesses then
    // raise SIGBUS) or modified behind the `&mut [u8]` it hands out. Every caller takes an
    // exclusive `flock` on the file first, as every shake process does, so no other shake
    // process maps, writes or resizes it while this map lives; within the process the mapped
    // range has exactly one owner and nothing else writes it (see the contract above).
    unsafe { MmapOptions::new().offset(offset).len(len).map_mut(file) }
}

/// Takes an exclusive advisory lock on `file` without waiting: two nodes (or a node and a
/// tool that writes) must never map the same shard or journal segment.
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: flock takes a valid open descriptor (borrowed from `file` for the call) and an
    // integer flag; it touches no memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reserves disk blocks for the first `len` bytes of `file` (and extends it to `len`), so that
/// writing through a mapping can never hit a full disk: on a sparse file that would be a
/// SIGBUS in the worker instead of an error in the flusher.
pub fn allocate(file: &File, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: posix_fallocate takes a valid open descriptor and two integers; it touches no
    // memory of ours. It returns the error number instead of setting errno.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate (tmpfs has it; some FUSE ones do not): fall back to a
        // sparse extension, which is correct but not protected against a full disk.
        libc::EOPNOTSUPP => file.set_len(len as u64),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}
