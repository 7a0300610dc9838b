//! A global allocator that counts live heap bytes per "side" (a thread-local tag), for the
//! memory tests of `cusp-sim` and `cusp` (included by path from both).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

/// Live bytes by side: 0 = untagged, 1 and 2 = the two tagged sides.
static LIVE: [AtomicI64; 3] = [AtomicI64::new(0), AtomicI64::new(0), AtomicI64::new(0)];
thread_local! {
    static SIDE: Cell<usize> = const { Cell::new(0) };
}
const HDR: usize = 16;

struct Counting;

// SAFETY: forwards to `System` with a larger layout whose first `align` bytes hold the side
// the block was counted for, so `dealloc` subtracts from the same counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let align = layout.align().max(HDR);
        let Ok(l) = Layout::from_size_align(layout.size() + align, align) else {
            return std::ptr::null_mut();
        };
        // SAFETY: non-zero size; the header lives in the first `align` bytes.
        unsafe {
            let p = System.alloc(l);
            if p.is_null() {
                return p;
            }
            let side = SIDE.try_with(|s| s.get()).unwrap_or(0);
            LIVE[side].fetch_add(layout.size() as i64, Ordering::Relaxed);
            let user = p.add(align);
            (user.sub(8) as *mut usize).write(side);
            user
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let align = layout.align().max(HDR);
        // SAFETY: `ptr` came from `alloc` with the same layout.
        unsafe {
            let side = (ptr.sub(8) as *const usize).read();
            LIVE[side].fetch_sub(layout.size() as i64, Ordering::Relaxed);
            let l = Layout::from_size_align_unchecked(layout.size() + align, align);
            System.dealloc(ptr.sub(align), l);
        }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with this thread's allocations counted for `side`.
pub fn with_side<R>(side: usize, f: impl FnOnce() -> R) -> R {
    let old = SIDE.with(|s| s.replace(side));
    let r = f();
    SIDE.with(|s| s.set(old));
    r
}

/// Live heap bytes counted for `side`.
pub fn live(side: usize) -> i64 {
    LIVE[side].load(Ordering::Relaxed)
}
