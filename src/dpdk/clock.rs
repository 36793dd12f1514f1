//! Unix milliseconds from the TSC: one `rdtsc` per burst instead of a system call per
//! packet.

use std::time::{SystemTime, UNIX_EPOCH};

/// A TSC reading anchored to the wall clock once. Copied to every worker so they all tell
/// the same time (the TSC is invariant and synchronised across cores on the CPUs DPDK
/// supports).
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    tsc0: u64,
    ms0: u64,
    hz: u64,
    /// Milliseconds per cycle as a 16.48 fixed-point number: exact to about 1e-8.
    ms_per_cycle: u128,
}

impl TscClock {
    /// Anchors the TSC to the system clock now. Needs the EAL, which measured the TSC rate.
    pub fn anchor_now(_eal: &super::Eal) -> TscClock {
        // SAFETY: reads the EAL's TSC frequency and the TSC; the EAL is initialised (`_eal`
        // proves it).
        let (hz, tsc0) = unsafe { (dpdk_sys::shake_get_tsc_hz(), dpdk_sys::shake_rdtsc()) };
        let ms0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        TscClock::with(tsc0, ms0, hz)
    }

    /// A clock from explicit values (tests).
    pub fn with(tsc0: u64, ms0: u64, hz: u64) -> TscClock {
        let hz = hz.max(1);
        TscClock {
            tsc0,
            ms0,
            hz,
            // Rounded up, so a whole second of cycles is never a millisecond short.
            ms_per_cycle: (1000u128 << 48).div_ceil(u128::from(hz)),
        }
    }

    /// The TSC now.
    #[inline]
    pub fn tsc() -> u64 {
        // rte_rdtsc is the bare instruction; inline here, not an FFI call.
        #[cfg(target_arch = "x86_64")]
        // SAFETY: rdtsc has no preconditions.
        unsafe {
            std::arch::x86_64::_rdtsc()
        }
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: rte_rdtsc has no preconditions.
        unsafe {
            dpdk_sys::shake_rdtsc()
        }
    }

    /// Cycles per second.
    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// Unix milliseconds at TSC value `tsc`.
    #[inline]
    pub fn ms_at(&self, tsc: u64) -> u64 {
        let cycles = u128::from(tsc.wrapping_sub(self.tsc0));
        self.ms0 + ((cycles * self.ms_per_cycle) >> 48) as u64
    }

    /// TSC cycles in `ms` milliseconds.
    pub fn cycles_in_ms(&self, ms: u64) -> u64 {
        self.hz / 1000 * ms
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn tsc_to_unix_ms() {
        let hz = 2_893_437_000;
        let c = TscClock::with(1_000, 1_700_000_000_000, hz);
        assert_eq!(c.ms_at(1_000), 1_700_000_000_000);
        assert_eq!(c.ms_at(1_000 + hz), 1_700_000_001_000);
        // A day later, still exact to the millisecond.
        assert_eq!(c.ms_at(1_000 + hz * 86_400), 1_700_000_000_000 + 86_400_000);
        assert_eq!(c.ms_at(1_000 + hz / 2), 1_700_000_000_500);
        assert_eq!(c.cycles_in_ms(100), hz / 10);
    }
}
