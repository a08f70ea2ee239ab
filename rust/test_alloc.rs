//! The test binary's allocator: the system one, counting the heap bytes that each thread holds,
//! so a test can measure what a piece of work costs in memory, exactly and unaffected by the
//! tests that run beside it on other threads. Memory freed on another thread than the one that
//! allocated it is counted against the freeing thread; the work measured here frees its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    // try_with: a thread being torn down has no counters left, and needs none.
    let _ = HELD.try_with(|held| {
        let now = held.get() + delta;
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as the moment both blocks exist, which a moving realloc may reach.
        account(new_size as isize);
        account(-(layout.size() as isize));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Run `work` and return its result with the most heap bytes it held at once on this thread,
/// beyond what the thread held before (what it returns included, if still held at the peak).
pub(crate) fn peak_heap<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let base = HELD.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let out = work();
    let peak = PEAK.with(Cell::get);
    (out, (peak - base).max(0) as u64)
}
