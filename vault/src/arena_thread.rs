//! Threads whose stacks live inside the secure heap's arena.
//!
//! OpenSSL's fastest 2048-bit path (`ossl_rsaz_mod_exp_avx512_x2`) copies
//! the CRT exponents dp and dq into an array on the calling thread's stack
//! for the length of each decryption (measured: the key-locality suite's
//! samples found both there, mid-decryption, in an ordinary thread's
//! stack). Other paths leave smaller intermediate values there. So every
//! thread that touches the key (key generation, decryption) runs on a stack
//! carved from the arena: locked, never dumped, wiped when it is freed,
//! and, where the arena is on secret memory, out of the kernel's direct map
//! too. The lowest page of each stack is made inaccessible, so an overflow
//! faults instead of writing into the arena block below it.
//!
//! `std::thread` cannot be given a stack, so these are made with
//! `pthread_create` and `pthread_attr_setstack`; the closure runs through a
//! trampoline and hands back its result when joined.

use std::ffi::c_void;
use std::io;
use std::ptr::NonNull;

extern "C" {
    fn CRYPTO_secure_malloc(num: usize, file: *const std::ffi::c_char, line: i32) -> *mut c_void;
    fn CRYPTO_secure_clear_free(
        ptr: *mut c_void,
        num: usize,
        file: *const std::ffi::c_char,
        line: i32,
    );
    fn CRYPTO_secure_allocated(ptr: *const c_void) -> i32;
}

/// Stack size of an arena thread (a power of two: the arena's buddy
/// allocator then aligns the block to it, so it is page-aligned).
pub const STACK_SIZE: usize = 256 * 1024;
const GUARD: usize = 4096;

/// Errors of starting an arena thread.
#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    #[error("the secure heap has no room for a {STACK_SIZE}-byte thread stack")]
    NoRoom,
    #[error("cannot start a thread on a secure-heap stack: {what}")]
    Start {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The closure and the slot for its result, owned by the thread while it
/// runs.
struct Job<T> {
    f: Option<Box<dyn FnOnce() -> T + Send>>,
    result: Option<T>,
}

extern "C" fn trampoline<T>(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the `Box<Job<T>>` leaked by `spawn`, which does not
    // touch it again until `join` has returned from pthread_join.
    let job = unsafe { &mut *arg.cast::<Job<T>>() };
    if let Some(f) = job.f.take() {
        // A panic aborts the vault (its panic hook), so it never unwinds
        // through this extern "C" frame.
        job.result = Some(f());
    }
    arg
}

/// A running arena thread.
#[derive(Debug)]
pub struct ArenaThread<T> {
    thread: libc::pthread_t,
    stack: NonNull<c_void>,
    job: *mut Job<T>,
}

// SAFETY: the handle only holds the thread id, the stack block and the job
// box, which the thread shares with whoever joins it through pthread_join's
// synchronisation; T is Send.
unsafe impl<T: Send> Send for ArenaThread<T> {}

impl<T> std::fmt::Debug for Job<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// Starts `f` on a new thread whose stack is an arena block.
pub fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<ArenaThread<T>, ThreadError> {
    let file = c"vault/arena_thread.rs".as_ptr();
    // Not zeroed: pages of the stack the thread never reaches stay
    // untouched, so they take no memory (the arena is locked on fault).
    // SAFETY: an allocation from the (initialised) arena.
    let stack = NonNull::new(unsafe { CRYPTO_secure_malloc(STACK_SIZE, file, 0) })
        .ok_or(ThreadError::NoRoom)?;
    // SAFETY: an address comparison only.
    if unsafe { CRYPTO_secure_allocated(stack.as_ptr()) } != 1
        || (stack.as_ptr() as usize) % GUARD != 0
    {
        // SAFETY: frees what was just allocated (from wherever it came).
        unsafe { CRYPTO_secure_clear_free(stack.as_ptr(), STACK_SIZE, file, 0) };
        return Err(ThreadError::NoRoom);
    }
    let start = |what| move |source| ThreadError::Start { what, source };
    let free_stack = || {
        // SAFETY: the block was allocated above and no thread uses it.
        unsafe { CRYPTO_secure_clear_free(stack.as_ptr(), STACK_SIZE, file, 0) }
    };
    // SAFETY: the lowest page of our own block becomes inaccessible.
    if unsafe { libc::mprotect(stack.as_ptr(), GUARD, libc::PROT_NONE) } != 0 {
        let e = io::Error::last_os_error();
        free_stack();
        return Err(start("protecting its guard page")(e));
    }
    let unguard = || {
        // SAFETY: restores our own block's first page.
        unsafe { libc::mprotect(stack.as_ptr(), GUARD, libc::PROT_READ | libc::PROT_WRITE) };
    };
    let job = Box::into_raw(Box::new(Job::<T> {
        f: Some(Box::new(f)),
        result: None,
    }));
    // SAFETY: attr is initialised before use and destroyed after; the stack
    // range is our arena block (the thread must not use it after it ends,
    // which pthread_join guarantees before we free it).
    let created = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut r = libc::pthread_attr_init(&mut attr);
        if r == 0 {
            r = libc::pthread_attr_setstack(&mut attr, stack.as_ptr(), STACK_SIZE);
        }
        let mut thread: libc::pthread_t = 0;
        if r == 0 {
            r = libc::pthread_create(&mut thread, &attr, trampoline::<T>, job.cast());
        }
        libc::pthread_attr_destroy(&mut attr);
        (r, thread)
    };
    match created {
        (0, thread) => Ok(ArenaThread { thread, stack, job }),
        (err, _) => {
            // SAFETY: the thread was not created; the job is ours again.
            drop(unsafe { Box::from_raw(job) });
            unguard();
            free_stack();
            Err(start("pthread_create")(io::Error::from_raw_os_error(err)))
        }
    }
}

impl<T> ArenaThread<T> {
    /// Waits for the thread, wipes and frees its stack, and returns what the
    /// closure returned.
    pub fn join(self) -> Option<T> {
        let mut ret: *mut c_void = std::ptr::null_mut();
        // SAFETY: joining the thread we created, once (self is consumed).
        let r = unsafe { libc::pthread_join(self.thread, &mut ret) };
        // SAFETY: the job box was leaked by `spawn`; the thread has ended
        // (pthread_join returned 0) or never will use it again.
        let job = unsafe { Box::from_raw(self.job) };
        if r == 0 {
            // SAFETY: the thread is gone: its stack block is ours to restore,
            // wipe and return to the arena.
            unsafe {
                libc::mprotect(
                    self.stack.as_ptr(),
                    GUARD,
                    libc::PROT_READ | libc::PROT_WRITE,
                );
                CRYPTO_secure_clear_free(
                    self.stack.as_ptr(),
                    STACK_SIZE,
                    c"vault/arena_thread.rs".as_ptr(),
                    0,
                );
            }
        }
        job.result
    }
}
