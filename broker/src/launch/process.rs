//! Step 5: the running vault, as the broker holds it.
//!
//! The broker signals it only through its pidfd (`pidfd_send_signal`, the
//! only way the broker program's own filter lets it signal anything), waits
//! for its exit on the pidfd (`poll`) and reaps it by pid (a pid that stays
//! ours until this handle reaps it), tells in words how it ended, and quotes
//! the last line it wrote.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::child::{self, ChildError};
use super::image::Image;
use super::output::{self, Output};

/// How the vault ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultExit {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
    /// It ended, but its exit status was collected elsewhere (the
    /// application ignores SIGCHLD, or reaps every child itself).
    Unknown,
}

/// Exit status the vault uses for a configuration it refuses.
pub const VAULT_EXIT_CONFIG: i32 = 78;
/// Exit status the vault uses when a start-up step fails.
pub const VAULT_EXIT_STARTUP: i32 = 1;
/// Exit status the vault uses when serving fails.
pub const VAULT_EXIT_SERVE: i32 = 70;

impl VaultExit {
    fn from_wait_status(status: libc::c_int) -> Self {
        if libc::WIFEXITED(status) {
            Self::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Self::Signaled(libc::WTERMSIG(status))
        } else {
            Self::Exited(-1)
        }
    }

    /// Whether the seccomp filter killed it.
    pub fn killed_by_sandbox(self) -> bool {
        self == Self::Signaled(libc::SIGSYS)
    }

    /// Whether it ended the way a graceful shutdown ends.
    pub fn is_clean(self) -> bool {
        self == Self::Exited(0)
    }
}

/// The name of a signal, for messages.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

impl fmt::Display for VaultExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Exited(0) => f.write_str("exited cleanly"),
            Self::Exited(VAULT_EXIT_CONFIG) => {
                write!(f, "refused its configuration (exit {VAULT_EXIT_CONFIG})")
            }
            Self::Exited(VAULT_EXIT_STARTUP) => {
                write!(f, "failed to start (exit {VAULT_EXIT_STARTUP})")
            }
            Self::Exited(VAULT_EXIT_SERVE) => write!(
                f,
                "stopped on an error while serving (exit {VAULT_EXIT_SERVE})"
            ),
            Self::Exited(code) => write!(f, "exited with status {code}"),
            Self::Signaled(libc::SIGSYS) => {
                f.write_str("killed by the sandbox (SIGSYS): it made a forbidden system call")
            }
            Self::Signaled(libc::SIGKILL) => f.write_str("killed (SIGKILL)"),
            Self::Signaled(libc::SIGTERM) => f.write_str("terminated (SIGTERM)"),
            Self::Signaled(
                sig @ (libc::SIGSEGV | libc::SIGBUS | libc::SIGABRT | libc::SIGILL | libc::SIGFPE),
            ) => {
                write!(f, "crashed ({})", signal_name(sig))
            }
            Self::Signaled(sig) => write!(f, "killed by {}", signal_name(sig)),
            Self::Unknown => f.write_str(
                "ended, but how is unknown: something else collected its exit status (is SIGCHLD ignored?)",
            ),
        }
    }
}

/// Errors of starting the vault process.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The new process could not be created or could not run the vault.
    #[error("cannot start the vault {path}")]
    Start {
        /// The vault program.
        path: String,
        /// Which step failed.
        #[source]
        source: ChildError,
    },
    /// A step around the start failed (its output pipe, the thread that
    /// starts it).
    #[error("cannot start the vault {path}: {what}")]
    Io {
        /// The vault program.
        path: String,
        /// Which step.
        what: &'static str,
        /// The system call's error.
        #[source]
        source: io::Error,
    },
}

/// What the vault is started with (its command line).
#[derive(Debug, Clone)]
pub struct VaultArgs {
    /// RSA modulus size (`--key-bits`).
    pub key_bits: u32,
    /// Secure heap arena size (`--heap-size`); the vault's default if `None`.
    pub heap_size: Option<usize>,
    /// Secure heap minimum allocation (`--heap-min`).
    pub heap_min: Option<usize>,
    /// The vault's sandbox mode (`--sandbox`).
    pub sandbox_mode: common::sandbox::Mode,
    /// Where its arena goes (`--secret-memory`).
    pub secret_memory: common::secretmem::Setting,
    /// Further arguments, passed as they are (the suites' `--selftest`).
    pub extra: Vec<String>,
}

impl VaultArgs {
    /// The vault's command line: `argv[0]` is the binary's path, so that a
    /// person reading `ps` sees what runs (its name in `/proc/PID/comm` is
    /// the memfd's, `memfd:vault`, for a copy).
    fn argv(&self, image: &Image, lanes: usize, secret_ring: bool) -> Vec<CString> {
        let mut a: Vec<String> = vec![
            image.path().display().to_string(),
            "--parent-pid".into(),
            std::process::id().to_string(),
            "--key-bits".into(),
            self.key_bits.to_string(),
        ];
        if let Some(size) = self.heap_size {
            a.extend(["--heap-size".into(), size.to_string()]);
        }
        if let Some(min) = self.heap_min {
            a.extend(["--heap-min".into(), min.to_string()]);
        }
        a.extend([
            "--sandbox-mode".into(),
            self.sandbox_mode.as_str().into(),
            "--lanes".into(),
            lanes.to_string(),
        ]);
        if secret_ring {
            a.push("--secret-ring".into());
        }
        a.extend(["--secret-memory".into(), self.secret_memory.as_str().into()]);
        a.extend(self.extra.iter().cloned());
        // An argument with a NUL byte cannot be passed; it becomes empty
        // and the vault refuses it as unknown.
        a.into_iter()
            .map(|s| CString::new(s).unwrap_or_default())
            .collect()
    }
}

/// A running (or ended) vault process.
#[derive(Debug)]
pub struct VaultProcess {
    pid: libc::pid_t,
    program: std::path::PathBuf,
    pidfd: OwnedFd,
    exit: Option<VaultExit>,
    output: Output,
    /// Dropping this ends the thread that started the vault (see
    /// [`VaultProcess::spawn`]).
    _parent: std::sync::mpsc::Sender<()>,
}

impl VaultProcess {
    /// Starts `image` with its lanes' rings at fds 3.. (and their secret
    /// data parts after them, if any), its standard error drained by a
    /// thread of the broker ([`super::output`]).
    pub fn spawn(
        image: &Image,
        rings: &[BorrowedFd<'_>],
        data: &[BorrowedFd<'_>],
        args: &VaultArgs,
    ) -> Result<Self, SpawnError> {
        let path = image.path().display().to_string();
        let io_err = |what| {
            let path = path.clone();
            move |source| SpawnError::Io { path, what, source }
        };
        let argv = args.argv(image, rings.len(), !data.is_empty());
        let fds: Vec<BorrowedFd<'_>> = rings.iter().chain(data).copied().collect();
        let (read, write) = output::pipe().map_err(io_err("creating its output pipe"))?;
        // The vault's parent-death signal fires when the *thread* that
        // created it ends, not the process. A caller's thread may be
        // short-lived, so the clone happens on a thread of our own that lives
        // exactly as long as this handle: dropping the handle ends it, and a
        // vault still running then gets its SIGTERM and wipes.
        let (parent_tx, parent_rx) = std::sync::mpsc::channel::<()>();
        let (result_tx, result_rx) = std::sync::mpsc::channel();
        let image_raw = image.fd().as_raw_fd();
        let fds_raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        std::thread::Builder::new()
            .name("vault-parent".into())
            .spawn(move || {
                // SAFETY: `spawn` (the caller) blocks until this thread sends
                // its result, and the image and ring descriptors it borrowed
                // stay open at least that long; they are not used after.
                let (image_fd, fds) = unsafe {
                    (
                        BorrowedFd::borrow_raw(image_raw),
                        fds_raw
                            .iter()
                            .map(|fd| BorrowedFd::borrow_raw(*fd))
                            .collect::<Vec<_>>(),
                    )
                };
                let started = child::spawn(image_fd, &argv, &fds, write.as_fd());
                // The vault has its copy of the pipe's write end; ours must
                // close, or the drain would never see the end of its output.
                drop(write);
                let ok = started.is_ok();
                if result_tx.send(started).is_ok() && ok {
                    // Until the handle is dropped (the sender goes away).
                    let _ = parent_rx.recv();
                }
            })
            .map_err(io_err("starting its parent thread"))?;
        let started = result_rx
            .recv()
            .map_err(|_| io_err("starting it")(io::Error::other("the starting thread ended")))?;
        let started = started.map_err(|source| SpawnError::Start {
            path: path.clone(),
            source,
        })?;
        let pid_u32 = started.pid.unsigned_abs();
        let output = match Output::start(read, pid_u32) {
            Ok(o) => o,
            Err(e) => {
                // SAFETY: signalling our own child through its pidfd.
                unsafe { child::pidfd_send_signal(started.pidfd.as_raw_fd(), libc::SIGKILL) };
                return Err(io_err("draining its output")(e));
            }
        };
        Ok(Self {
            pid: started.pid,
            program: image.path().to_owned(),
            pidfd: started.pidfd,
            exit: None,
            output,
            _parent: parent_tx,
        })
    }

    /// The program it runs (the checked path).
    pub fn program(&self) -> &std::path::Path {
        &self.program
    }

    /// The vault's pid.
    pub fn pid(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// How the vault ended, if it has (reaps it without blocking).
    pub fn poll_exit(&mut self) -> Option<VaultExit> {
        if self.exit.is_none() {
            let mut status = 0;
            // SAFETY: a non-blocking wait for our own child into a live local.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                self.exit = Some(VaultExit::from_wait_status(status));
            } else if r == -1 && self.pidfd_readable() {
                // Not ours to reap any more (ECHILD), and the pidfd says it
                // has ended: an ignored SIGCHLD, or a reaper of the
                // application's, took its status.
                self.exit = Some(VaultExit::Unknown);
            }
        }
        self.exit
    }

    /// Whether the pidfd is readable now: the process has ended.
    fn pidfd_readable(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd; poll only writes its revents.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 && pfd.revents & libc::POLLIN != 0 }
    }

    /// Waits up to `limit` for the vault to end (the pidfd becomes readable
    /// when it does).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<VaultExit> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.poll_exit() {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            let mut pfd = libc::pollfd {
                fd: self.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd; poll only writes its revents.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
    }

    /// Sends a signal to the vault, through its pidfd, if it still runs.
    pub fn signal(&mut self, sig: i32) {
        if self.poll_exit().is_none() {
            // SAFETY: the pidfd is ours and refers to this vault for its
            // whole life; a process that has exited ignores the signal.
            unsafe { child::pidfd_send_signal(self.pidfd.as_raw_fd(), sig) };
        }
    }

    /// Kills the vault (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> VaultExit {
        self.signal(libc::SIGKILL);
        loop {
            if let Some(e) = self.wait_exit(Duration::from_secs(5)) {
                return e;
            }
        }
    }

    /// SIGTERM, then SIGKILL if the vault has not exited after `grace`.
    pub fn terminate(&mut self, grace: Duration) -> VaultExit {
        self.signal(libc::SIGTERM);
        match self.wait_exit(grace) {
            Some(e) => e,
            None => self.kill(),
        }
    }

    /// Once the vault has ended, waits up to `wait` until everything it
    /// wrote has been forwarded (a program that exits next loses nothing).
    pub fn flush_output(&self, wait: Duration) {
        if self.exit.is_some() {
            self.output.flush(wait);
        }
    }

    /// The last line the vault wrote on its standard error; once it has
    /// ended, waits up to `wait` for the rest of its output to be read.
    pub fn last_line(&self, wait: Duration) -> Option<String> {
        let wait = if self.exit.is_some() {
            wait
        } else {
            Duration::ZERO
        };
        self.output.last_line(wait)
    }
}
