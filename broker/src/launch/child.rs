//! Step 4: the vault process is created, and the image executed in it.
//!
//! `clone3(CLONE_PIDFD)` creates the process and hands back a pidfd for it
//! in the same call, so the broker can signal exactly this process for its
//! whole life and never a recycled pid. Where `clone3` is refused (an
//! application's own filter may answer it ENOSYS, as container runtimes
//! do), `clone(CLONE_PIDFD)` does the same. Both with `CLONE_UNTRACED`: a
//! tracer of the broker is not handed the vault. The parent thread blocks
//! every signal around the call, so the child starts with all of them
//! blocked, and with `CLONE_CLEAR_SIGHAND` none of the application's
//! handlers (reset by hand after `clone`). The child is a copy of a
//! multi-threaded process: between the clone and `execveat` it makes only
//! async-signal-safe calls, on values prepared before, and allocates
//! nothing. It:
//!
//! 1. starts its own process group (a Ctrl-C on the terminal reaches the
//!    broker only, which then shuts the vault down in order), and resets
//!    SIGPIPE to its default (as `std` does for its children);
//! 2. moves every descriptor it needs out of the way (to 64 and above), then
//!    places them: `/dev/null` at 0 and 1, the output pipe at 2, the rings
//!    at 3..;
//! 3. marks every other descriptor close-on-exec (`close_range`), so nothing
//!    the application left open reaches the vault;
//! 4. unblocks every signal (the vault installs its own handlers first
//!    thing) and runs `execveat(image, "", argv, [], AT_EMPTY_PATH)`: the
//!    verified image itself, with an empty environment.
//!
//! A failing step writes its number and `errno` to a close-on-exec pipe
//! and exits 127; the parent reads that pipe to tell a failed start from a
//! successful `execveat` (which closes the pipe).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::output;

/// Most descriptors placed in the child (rings and their data parts).
pub const MAX_FDS: usize = 32;

/// What each step of the child is, for the error message.
const STEPS: [&str; 6] = [
    "starting its own process group",
    "resetting its signal handlers",
    "moving descriptors",
    "placing descriptors",
    "unblocking signals",
    "executing the image",
];

/// A step of the child that failed.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// More ring descriptors than the child can place.
    #[error("too many descriptors for the vault ({count}; at most {MAX_FDS})")]
    TooManyFds {
        /// How many were asked for.
        count: usize,
    },
    /// A step around the clone failed (opening `/dev/null`, the status
    /// pipe, reading the new process's status).
    #[error("cannot prepare the vault's start: {what}")]
    Prepare {
        /// Which step.
        what: &'static str,
        /// The system call's error.
        #[source]
        source: io::Error,
    },
    /// `clone3` failed.
    #[error("cannot create the vault process")]
    Clone(#[source] io::Error),
    /// A step of the new process before it ran the vault failed (it
    /// reported which, and exited).
    #[error("the new vault process failed {step}")]
    Step {
        /// Which step: `"placing descriptors"`, `"executing the image"`, ...
        step: &'static str,
        /// The system call's error.
        #[source]
        source: io::Error,
    },
}

/// A started child: its pid and a pidfd for it.
#[derive(Debug)]
pub(crate) struct Started {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
}

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER0 is the first
/// eight fields, 64 bytes; the kernel accepts any known size).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Everything the child uses, prepared before the clone.
struct Plan {
    image: RawFd,
    argv: Vec<*const libc::c_char>,
    envp: [*const libc::c_char; 1],
    devnull: RawFd,
    stderr: RawFd,
    err_w: RawFd,
    fds: [RawFd; MAX_FDS],
    count: usize,
}

/// Starts `image` with `argv`, an empty environment, `/dev/null` as stdin
/// and stdout, `stderr` as fd 2 and `fds` at 3.. in order.
pub(crate) fn spawn(
    image: BorrowedFd<'_>,
    argv: &[CString],
    fds: &[BorrowedFd<'_>],
    stderr: BorrowedFd<'_>,
) -> Result<Started, ChildError> {
    if fds.len() > MAX_FDS {
        return Err(ChildError::TooManyFds { count: fds.len() });
    }
    let prepare = |what| move |source| ChildError::Prepare { what, source };
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(prepare("opening /dev/null"))?;
    let (err_r, err_w) = output::pipe().map_err(prepare("creating the status pipe"))?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut plan = Plan {
        image: image.as_raw_fd(),
        argv: argv_ptrs,
        envp: [std::ptr::null()],
        devnull: devnull.as_raw_fd(),
        stderr: stderr.as_raw_fd(),
        err_w: err_w.as_raw_fd(),
        fds: [-1; MAX_FDS],
        count: fds.len(),
    };
    for (slot, fd) in plan.fds.iter_mut().zip(fds) {
        *slot = fd.as_raw_fd();
    }
    let (pid, pidfd) = clone_with_pidfd(&plan)?;
    drop(err_w);
    match read_status(err_r) {
        Ok(None) => Ok(Started { pid, pidfd }),
        Ok(Some((step, errno))) => {
            reap(pid);
            let step = usize::try_from(step)
                .ok()
                .and_then(|i| STEPS.get(i))
                .copied()
                .unwrap_or("an unknown step");
            Err(ChildError::Step {
                step,
                source: io::Error::from_raw_os_error(errno),
            })
        }
        Err(e) => {
            // SAFETY: signalling our own, unreaped child through its pidfd.
            unsafe { pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL) };
            reap(pid);
            Err(ChildError::Prepare {
                what: "reading the new process's status",
                source: e,
            })
        }
    }
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
///
/// # Safety
/// `pidfd` must be a pidfd this process owns.
pub(crate) unsafe fn pidfd_send_signal(pidfd: RawFd, sig: libc::c_int) -> libc::c_long {
    // SAFETY: the caller vouches for the pidfd; a NULL siginfo and flags 0
    // mean "as kill(2) would".
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    }
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child, into a live local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// Reads the child's status pipe: `None` when it was closed by a successful
/// `execveat`, else the failed step and its errno.
fn read_status(pipe: OwnedFd) -> io::Result<Option<(i32, i32)>> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of a live local buffer.
        let n = unsafe {
            libc::read(
                pipe.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        match n {
            0 => break,
            n if n > 0 => got += n.unsigned_abs(),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    match got {
        0 => Ok(None),
        8 => Ok(Some((
            i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]),
            i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ))),
        _ => Err(io::Error::other("a truncated status from the new process")),
    }
}

/// `CLONE_CLEAR_SIGHAND` (Linux 5.5, clone3 only).
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// Blocks every signal on the calling thread until dropped.
struct AllBlocked(libc::sigset_t);

impl AllBlocked {
    fn new() -> Self {
        // SAFETY: sigset manipulation on locals; pthread_sigmask affects the
        // calling thread only and writes the old mask into a live local.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            Self(old)
        }
    }
}

impl Drop for AllBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new` on the same thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// `clone3(CLONE_PIDFD | CLONE_UNTRACED | CLONE_CLEAR_SIGHAND)`, or
/// `clone(CLONE_PIDFD | CLONE_UNTRACED)` where `clone3` is refused. The
/// child runs [`child`] and never returns.
fn clone_with_pidfd(plan: &Plan) -> Result<(libc::pid_t, OwnedFd), ChildError> {
    let mut pidfd: libc::c_int = -1;
    let base = u64::try_from(libc::CLONE_PIDFD | libc::CLONE_UNTRACED).unwrap_or(0);
    let args = CloneArgs {
        flags: base | CLONE_CLEAR_SIGHAND,
        pidfd: std::ptr::addr_of_mut!(pidfd) as usize as u64,
        exit_signal: u64::try_from(libc::SIGCHLD).unwrap_or(17),
        ..CloneArgs::default()
    };
    let blocked = AllBlocked::new();
    // SAFETY: clone3 without CLONE_VM and without a stack is a fork: the
    // child gets a copy of this thread and its memory. The child runs only
    // `child`, which makes async-signal-safe calls and never returns.
    let mut ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let mut handlers_cleared = true;
    if ret == -1
        && matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)
        )
    {
        handlers_cleared = false;
        let flags =
            libc::c_ulong::try_from(libc::CLONE_PIDFD | libc::CLONE_UNTRACED | libc::SIGCHLD)
                .unwrap_or(0);
        // SAFETY: clone without CLONE_VM and with a null stack is a fork
        // (x86_64 argument order: flags, stack, parent_tid, child_tid,
        // tls); with CLONE_PIDFD the kernel stores the pidfd through
        // parent_tid, a live local. The child runs only `child`.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags,
                0usize,
                std::ptr::addr_of_mut!(pidfd),
                0usize,
                0usize,
            )
        };
    }
    match ret {
        0 => {
            // SAFETY: we are the child; `plan` is our copy of the parent's.
            unsafe { child(plan, handlers_cleared) }
        }
        pid if pid > 0 => {
            drop(blocked);
            let pid = libc::pid_t::try_from(pid).map_err(|_| {
                ChildError::Clone(io::Error::other("clone returned an impossible pid"))
            })?;
            // SAFETY: the kernel stored a new pidfd owned by no one else.
            Ok((pid, unsafe { OwnedFd::from_raw_fd(pidfd) }))
        }
        _ => Err(ChildError::Clone(io::Error::last_os_error())),
    }
}

/// Highest signal number whose handler the child resets by hand.
const MAX_SIGNAL: libc::c_int = 64;

/// The child, between the clone and the exec. Every signal is blocked on
/// entry (the parent blocked them around the clone).
///
/// # Safety
/// Call only in a freshly cloned child; never returns.
unsafe fn child(plan: &Plan, handlers_cleared: bool) -> ! {
    let mut status_fd = plan.err_w;
    let fail = |step: i32, fd: RawFd| -> ! {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&step.to_ne_bytes());
        msg[4..].copy_from_slice(&errno.to_ne_bytes());
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is
        // a live local.
        unsafe {
            libc::write(fd, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        }
    };
    // SAFETY: (the whole block) only async-signal-safe calls, on
    // descriptors and locals prepared by the parent; nothing is allocated.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            fail(0, status_fd);
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        if libc::sigaction(libc::SIGPIPE, &dfl, std::ptr::null_mut()) != 0 {
            fail(1, status_fd);
        }
        if !handlers_cleared {
            // What CLONE_CLEAR_SIGHAND does: every handled signal back to its
            // default (ignored ones stay ignored; KILL and STOP refuse).
            for sig in 1..=MAX_SIGNAL {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction != libc::SIG_IGN
                    && old.sa_sigaction != libc::SIG_DFL
                {
                    libc::sigaction(sig, &dfl, std::ptr::null_mut());
                }
            }
        }
        // Out of the way first, so that placing one cannot clobber another.
        let high = |fd: RawFd, fd_now: RawFd| -> RawFd {
            let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64);
            if h == -1 {
                fail(2, fd_now);
            }
            h
        };
        status_fd = high(plan.err_w, status_fd);
        let image = high(plan.image, status_fd);
        let devnull = high(plan.devnull, status_fd);
        let stderr = high(plan.stderr, status_fd);
        let mut fds = [-1; MAX_FDS];
        for (slot, fd) in fds.iter_mut().zip(&plan.fds).take(plan.count) {
            *slot = high(*fd, status_fd);
        }
        // dup2 clears close-on-exec on its target.
        for (from, to) in [(devnull, 0), (devnull, 1), (stderr, 2)] {
            if libc::dup2(from, to) == -1 {
                fail(3, status_fd);
            }
        }
        let mut target: RawFd = 3;
        for fd in fds.iter().take(plan.count) {
            if libc::dup2(*fd, target) == -1 {
                fail(3, status_fd);
            }
            target += 1;
        }
        // Everything above the rings is closed by the exec (kernels before
        // 5.11 lack the flag; the vault closes them itself first thing).
        let first = libc::c_uint::try_from(target).unwrap_or(libc::c_uint::MAX);
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
            fail(4, status_fd);
        }
        libc::syscall(
            libc::SYS_execveat,
            image,
            c"".as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        fail(5, status_fd)
    }
}
