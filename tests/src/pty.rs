//! Pseudo-terminals for the suites that type a password at the demo's
//! prompt (`demo.rs`, `rules_broker.rs`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A new pseudo-terminal: (master, slave).
pub fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two fds into our locals; NULL name/termios/winsize.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty");
    // SAFETY: both fds are new and owned by us.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// The terminal settings of `fd`.
pub fn termios_of(fd: &OwnedFd) -> libc::termios {
    // SAFETY: zeroed termios is a valid out-buffer; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a live terminal fd.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t
}
