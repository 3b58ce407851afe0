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
//!   (wipes) the old one; a libc block grows into the arena once it exists;
//! - one exception: OpenSSL's locks (`pthread_rwlock_t`, allocated in its
//!   `threads_pthread.c`) always come from libc. They hold no secret, and
//!   the kernel's futex cannot reach them on secret memory ([`is_lock`]).
//!
//! The functions can only be installed before OpenSSL allocates anything
//! (`CRYPTO_set_mem_functions` returns 0 after that): [`install`] is the
//! first thing the vault's `main` does, and [`check_installed`] verifies,
//! once OpenSSL is initialised, that they are still the ones in force.
//! The arena's bounds are recorded once ([`record_arena`]) so that `free`
//! can tell an arena block from a libc one without OpenSSL's lock.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

std::thread_local! {
    /// Allocations the full arena refused on this thread.
    static REFUSED_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many allocations the full arena has refused so far.
pub fn refused() -> usize {
    REFUSED.load(Ordering::Relaxed)
}

/// How many allocations the full arena has refused on this thread (to tell
/// a failure for want of room from another one).
pub fn refused_here() -> usize {
    REFUSED_HERE.with(std::cell::Cell::get)
}

/// The arena's high-water mark, in bytes (buddy-rounded, as OpenSSL counts).
pub fn high_water() -> usize {
    HIGH_WATER.load(Ordering::Relaxed)
}

/// Accounts for one allocation from the arena, by this allocator or
/// directly (`vault::heap::SecureBuf`): refused, or the new high-water mark.
pub fn note(granted: bool) {
    if granted {
        // SAFETY: called after an arena allocation: the arena and the lock
        // this takes exist.
        HIGH_WATER.fetch_max(unsafe { CRYPTO_secure_used() }, Ordering::Relaxed);
    } else {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        REFUSED_HERE.with(|c| c.set(c.get() + 1));
    }
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

/// Whether one of OpenSSL's locks was seen being allocated, by its file
/// name (see [`is_lock`]).
static LOCKS_SEEN: AtomicBool = AtomicBool::new(false);
/// Locks allocated from libc after the arena existed.
static LOCKS_OUTSIDE: AtomicUsize = AtomicUsize::new(0);

/// The file OpenSSL names for its thread locks (`CRYPTO_THREAD_lock_new`
/// allocates a `pthread_rwlock_t` there).
const LOCK_FILE: &[u8] = b"threads_pthread.c";

/// Whether an allocation OpenSSL makes from `file` is one of its locks.
///
/// A lock holds no secret, and it must stay where the kernel's futex can
/// reach it: a contended `pthread_rwlock_t` sleeps in `futex(2)`, which
/// fails with EFAULT on `memfd_secret` memory (glibc then aborts). So
/// locks come from libc even once the arena exists, which lets the arena
/// move onto secret memory ([`crate::secret_arena`]). OpenSSL passes its
/// source file's name with every allocation unless it was built with
/// `OPENSSL_NO_FILENAMES`; [`locks_identified`] tells whether it does.
fn is_lock(file: *const c_char) -> bool {
    if file.is_null() {
        return false;
    }
    // SAFETY: OpenSSL passes a NUL-terminated static string (its
    // `OPENSSL_FILE`) or NULL, checked above.
    let name = unsafe { std::ffi::CStr::from_ptr(file) }.to_bytes();
    let lock = name.ends_with(LOCK_FILE);
    if lock {
        LOCKS_SEEN.store(true, Ordering::Relaxed);
    }
    lock
}

/// Whether OpenSSL's lock allocations can be told apart (one was seen by
/// its file name): without that, a lock could land in the arena, and the
/// arena must not move onto secret memory.
pub fn locks_identified() -> bool {
    LOCKS_SEEN.load(Ordering::Relaxed)
}

/// How many of OpenSSL's locks were allocated from libc after the arena
/// existed (the others came before it).
pub fn locks_outside_arena() -> usize {
    LOCKS_OUTSIDE.load(Ordering::Relaxed)
}

unsafe extern "C" fn vault_malloc(num: usize, file: *const c_char, line: c_int) -> *mut c_void {
    if num == 0 {
        return std::ptr::null_mut();
    }
    let lock = is_lock(file);
    if initialized() && lock {
        LOCKS_OUTSIDE.fetch_add(1, Ordering::Relaxed);
    }
    if initialized() && !lock {
        // SAFETY: OpenSSL's own secure allocator, arena initialised; it
        // returns NULL when the arena is full (no fall back).
        let p = unsafe { CRYPTO_secure_malloc(num, file, line) };
        note(!p.is_null());
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

/// Whether OpenSSL's own range check says `[a, b)` is exactly its arena:
/// true at both ends, false one byte beyond each.
pub fn arena_agrees(a: usize, b: usize) -> bool {
    // SAFETY: address comparisons only; nothing is dereferenced.
    initialized()
        && a > 0
        && unsafe {
            CRYPTO_secure_allocated(a as *const c_void) == 1
                && CRYPTO_secure_allocated((b - 1) as *const c_void) == 1
                && CRYPTO_secure_allocated((a - 1) as *const c_void) == 0
                && CRYPTO_secure_allocated(b as *const c_void) == 0
        }
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
    if !arena_agrees(a, b) {
        return Err(AllocError::ArenaNotFound(
            "OpenSSL's range check disagrees with the mapping".into(),
        ));
    }
    ARENA_START.store(a, Ordering::Release);
    ARENA_END.store(b, Ordering::Release);
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the test `name` again in a fresh process of this test binary,
    /// where `f` does the work: OpenSSL's allocator is chosen once per
    /// process, before OpenSSL allocates anything, which in the test runner
    /// other tests may already have made it do.
    fn in_fresh_process(name: &str, f: fn() -> bool) {
        if std::env::var_os("VAULT_ALLOC_TEST_CHILD").is_some() {
            assert!(f(), "{name} failed in its fresh process");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1", "--quiet"])
            .env("VAULT_ALLOC_TEST_CHILD", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: its fresh process failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn installed_too_late_is_refused() {
        in_fresh_process("alloc::tests::installed_too_late_is_refused", || {
            // Something made OpenSSL allocate first: the install is refused.
            openssl::init();
            let _ = openssl::rand::rand_bytes(&mut [0u8; 8]);
            matches!(install(), Err(AllocError::TooLate))
        });
    }

    unsafe extern "C" fn other_malloc(n: usize, _: *const c_char, _: c_int) -> *mut c_void {
        // SAFETY: plain libc allocation.
        unsafe { libc::malloc(n) }
    }

    #[test]
    fn every_block_comes_from_the_arena_once_it_exists_and_none_when_full() {
        in_fresh_process(
            "alloc::tests::every_block_comes_from_the_arena_once_it_exists_and_none_when_full",
            || {
                if install().is_err()
                    || crate::heap::init(1 << 20, 16).is_err()
                    || record_arena(1 << 20).is_err()
                {
                    return false;
                }
                let file = c"test".as_ptr();
                // SAFETY: this allocator's own functions, on blocks they gave.
                unsafe {
                    let p = vault_malloc(100, file, 0);
                    let in_arena_ok = in_arena(p);
                    p.cast::<u8>().write_bytes(0xAB, 100);
                    let q = vault_realloc(p, 5000, file, 0);
                    let kept = q.cast::<u8>().read() == 0xAB && in_arena(q);
                    vault_free(q, file, 0);
                    // OpenSSL's own allocations land there too.
                    let mut bn = openssl::bn::BigNum::new().unwrap();
                    bn.set_bit(4000).unwrap();
                    let limbs = bn.to_vec();
                    let openssl_ok = !limbs.is_empty();
                    // Fill the arena: allocation fails, never falls back.
                    let mut n = 0;
                    while !vault_malloc(4096, file, 0).is_null() {
                        n += 1;
                    }
                    let refused_ok = refused() >= 1 && refused_here() >= 1 && n > 100;
                    in_arena_ok && kept && openssl_ok && refused_ok && high_water() > 0
                }
            },
        );
    }

    #[test]
    fn a_replaced_allocator_is_noticed() {
        in_fresh_process("alloc::tests::a_replaced_allocator_is_noticed", || {
            if install().is_err() {
                return false;
            }
            // Before OpenSSL allocates anything, another library could
            // still install its own functions after ours.
            // SAFETY: valid function pointers of the right signatures.
            let ok = unsafe { CRYPTO_set_mem_functions(other_malloc, vault_realloc, vault_free) };
            ok == 1 && matches!(check_installed(), Err(AllocError::Replaced))
        });
    }
}
