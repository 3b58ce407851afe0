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
}

impl Selftest {
    /// The names `--selftest` accepts.
    pub const NAMES: &'static str = "panic, segv, sigbus or clone3";

    /// Parses a `--selftest` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "panic" => Self::Panic,
            "segv" => Self::Segv,
            "sigbus" => Self::Sigbus,
            "clone3" => Self::Clone3,
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
        Selftest::Sigbus => Some(past_the_end_page()?),
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
            run(test, page);
            drop(fd);
        })
        .map_err(|e| format!("selftest: cannot start its thread: {e}"))?;
    Ok(())
}

/// A page mapped from an empty memfd: any access to it is past the end of
/// the file (SIGBUS). Its address.
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

fn past_the_end_page() -> Result<usize, String> {
    // SAFETY: memfd_create with a literal name, then a fresh shared mapping
    // of it; nothing else refers to either.
    unsafe {
        let fd = libc::memfd_create(c"broker-sigbus".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(format!(
                "selftest: memfd_create: {}",
                std::io::Error::last_os_error()
            ));
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        let mapped = std::io::Error::last_os_error();
        libc::close(fd);
        if p == libc::MAP_FAILED {
            return Err(format!("selftest: mmap: {mapped}"));
        }
        Ok(p as usize)
    }
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
    }
}
