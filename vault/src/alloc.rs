//! OpenSSL's allocations, all of them, inside its own secure heap.
//!
//! With `RSA_FLAG_CACHE_PRIVATE` on (OpenSSL's default, and what its fastest
//! 2048-bit CRT path needs), OpenSSL keeps Montgomery contexts of p and q:
//! copies of p and q and the constants R² mod p, R² mod q, made with
//! ordinary `OPENSSL_malloc`, since `BN_copy` does not carry
//! `BN_FLG_SECURE`. So do its blinding values, the temporaries of every
//! private operation (`BN_CTX`), and its DRBGs. Rather than chase each one,
//! the vault gives OpenSSL an allocator (`CRYPTO_set_mem_functions`) that
//! serves every request from the secure heap once the arena exists:
//!
//! - before the arena exists, the only allocations are OpenSSL's
//!   bookkeeping of the arena itself (its lock and three tables) and of its
//!   own start; nothing secret exists yet, and they come from libc;
//! - from then on every block comes from the arena, and a full arena is a
//!   failed allocation (NULL: OpenSSL's operation fails with an error), never
//!   a fall back to the ordinary heap;
//! - a block is freed where it came from: one inside the arena goes back to
//!   it, wiped by OpenSSL's `CRYPTO_secure_free`; any other was libc's, and
//!   is wiped before libc gets it back;
//! - `realloc` of an arena block takes a new arena block, copies, and frees
//!   (wipes) the old one; a libc block grows into the arena once it exists.
//!
//! The functions can only be installed before OpenSSL allocates anything
//! (`CRYPTO_set_mem_functions` returns 0 after that): [`install`] is the
//! first thing the vault's `main` does, and [`check_installed`] verifies,
//! once OpenSSL is initialised, that they are still the ones in force.
//! The arena's bounds are recorded once ([`record_arena`]) so that `free`
//! can tell an arena block from a libc one without OpenSSL's lock.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

type MallocFn = unsafe extern "C" fn(usize, *const c_char, c_int) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize, *const c_char, c_int) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void, *const c_char, c_int);

extern "C" {
    fn CRYPTO_set_mem_functions(m: MallocFn, r: ReallocFn, f: FreeFn) -> c_int;
    fn CRYPTO_get_mem_functions(
        m: *mut Option<MallocFn>,
        r: *mut Option<ReallocFn>,
        f: *mut Option<FreeFn>,
    );
    fn CRYPTO_secure_malloc(num: usize, file: *const c_char, line: c_int) -> *mut c_void;
    fn CRYPTO_secure_free(ptr: *mut c_void, file: *const c_char, line: c_int);
    fn CRYPTO_secure_actual_size(ptr: *mut c_void) -> usize;
    fn CRYPTO_secure_malloc_initialized() -> c_int;
    fn CRYPTO_secure_allocated(ptr: *const c_void) -> c_int;
    fn CRYPTO_secure_used() -> usize;
    fn OPENSSL_cleanse(ptr: *mut c_void, len: usize);
}

/// Errors of installing the allocator.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("OpenSSL refused the secure-heap allocator (CRYPTO_set_mem_functions returned 0): something made OpenSSL allocate before the vault's first step, so its state could live outside the secure heap; refusing to start")]
    TooLate,
    #[error("OpenSSL's allocator was replaced after the vault installed its own (by a library or configuration loaded at initialisation); refusing to start")]
    Replaced,
    #[error("cannot find the secure heap's arena in /proc/self/maps ({0})")]
    ArenaNotFound(String),
}

/// The arena's bounds, `[START, END)`, once recorded; 0 before.
static ARENA_START: AtomicUsize = AtomicUsize::new(0);
static ARENA_END: AtomicUsize = AtomicUsize::new(0);
/// Allocations refused because the arena was full (for the status).
static REFUSED: AtomicUsize = AtomicUsize::new(0);
/// The most the arena has held (`CRYPTO_secure_used` after allocations).
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);

/// How many allocations the full arena has refused so far.
pub fn refused() -> usize {
    REFUSED.load(Ordering::Relaxed)
}

/// The arena's high-water mark, in bytes (buddy-rounded, as OpenSSL counts).
pub fn high_water() -> usize {
    HIGH_WATER.load(Ordering::Relaxed)
}

fn initialized() -> bool {
    // SAFETY: reads a flag; no preconditions.
    unsafe { CRYPTO_secure_malloc_initialized() == 1 }
}

/// Whether `p` is inside the arena.
fn in_arena(p: *const c_void) -> bool {
    let end = ARENA_END.load(Ordering::Acquire);
    if end != 0 {
        let a = p as usize;
        return a >= ARENA_START.load(Ordering::Acquire) && a < end;
    }
    // Between CRYPTO_secure_malloc_init and record_arena (one thread, a few
    // calls): OpenSSL's own range check, which takes its lock.
    // SAFETY: an address comparison only; never dereferenced.
    initialized() && unsafe { CRYPTO_secure_allocated(p) == 1 }
}

unsafe extern "C" fn vault_malloc(num: usize, file: *const c_char, line: c_int) -> *mut c_void {
    if num == 0 {
        return std::ptr::null_mut();
    }
    if initialized() {
        // SAFETY: OpenSSL's own secure allocator, arena initialised; it
        // returns NULL when the arena is full (no fall back).
        let p = unsafe { CRYPTO_secure_malloc(num, file, line) };
        if p.is_null() {
            REFUSED.fetch_add(1, Ordering::Relaxed);
        } else {
            // SAFETY: the arena (and the lock this takes) exists.
            HIGH_WATER.fetch_max(unsafe { CRYPTO_secure_used() }, Ordering::Relaxed);
        }
        return p;
    }
    // SAFETY: plain libc allocation.
    unsafe { libc::malloc(num) }
}

unsafe extern "C" fn vault_free(ptr: *mut c_void, file: *const c_char, line: c_int) {
    if ptr.is_null() {
        return;
    }
    if in_arena(ptr) {
        // SAFETY: `ptr` is an arena block OpenSSL gave out; secure_free
        // wipes it before it goes back to the arena.
        unsafe { CRYPTO_secure_free(ptr, file, line) };
    } else {
        // SAFETY: a libc block (allocated before the arena existed): wiped
        // over its usable size, then freed.
        unsafe {
            OPENSSL_cleanse(ptr, libc::malloc_usable_size(ptr));
            libc::free(ptr);
        }
    }
}

unsafe extern "C" fn vault_realloc(
    ptr: *mut c_void,
    num: usize,
    file: *const c_char,
    line: c_int,
) -> *mut c_void {
    if ptr.is_null() {
        // SAFETY: as for any allocation.
        return unsafe { vault_malloc(num, file, line) };
    }
    if num == 0 {
        // SAFETY: `ptr` came from this allocator.
        unsafe { vault_free(ptr, file, line) };
        return std::ptr::null_mut();
    }
    let old_size = if in_arena(ptr) {
        // SAFETY: an arena block (checked above), which is the only kind
        // actual_size accepts.
        unsafe { CRYPTO_secure_actual_size(ptr) }
    } else if !initialized() {
        // Before the arena: libc's own realloc.
        // SAFETY: a libc block.
        return unsafe { libc::realloc(ptr, num) };
    } else {
        // SAFETY: a libc block.
        unsafe { libc::malloc_usable_size(ptr) }
    };
    if in_arena(ptr) && num <= old_size {
        return ptr;
    }
    // SAFETY: as for any allocation.
    let new = unsafe { vault_malloc(num, file, line) };
    if new.is_null() {
        // realloc's contract: the old block stays valid.
        return new;
    }
    // SAFETY: both blocks are live and at least min(old, num) bytes long;
    // they do not overlap (the new one was just allocated).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), new.cast::<u8>(), old_size.min(num));
        vault_free(ptr, file, line);
    }
    new
}

/// Installs the allocator. Must be the vault's first step: OpenSSL accepts
/// it only before it has allocated anything.
pub fn install() -> Result<(), AllocError> {
    // SAFETY: the three functions have the signatures OpenSSL expects and
    // are safe to call from any thread at any time.
    let ok = unsafe { CRYPTO_set_mem_functions(vault_malloc, vault_realloc, vault_free) };
    if ok != 1 {
        return Err(AllocError::TooLate);
    }
    check_installed()
}

/// Checks that the allocator in force is still this one.
pub fn check_installed() -> Result<(), AllocError> {
    let (mut m, mut r, mut f) = (None, None, None);
    // SAFETY: writes three function pointers into our locals.
    unsafe { CRYPTO_get_mem_functions(&mut m, &mut r, &mut f) };
    // Compared as addresses: the functions OpenSSL holds are ours.
    let same = m.is_some_and(|m| m as *const () == vault_malloc as *const ())
        && r.is_some_and(|r| r as *const () == vault_realloc as *const ())
        && f.is_some_and(|f| f as *const () == vault_free as *const ());
    if same {
        Ok(())
    } else {
        Err(AllocError::Replaced)
    }
}

/// The arena's bounds, as found in `/proc/self/maps`: the one mapping
/// that holds `inside`, which must be exactly `size` bytes.
pub fn find_arena(inside: usize, size: usize) -> Result<(usize, usize), AllocError> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| AllocError::ArenaNotFound(e.to_string()))?;
    for line in maps.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        if (a..b).contains(&inside) {
            if b - a != size {
                return Err(AllocError::ArenaNotFound(format!(
                    "the mapping holding a secure block is {} bytes, not the arena's {size}",
                    b - a
                )));
            }
            return Ok((a, b));
        }
    }
    Err(AllocError::ArenaNotFound(
        "no mapping holds a secure block".into(),
    ))
}

/// Records the arena's bounds (after `CRYPTO_secure_malloc_init`, while the
/// vault is single-threaded), checked against OpenSSL's own range test at
/// both ends and one byte beyond each.
pub fn record_arena(size: usize) -> Result<(usize, usize), AllocError> {
    // SAFETY: a small allocation from the (initialised) arena, freed below.
    let probe = unsafe { CRYPTO_secure_malloc(16, c"vault/alloc.rs".as_ptr(), 0) };
    if probe.is_null() {
        return Err(AllocError::ArenaNotFound("the arena gave no block".into()));
    }
    let found = find_arena(probe as usize, size);
    // SAFETY: the probe came from the arena.
    unsafe { CRYPTO_secure_free(probe, c"vault/alloc.rs".as_ptr(), 0) };
    let (a, b) = found?;
    // SAFETY: address comparisons only.
    let agrees = unsafe {
        CRYPTO_secure_allocated(a as *const c_void) == 1
            && CRYPTO_secure_allocated((b - 1) as *const c_void) == 1
            && CRYPTO_secure_allocated((a - 1) as *const c_void) == 0
            && CRYPTO_secure_allocated(b as *const c_void) == 0
    };
    if !agrees {
        return Err(AllocError::ArenaNotFound(
            "OpenSSL's range check disagrees with the mapping".into(),
        ));
    }
    ARENA_START.store(a, Ordering::Release);
    ARENA_END.store(b, Ordering::Release);
    Ok((a, b))
}
