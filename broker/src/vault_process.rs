//! Spawning the vault and watching its life.
//!
//! The vault is `fork`+`exec`ed from the `vault` binary next to the broker's,
//! in its own process group (a Ctrl-C on the terminal reaches the broker
//! only, which then shuts the vault down in order), with the ring at fd 3.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How the vault ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultExit {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
}

/// Exit status the vault uses for a configuration it refuses.
pub const VAULT_EXIT_CONFIG: i32 = 78;
/// Exit status the vault uses when a start-up step fails.
pub const VAULT_EXIT_STARTUP: i32 = 1;
/// Exit status the vault uses when serving fails.
pub const VAULT_EXIT_SERVE: i32 = 70;

impl VaultExit {
    fn from_status(s: ExitStatus) -> Self {
        match (s.code(), s.signal()) {
            (Some(code), _) => Self::Exited(code),
            (None, Some(sig)) => Self::Signaled(sig),
            (None, None) => Self::Exited(-1),
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
        }
    }
}

/// Errors of starting the vault.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("vault binary not found at {path}: build it with `make build`, or set the vault path")]
    NotFound { path: PathBuf },
    #[error("cannot locate the broker's own executable to find the vault next to it")]
    CurrentExe(#[source] io::Error),
    #[error("cannot start the vault {path}")]
    Exec {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The path of the `vault` binary next to the running executable.
pub fn default_vault_path() -> Result<PathBuf, SpawnError> {
    let exe = std::env::current_exe().map_err(SpawnError::CurrentExe)?;
    Ok(exe.with_file_name("vault"))
}

/// Most fds passed to the vault (rings and their secret data parts).
const MAX_FDS: usize = 32;

/// What the vault is started with.
#[derive(Debug, Clone)]
pub struct VaultArgs {
    pub key_bits: u32,
    pub heap_size: Option<usize>,
    pub heap_min: Option<usize>,
    pub sandbox_mode: common::sandbox::Mode,
    pub extra: Vec<String>,
}

/// A running (or ended) vault process.
#[derive(Debug)]
pub struct VaultProcess {
    child: Child,
    exit: Option<VaultExit>,
    /// Dropping this ends the thread that forked the vault (see
    /// [`VaultProcess::spawn`]).
    _parent: std::sync::mpsc::Sender<()>,
}

impl VaultProcess {
    /// Starts the vault with its lanes' rings at fds 3.. (and their secret
    /// data parts after them, if any).
    pub fn spawn(
        path: &Path,
        rings: &[BorrowedFd<'_>],
        data: &[BorrowedFd<'_>],
        args: &VaultArgs,
    ) -> Result<Self, SpawnError> {
        if !path.is_file() {
            return Err(SpawnError::NotFound {
                path: path.to_owned(),
            });
        }
        let mut cmd = Command::new(path);
        cmd.arg("--parent-pid").arg(std::process::id().to_string());
        cmd.arg("--key-bits").arg(args.key_bits.to_string());
        if let Some(size) = args.heap_size {
            cmd.arg("--heap-size").arg(size.to_string());
        }
        if let Some(min) = args.heap_min {
            cmd.arg("--heap-min").arg(min.to_string());
        }
        cmd.arg("--sandbox-mode").arg(args.sandbox_mode.as_str());
        cmd.arg("--lanes").arg(rings.len().to_string());
        if !data.is_empty() {
            cmd.arg("--secret-ring");
        }
        cmd.args(&args.extra);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd.env_clear();
        cmd.process_group(0);
        // The fds in order, as plain integers: the closure below runs between
        // fork and exec and must not allocate.
        let mut raw = [-1i32; MAX_FDS];
        let fds: Vec<i32> = rings.iter().chain(data).map(AsRawFd::as_raw_fd).collect();
        if fds.len() > MAX_FDS {
            return Err(SpawnError::Exec {
                path: path.to_owned(),
                source: io::Error::other("too many lanes"),
            });
        }
        raw[..fds.len()].copy_from_slice(&fds);
        let count = fds.len();
        // SAFETY: the closure runs in the forked child before exec and calls
        // only fcntl and dup2, which are async-signal-safe, over a fixed-size
        // array it owns; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Move every fd out of the way first (to fds >= 64), so that
                // placing one at 3.. cannot clobber another; dup2 clears
                // FD_CLOEXEC on its target.
                let mut high = [-1i32; MAX_FDS];
                for i in 0..count {
                    let h = libc::fcntl(raw[i], libc::F_DUPFD_CLOEXEC, 64);
                    if h == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    high[i] = h;
                }
                for (i, h) in high.iter().take(count).enumerate() {
                    let target = 3 + i32::try_from(i).unwrap_or(0);
                    if libc::dup2(*h, target) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        // The vault's parent-death signal fires when the *thread* that forked
        // it ends, not the process. A caller's thread may be short-lived, so
        // the fork happens on a thread of our own that lives exactly as long
        // as this handle: dropping the handle ends it, and a vault still
        // running then gets its SIGTERM and wipes.
        let (result_tx, result_rx) = std::sync::mpsc::channel();
        let (parent_tx, parent_rx) = std::sync::mpsc::channel::<()>();
        let parent = std::thread::Builder::new()
            .name("vault-parent".into())
            .spawn(move || {
                let spawned = cmd.spawn();
                let ok = spawned.is_ok();
                if result_tx.send(spawned).is_ok() && ok {
                    // Until the handle is dropped (the sender goes away).
                    let _ = parent_rx.recv();
                }
            });
        let exec_error = |source| SpawnError::Exec {
            path: path.to_owned(),
            source,
        };
        parent.map_err(exec_error)?;
        let child = result_rx
            .recv()
            .map_err(|_| exec_error(io::Error::other("the spawning thread ended early")))?
            .map_err(exec_error)?;
        Ok(Self {
            child,
            exit: None,
            _parent: parent_tx,
        })
    }

    /// The vault's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the vault ended, if it has (reaps it without blocking).
    pub fn poll_exit(&mut self) -> Option<VaultExit> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(VaultExit::from_status(status));
            }
        }
        self.exit
    }

    /// Waits up to `limit` for the vault to end.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<VaultExit> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.poll_exit() {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends a signal to the vault if it still runs.
    pub fn signal(&mut self, sig: i32) {
        if self.poll_exit().is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: kill has no memory preconditions; the child is not
                // reaped yet (poll_exit returned None), so the pid is ours.
                unsafe { libc::kill(pid, sig) };
            }
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
}
