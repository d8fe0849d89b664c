//! Giving freed memory back to the operating system.
//!
//! The binaries allocate with mimalloc, which returns freed pages by itself; what C
//! code allocates with the C library's `malloc` (SQLite's page cache and statements)
//! stays in glibc's arenas for reuse, so that part of a node's resident size would
//! stay at its peak long after the memory was freed. `malloc_trim` returns the free
//! pages; the maintenance task calls this after idle connections have been closed.
//! It is process-wide, so it runs at most once every 30 s however many nodes share
//! the process.

use std::sync::atomic::{AtomicU64, Ordering};

static LAST_MS: AtomicU64 = AtomicU64::new(0);
const EVERY_MS: u64 = 30_000;

/// Returns free heap memory to the OS; a no-op where the C library lacks it.
pub fn release_free_memory() {
    let now = crate::clock::system_ms();
    let last = LAST_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < EVERY_MS
        || LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no
    // pointers from us and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
