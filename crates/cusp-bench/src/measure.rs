//! Measurement helpers: per-thread CPU time, resident set size, a counting
//! allocator for live heap bytes, and percentiles.
//!
//! * CPU time: `getrusage(RUSAGE_THREAD)` (user + system) read at the start and end
//!   of each end's thread. Each end runs on its own OS thread with a current-thread
//!   tokio runtime, so this is all the CPU that end spent (kernel work done in its
//!   syscalls included; softirq work the kernel charges to the other thread or to
//!   ksoftirqd is not).
//! * RSS: field 2 of `/proc/self/statm` (resident pages) times the page size.
//! * Heap: [`CountingAlloc`], a wrapper around the system allocator that, while
//!   [`heap_counting`] is on, adds every allocation's size to a live-bytes counter
//!   and subtracts every free.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::Duration;

use crate::{BenchError, Result};

/// CPU time (user + system) consumed so far by the calling thread.
pub fn thread_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory of the right size and type;
    // getrusage only writes into it. RUSAGE_THREAD is valid on Linux.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it initialised the struct (and it was
    // zeroed before, so every field is initialised either way).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BenchError::Other(format!("unexpected /proc/self/statm: {statm}")))?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * u64::try_from(page).unwrap_or(4096))
}

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// Global allocator wrapper counting live heap bytes while [`heap_counting`] is on.
/// Install it in the binary with `#[global_allocator]`. When counting is off its
/// cost is one relaxed load of a flag that never changes during the hot workloads.
pub struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged;
// the counters are side effects only.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded contract of GlobalAlloc::alloc.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded contract of GlobalAlloc::alloc_zeroed.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded contract of GlobalAlloc::dealloc.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        // SAFETY: forwarded contract of GlobalAlloc::realloc.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Turns live-heap counting on or off (only meaningful with [`CountingAlloc`] installed).
pub fn heap_counting(on: bool) {
    COUNTING.store(on, Ordering::SeqCst);
}

/// Live heap bytes counted since counting was first turned on; compare two readings
/// taken while counting is on.
pub fn live_heap() -> i64 {
    LIVE.load(Ordering::SeqCst) as i64
}

/// A snapshot of process memory: RSS and counted live heap.
#[derive(Debug, Clone, Copy)]
pub struct MemSnapshot {
    /// Resident bytes.
    pub rss: u64,
    /// Counted live heap bytes.
    pub heap: i64,
}

impl MemSnapshot {
    /// Takes a snapshot now.
    pub fn now() -> Result<Self> {
        Ok(MemSnapshot {
            rss: rss_bytes()?,
            heap: live_heap(),
        })
    }

    /// `(rss, heap)` growth since `earlier`, divided by `n`.
    pub fn per_item_since(&self, earlier: &MemSnapshot, n: usize) -> (f64, f64) {
        let n = n.max(1) as f64;
        (
            (self.rss as f64 - earlier.rss as f64) / n,
            (self.heap - earlier.heap) as f64 / n,
        )
    }
}

/// The `q`-quantile (0..=1) of `samples` (nearest rank); `None` if empty.
pub fn percentile(samples: &[Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Median of `values` (mean of the two middle ones for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_median() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&s, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn cpu_and_rss_readable() {
        let t0 = thread_cpu();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu() >= t0);
        assert!(rss_bytes().unwrap() > 0);
    }
}
