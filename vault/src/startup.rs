//! The vault's first steps, before it touches OpenSSL: bind its life to the
//! broker's, keep only the ring and stdio, forget the environment, drop every
//! capability, and forbid gaining privileges.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use caps::CapSet;
use common::sys::cvt;

/// The fd number at which the broker passes the first lane's ring (its
/// control part, or the whole region); lane `i` is at `RING_FD + i`, and with
/// `--secret-ring` the data parts follow, lane `i`'s at `RING_FD + lanes + i`.
pub const RING_FD: RawFd = 3;
/// Most lanes (ring pairs, worker threads) a vault serves.
pub const MAX_LANES: usize = 16;

/// Errors of the start-up steps.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("prctl(PR_SET_PDEATHSIG) failed")]
    DeathSignal(#[source] io::Error),
    #[error("the broker that spawned the vault (pid {expected}) is gone (parent is now {actual}); refusing to run")]
    ParentChanged { expected: i32, actual: i32 },
    #[error("cannot close inherited file descriptors")]
    CloseFds(#[source] io::Error),
    #[error(
        "fd {fd} is not open: the vault must be started by the broker, which passes the ring there"
    )]
    MissingFd { fd: RawFd },
    #[error("cannot clear the environment")]
    ClearEnv,
    #[error("cannot drop capability set {set}: {reason}")]
    Caps { set: &'static str, reason: String },
    #[error("capabilities remain after dropping them: {0}")]
    CapsRemain(String),
    #[error("cannot reset signal handling")]
    Signals(#[source] io::Error),
    #[error(transparent)]
    Harden(#[from] common::harden::HardenError),
    #[error("refusing to start: this vault was started from a file its user can read, so it was dumpable, open to other processes of its user, in its first moments; it must be started by the broker, which runs it from an execute-only copy (or install it execute-only: `sudo make install`)")]
    StartedReadable,
}

/// The checks of the vault's very first step, once it is non-dumpable:
/// it must have been non-dumpable from its first instruction, which the
/// kernel does when the program file is not readable by the user running it
/// (the broker runs the vault from an execute-only copy); only a process
/// that can read every file (root) is exempt, since for it the kernel
/// cannot do that and its same-uid attackers are root anyway. Then no
/// tracer may be attached: an attachment made before the `execve` survives
/// it.
pub fn check_start(dumpable_at_start: bool) -> Result<(), StartupError> {
    if dumpable_at_start && !common::harden::can_read_every_file() {
        // Under fs.suid_dumpable=1 even an execute-only copy starts
        // dumpable: say that, not that the file was readable.
        if let Some(e) = common::harden::execute_only_disabled(common::harden::suid_dumpable()) {
            return Err(e.into());
        }
        return Err(StartupError::StartedReadable);
    }
    common::harden::refuse_if_traced()?;
    Ok(())
}

/// Asks for `SIGTERM` when the broker dies, then checks that the broker is
/// still our parent: if it died before the prctl, the signal would never come.
pub fn bind_to_parent(expected: i32) -> Result<(), StartupError> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) })
        .map_err(StartupError::DeathSignal)?;
    // SAFETY: no preconditions.
    let actual = unsafe { libc::getppid() };
    if actual != expected {
        return Err(StartupError::ParentChanged { expected, actual });
    }
    Ok(())
}

/// The fds of one lane: the ring, and its data part in secret memory.
pub type LaneFds = (BorrowedFd<'static>, Option<BorrowedFd<'static>>);

/// Closes every fd above the rings' (`lanes` of them, twice as many fds
/// with `secret_data`), and checks that stdio and the rings' fds are open.
pub fn close_other_fds(lanes: usize, secret_data: bool) -> Result<Vec<LaneFds>, StartupError> {
    let per_lane = if secret_data { 2 } else { 1 };
    let count =
        RawFd::try_from(lanes * per_lane).map_err(|_| StartupError::MissingFd { fd: -1 })?;
    let last = RING_FD + count - 1;
    let first = libc::c_uint::try_from(last + 1).unwrap_or(libc::c_uint::MAX);
    // SAFETY: close_range only closes fds; nothing in this process holds one
    // above the rings' at this point (we have opened nothing yet).
    cvt(unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) })
        .map_err(StartupError::CloseFds)?;
    for fd in 0..=last {
        // SAFETY: F_GETFD only queries the fd table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err(StartupError::MissingFd { fd });
        }
    }
    let lanes_fd = RawFd::try_from(lanes).map_err(|_| StartupError::MissingFd { fd: -1 })?;
    Ok((0..lanes_fd)
        .map(|i| {
            // SAFETY: the ring fds are open (checked above) and never closed
            // for the rest of the process's life, so 'static borrows are sound.
            let ring = unsafe { BorrowedFd::borrow_raw(RING_FD + i) };
            // SAFETY: as above.
            let data =
                secret_data.then(|| unsafe { BorrowedFd::borrow_raw(RING_FD + lanes_fd + i) });
            (ring, data)
        })
        .collect())
}

/// Empties the environment: nothing the parent set (OPENSSL_CONF,
/// OPENSSL_MODULES, LD_*, ...) may steer OpenSSL or anything else here.
pub fn clear_environment() -> Result<(), StartupError> {
    // SAFETY: the vault is single-threaded here, so nothing reads the
    // environment concurrently.
    if unsafe { libc::clearenv() } != 0 {
        return Err(StartupError::ClearEnv);
    }
    Ok(())
}

/// Drops every capability from every set, the bounding set first (dropping
/// from it needs CAP_SETPCAP, which the other sets still hold).
///
/// Started by an unprivileged user, the vault holds no capability in any
/// set but the bounding set, and cannot drop from that one without
/// CAP_SETPCAP. It stays full then, which grants nothing: capabilities in the
/// bounding set are only gained through execve of a privileged file, and
/// no_new_privs (set next) and the seccomp filter (no execve) rule that out.
/// Returns whether the bounding set was emptied.
pub fn drop_capabilities() -> Result<bool, StartupError> {
    let err = |set: &'static str| {
        move |e: caps::errors::CapsError| StartupError::Caps {
            set,
            reason: e.to_string(),
        }
    };
    let can_drop_bounding = caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP)
        .map_err(err("effective"))?;
    if can_drop_bounding {
        for cap in caps::all() {
            if caps::has_cap(None, CapSet::Bounding, cap).map_err(err("bounding"))? {
                caps::drop(None, CapSet::Bounding, cap).map_err(err("bounding"))?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err("ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(err("inheritable"))?;
    caps::clear(None, CapSet::Effective).map_err(err("effective"))?;
    caps::clear(None, CapSet::Permitted).map_err(err("permitted"))?;
    let mut sets = vec![
        ("permitted", CapSet::Permitted),
        ("effective", CapSet::Effective),
        ("inheritable", CapSet::Inheritable),
        ("ambient", CapSet::Ambient),
    ];
    if can_drop_bounding {
        sets.push(("bounding", CapSet::Bounding));
    }
    for (name, set) in sets {
        let left = caps::read(None, set).map_err(err(name))?;
        if !left.is_empty() {
            return Err(StartupError::CapsRemain(format!("{name}: {left:?}")));
        }
    }
    Ok(can_drop_bounding)
}

/// Set by the signal handler: the signal that asked the vault to stop.
pub static STOP_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP_SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// Unblocks every signal (the mask is inherited across execve) and makes
/// SIGTERM, SIGINT and SIGHUP request a graceful shutdown. The handler is
/// installed without SA_RESTART so that a sleeping futex wait returns EINTR.
pub fn install_signal_handlers() -> Result<(), StartupError> {
    // SAFETY: sigset manipulation on a local; sigprocmask on our own thread.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        cvt(libc::sigprocmask(
            libc::SIG_SETMASK,
            &none,
            std::ptr::null_mut(),
        ))
        .map_err(StartupError::Signals)?;
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an
        // atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            cvt(libc::sigaction(sig, &sa, std::ptr::null_mut())).map_err(StartupError::Signals)?;
        }
    }
    Ok(())
}
