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
//! The thread itself is an ordinary `pthread_create` thread, on a stack
//! glibc maps: glibc keeps its thread control block at the top of the
//! thread's stack, with the words the kernel's futex waits on (the thread
//! id that `pthread_join` sleeps on, the thread's own lock), and the futex
//! cannot reach secret memory (EFAULT, on which glibc aborts). So the
//! thread's first act is to switch to the arena stack (`makecontext`,
//! `swapcontext`) and run the closure there; when the closure returns,
//! the thread is back on its own stack (the context's `uc_link`), returns,
//! and is joined as any other. The closure's frames, everything that
//! touches the key, are on the arena stack; the thread's own stack holds
//! the trampoline's frames and glibc's, and no key material.

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
/// Size of the thread's own (ordinary) stack: glibc's start and end of a
/// thread, the trampoline, and signal handlers that run while it is there.
const OWN_STACK_SIZE: usize = 64 * 1024;

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

/// The closure, the slot for its result, and the arena stack it runs on,
/// owned by the thread while it runs.
struct Job<T> {
    f: Option<Box<dyn FnOnce() -> T + Send>>,
    result: Option<T>,
    /// The usable part of the arena stack (above its guard page).
    stack: *mut c_void,
    stack_len: usize,
}

std::thread_local! {
    /// The job `on_arena_stack` runs: `makecontext` passes only `int`
    /// arguments, so the pointer goes through the thread's own slot.
    static CURRENT_JOB: std::cell::Cell<*mut c_void> =
        const { std::cell::Cell::new(std::ptr::null_mut()) };
}

/// Runs on the arena stack: the closure of the thread's job.
extern "C" fn on_arena_stack<T>() {
    let job = CURRENT_JOB.with(std::cell::Cell::get).cast::<Job<T>>();
    // SAFETY: set by `trampoline` on this thread to the live job, which
    // nothing else touches until `join` has returned from pthread_join.
    let job = unsafe { &mut *job };
    if let Some(f) = job.f.take() {
        // A panic aborts the vault (its panic hook), so it never unwinds
        // through this extern "C" frame.
        job.result = Some(f());
    }
    // Returning resumes the context in `uc_link`: the thread's own stack.
}

extern "C" fn trampoline<T>(arg: *mut c_void) -> *mut c_void {
    let job = arg.cast::<Job<T>>();
    // SAFETY: `arg` is the `Box<Job<T>>` leaked by `spawn` (not touched by
    // it again until pthread_join returns). The contexts are zeroed, then
    // filled by getcontext; the new one runs `on_arena_stack` on the job's
    // stack, our arena block, and comes back to `back`, which lives in this
    // frame until swapcontext has returned.
    unsafe {
        let mut back: libc::ucontext_t = std::mem::zeroed();
        let mut there: libc::ucontext_t = std::mem::zeroed();
        if libc::getcontext(&mut there) != 0 {
            // The job never runs: `join` returns None.
            return arg;
        }
        there.uc_stack.ss_sp = (*job).stack;
        there.uc_stack.ss_size = (*job).stack_len;
        there.uc_stack.ss_flags = 0;
        there.uc_link = &mut back;
        CURRENT_JOB.with(|c| c.set(arg));
        libc::makecontext(&mut there, on_arena_stack::<T>, 0);
        libc::swapcontext(&mut back, &there);
    }
    arg
}

/// A running arena thread.
#[derive(Debug)]
pub struct ArenaThread<T> {
    thread: libc::pthread_t,
    stack: NonNull<c_void>,
    /// The thread's own stack (ordinary memory, mapped by [`spawn`]).
    own: OwnStack,
    job: *mut Job<T>,
}

/// The thread's own stack: mapped here, not by glibc, whose end of a thread
/// would hand its unused part back with `madvise(MADV_DONTNEED)`, a call
/// the vault's filter does not allow (a stack the caller gives is left
/// alone). Its lowest page is a guard.
#[derive(Debug)]
struct OwnStack(NonNull<c_void>);

impl OwnStack {
    fn map() -> io::Result<Self> {
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                OWN_STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let own = Self(NonNull::new(p).ok_or_else(|| io::Error::other("mmap gave NULL"))?);
        // SAFETY: the lowest page of our own mapping becomes inaccessible.
        if unsafe { libc::mprotect(p, GUARD, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(own)
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, which no thread uses any more (dropped
        // after pthread_join, or when the thread was never created).
        unsafe { libc::munmap(self.0.as_ptr(), OWN_STACK_SIZE) };
    }
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
    let own = match OwnStack::map() {
        Ok(own) => own,
        Err(e) => {
            unguard();
            free_stack();
            return Err(start("mapping its own stack")(e));
        }
    };
    let job = Box::into_raw(Box::new(Job::<T> {
        f: Some(Box::new(f)),
        result: None,
        // SAFETY: within our block: its pages above the guard.
        stack: unsafe { stack.as_ptr().cast::<u8>().add(GUARD).cast() },
        stack_len: STACK_SIZE - GUARD,
    }));
    // SAFETY: attr is initialised before use and destroyed after; the
    // thread gets its small ordinary stack (trampoline and glibc only), and
    // runs the job on the arena block; it must use neither after it ends:
    // pthread_join guarantees that before we free them.
    let created = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut r = libc::pthread_attr_init(&mut attr);
        if r == 0 {
            r = libc::pthread_attr_setstack(&mut attr, own.0.as_ptr(), OWN_STACK_SIZE);
        }
        let mut thread: libc::pthread_t = 0;
        if r == 0 {
            r = libc::pthread_create(&mut thread, &attr, trampoline::<T>, job.cast());
        }
        libc::pthread_attr_destroy(&mut attr);
        (r, thread)
    };
    match created {
        (0, thread) => Ok(ArenaThread {
            thread,
            stack,
            own,
            job,
        }),
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
        if r != 0 {
            // The thread may still run on it: never unmapped.
            std::mem::forget(self.own);
        }
        job.result
    }
}
