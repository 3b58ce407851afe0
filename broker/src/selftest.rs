//! `broker demo --selftest NAME`: deliberate failures of the broker itself,
//! under its own filter, for the "every rule is needed" suite
//! (`tests/tests/rules_broker.rs`) only. Never useful otherwise, and never
//! started by accident: nothing happens until the broker receives SIGUSR1,
//! which only the suite sends, at the moment it chooses (at the password
//! prompt, or between two reads), so the failure comes at a known point of
//! the lifecycle on every run.
//!
//! [`arm`] runs before any thread exists and before the filter: it blocks
//! SIGUSR1 in every thread (so it waits, pending, for a reader), opens a
//! signalfd for it, prepares what the selftest needs, and starts one thread
//! that reads that signalfd and then fails as asked.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// A deliberate failure of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selftest {
    /// A panic on a thread of the broker. The panic hook restores a
    /// terminal left in password mode, then (as the release build's
    /// `panic = "abort"` does in every build here) the broker aborts.
    Panic,
    /// A real segmentation fault (a write to address 0): std's handler
    /// resets SIGSEGV to its default action, and the fault ends the broker.
    Segv,
    /// A real bus error (a load past the end of an empty file mapped before
    /// the filter): the same for SIGBUS.
    Sigbus,
    /// The clone3 glibc makes first when anything starts a thread, made
    /// directly (glibc makes it with every signal blocked, where a trap
    /// cannot be named): the broker-errno overlay answers ENOSYS.
    Clone3,
    /// Lock contention, forced: the selftest thread holds a glibc mutex
    /// (the lock type of malloc's arenas and of glibc's own state) until a
    /// second thread, started with it, sleeps on it.
    Contend,
    /// glibc's malloc made to grow the selftest thread's arena and give the
    /// memory back, with a large block mapped, grown and unmapped
    /// ([`common::malloc::exercise`]).
    Heap,
    /// The selftest thread ends: glibc gives back the unused part of its
    /// stack (`madvise(MADV_DONTNEED)`) and makes its last `exit`, both with
    /// every signal blocked, while the broker goes on (the threads that
    /// start and drain a vault end the same way, when its handle drops, but
    /// race the process's own exit).
    ThreadEnd,
}

impl Selftest {
    /// The names `--selftest` accepts.
    pub const NAMES: &'static str = "panic, segv, sigbus, clone3, contend, heap or thread-end";

    /// Parses a `--selftest` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "panic" => Self::Panic,
            "segv" => Self::Segv,
            "sigbus" => Self::Sigbus,
            "clone3" => Self::Clone3,
            "contend" => Self::Contend,
            "heap" => Self::Heap,
            "thread-end" => Self::ThreadEnd,
            _ => return None,
        })
    }

    /// The name `--selftest` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Segv => "segv",
            Self::Sigbus => "sigbus",
            Self::Clone3 => "clone3",
            Self::Contend => "contend",
            Self::Heap => "heap",
            Self::ThreadEnd => "thread-end",
        }
    }
}

/// Prepares `test` and starts the thread that runs it on SIGUSR1. Call
/// before any other thread exists (the signal mask is inherited) and
/// before the broker's filter (which allows no signalfd, mapping of a file
/// or thread).
pub fn arm(test: Selftest) -> Result<(), String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    set.thread_block()
        .map_err(|e| format!("selftest: cannot block SIGUSR1: {e}"))?;
    let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("selftest: cannot open a signalfd: {e}"))?;
    let page = match test {
        Selftest::Sigbus => Some(
            common::sys::past_the_end_page(c"broker-sigbus")
                .map_err(|e| format!("selftest: cannot map a page past a file's end: {e}"))?,
        ),
        _ => None,
    };
    if test == Selftest::Panic {
        // After the terminal's restore hook (installed by main): it runs
        // first, then the abort.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            std::process::abort();
        }));
    }
    let partner = match test {
        Selftest::Contend => Some(contend::partner()?),
        _ => None,
    };
    std::thread::Builder::new()
        .name("broker-selftest".into())
        .spawn(move || {
            if matches!(test, Selftest::Segv | Selftest::Sigbus) {
                roomy_signal_stack();
            }
            // A blocking read: returns once SIGUSR1 is pending.
            match fd.read_signal() {
                Ok(Some(_)) => {}
                _ => return,
            }
            eprintln!("broker: selftest {}: SIGUSR1 received", test.as_str());
            if let Some(partner) = &partner {
                contend::hold(partner);
            }
            run(test, page);
            drop(fd);
        })
        .map_err(|e| format!("selftest: cannot start its thread: {e}"))?;
    Ok(())
}

/// [`Selftest::Contend`]: a glibc mutex waited for, deterministically: the
/// holder lets go only once the waiter has marked the lock as having a
/// waiter (glibc does so just before its futex system call), so the wait is
/// made on every run, however the threads are scheduled.
mod contend {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::mpsc::{channel, Receiver, Sender};

    struct Lock(UnsafeCell<libc::pthread_mutex_t>);

    // SAFETY: used only through pthread calls, made for sharing.
    unsafe impl Sync for Lock {}

    static LOCK: Lock = Lock(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER));

    /// The waiter thread's side: told when to wait, tells when done.
    pub struct Partner {
        go: Sender<()>,
        done: std::sync::Mutex<Receiver<()>>,
    }

    /// Starts the waiter (before the sandbox, which allows no thread).
    pub fn partner() -> Result<Partner, String> {
        let (go, go_rx) = channel::<()>();
        let (done_tx, done) = channel::<()>();
        std::thread::Builder::new()
            .name("broker-selftest-waiter".into())
            .spawn(move || {
                if go_rx.recv().is_ok() {
                    // SAFETY: a static, initialised mutex, locked and
                    // unlocked once here.
                    unsafe {
                        libc::pthread_mutex_lock(LOCK.0.get());
                        libc::pthread_mutex_unlock(LOCK.0.get());
                    }
                    let _ = done_tx.send(());
                }
            })
            .map_err(|e| format!("selftest: cannot start its second thread: {e}"))?;
        Ok(Partner {
            go,
            done: std::sync::Mutex::new(done),
        })
    }

    /// The glibc mutex's `__lock` word (its first), read atomically: 2 once
    /// a waiter has marked it.
    fn lock_word() -> u32 {
        // SAFETY: the first word of the mutex, 4-aligned, read atomically
        // as glibc's own atomics write it.
        unsafe { (*LOCK.0.get().cast::<AtomicU32>()).load(Ordering::SeqCst) }
    }

    /// Takes the lock, has the waiter wait for it, lets go once it sleeps.
    pub fn hold(p: &Partner) {
        // SAFETY: as above.
        unsafe { libc::pthread_mutex_lock(LOCK.0.get()) };
        let _ = p.go.send(());
        while lock_word() != 2 {
            std::thread::yield_now();
        }
        // SAFETY: held above.
        unsafe { libc::pthread_mutex_unlock(LOCK.0.get()) };
        let waited = p.done.lock().map(|d| d.recv().is_ok()).unwrap_or(false);
        eprintln!("broker: selftest: the lock was contended: {waited}");
    }
}

/// Gives this thread an alternate signal stack of 256 KiB, before the
/// sandbox. std's (a few KiB) holds the fault handler's frame, which is all
/// a real fault needs; under the rule check a trapped call inside that
/// handler puts a second signal frame on it (with the CPU's extended state,
/// some KiB each on a machine with AVX-512) and the SIGSYS handler's own,
/// which do not fit: the process would die by SIGSEGV before the call was
/// named.
fn roomy_signal_stack() {
    let stack: &'static mut [u8] = Box::leak(vec![0u8; 256 * 1024].into_boxed_slice());
    let ss = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: stack.len(),
    };
    // SAFETY: a leaked buffer that lives as long as the process.
    unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
}

/// The failure itself, on the selftest's thread.
fn run(test: Selftest, page: Option<usize>) {
    match test {
        Selftest::Panic => panic!("selftest: a deliberate panic in the broker"),
        Selftest::Segv => {
            // SAFETY: deliberately not safe: a write to address 0, a real
            // segmentation fault for the suite.
            unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
        }
        Selftest::Sigbus => {
            if let Some(page) = page {
                // SAFETY: deliberately not safe: the page is mapped but past
                // the end of its file, so the load raises SIGBUS.
                let v = unsafe { std::ptr::read_volatile(page as *const u8) };
                eprintln!("broker: selftest: the load past the end returned {v}");
            }
        }
        Selftest::Clone3 => {
            // SAFETY: clone3 with no arguments structure and size 0: if the
            // kernel ever ran it, it would refuse the size (EINVAL).
            let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
            eprintln!(
                "broker: selftest: clone3 returned {r} ({})",
                std::io::Error::last_os_error()
            );
        }
        // Done by `contend::hold` before this.
        Selftest::Contend => {}
        Selftest::Heap => eprintln!("broker: {}", common::malloc::exercise()),
        // The thread returns next.
        Selftest::ThreadEnd => eprintln!("broker: selftest: the selftest thread ends"),
    }
}
