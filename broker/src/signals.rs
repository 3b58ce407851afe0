//! Termination signals for the `broker` program, delivered through a signalfd.
//!
//! SIGINT, SIGTERM, SIGHUP and SIGQUIT are blocked in every thread (the mask
//! is set before any thread exists and is inherited) and read from a
//! signalfd instead: the password prompt and the demo loop poll it, so a
//! signal at any moment ends the run through the normal, wiping shutdown
//! path, never in the middle of a handler. The vault does not inherit the
//! mask: `launch::child` unblocks every signal just before its exec.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Errors of setting up signal handling.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot block the termination signals")]
    Block(#[source] nix::Error),
    #[error("cannot create the signalfd")]
    Fd(#[source] nix::Error),
}

/// The termination signals, readable from a descriptor.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

const HANDLED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

impl Signals {
    /// Blocks the termination signals and opens the signalfd. Call before any
    /// thread is started.
    pub fn install() -> Result<Self, SignalError> {
        let mut set = SigSet::empty();
        for s in HANDLED {
            set.add(s);
        }
        set.thread_block().map_err(SignalError::Block)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(SignalError::Fd)?;
        Ok(Self { fd })
    }

    /// The descriptor that becomes readable when a signal is pending.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Takes a pending signal, if any.
    pub fn take(&mut self) -> Option<Signal> {
        match self.fd.read_signal() {
            Ok(Some(info)) => i32::try_from(info.ssi_signo)
                .ok()
                .and_then(|s| Signal::try_from(s).ok()),
            _ => None,
        }
    }

    /// Waits up to `timeout` for a signal, the whole of it: poll(2) takes at
    /// most `u16::MAX` milliseconds here, so a longer wait is made of several.
    pub fn wait(&mut self, timeout: Duration) -> Option<Signal> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            // Rounded up: a wait never ends early.
            let ms = u16::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => return self.take(),
                Ok(_) | Err(Errno::EINTR) if !left.is_zero() => {}
                _ => return None,
            }
        }
    }
}
