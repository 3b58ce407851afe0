//! Starting the vault, and protecting the program that starts it, in the
//! order a reviewer should read it.
//!
//! The promise: no process of the same user can read the vault or the broker
//! at any instant, start-up included. At `execve` a process is dumpable (its
//! memory open to `/proc/PID/mem` and ptrace for its uid) until it says
//! otherwise, and what an attacker opens or attaches in that moment stays
//! valid afterwards; except that the kernel makes a process non-dumpable
//! *before its first instruction* when its program file is not readable by
//! the user running it. Every step below serves that, once per start
//! (nothing here runs per request):
//!
//! 1. [`trust`]: the vault binary is opened once, by a walk from `/` that
//!    checks every directory and the file on the descriptors it opened.
//! 2. [`image`]: what will run, as a descriptor: the installed execute-only
//!    file itself, or an execute-only sealed memfd copy of a readable one.
//! 3. [`output`]: the vault's standard error is a pipe that the broker
//!    drains and forwards, cleaned, so the vault writes nowhere else.
//! 4. [`child`]: `clone3(CLONE_PIDFD)`, descriptors put in place,
//!    `execveat(image, "", AT_EMPTY_PATH)`.
//! 5. [`process`]: the running vault: signalled only through its pidfd,
//!    its end told in words, its last message kept.
//!
//! The vault then checks, as its first steps, that it was not dumpable when
//! it started (unless it runs as root) and that no tracer is attached.
//!
//! [`protect`] gives the program that embeds the broker the same start:
//! [`protect_process`], one call first thing in `main`; the `broker`
//! program, which owns its whole process, calls [`close_inherited_fds`]
//! before it, so that it holds no descriptor (a pidfd, a `/proc/PID`
//! directory) that its filter would let it signal through.

pub mod child;
pub mod image;
pub mod output;
pub mod process;
pub mod protect;
pub mod trust;

use std::io;
use std::path::PathBuf;

pub use image::{Image, ImageError, ImageKind};
pub use process::{signal_name, SpawnError, VaultExit, VaultProcess};
pub use protect::{
    close_inherited_fds, protect_process, protected_vault, ProtectError, Protection,
};
pub use trust::TrustError;

/// Errors of finding, checking and starting the vault, and of protecting
/// the process that starts it.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No path was given and no vault is at any of the default places
    /// ([`vault_candidates`]); the message lists them.
    #[error("no vault binary found; looked for {}: build it with `make build`, install it with `sudo make install`, or give its path", .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "))]
    NotFound {
        /// Every path looked at, in order.
        tried: Vec<PathBuf>,
    },
    /// The program's own path, from which the vault is looked for, is
    /// unknown (`/proc/self/exe` unreadable).
    #[error("cannot locate this program's own executable to find the vault beside it")]
    CurrentExe(#[source] io::Error),
    /// The vault binary failed the trust check, or could not be prepared
    /// to run ([`image`]).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The vault process could not be started ([`process`]).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// [`protect_process`] could not protect this process.
    #[error(transparent)]
    Protect(#[from] ProtectError),
}

/// Where the vault is looked for, from a program at `exe`: first
/// `../libexec/privsep-vault/vault` (the layout `make install` makes; a
/// directory of this project's own, so an unrelated program called `vault`
/// beside an installed `broker`, such as another vault product's in
/// `/usr/local/bin`, is never taken for it), then `vault` in the same
/// directory (a build directory).
pub fn vault_candidates(exe: &std::path::Path) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(prefix) = exe.parent().and_then(std::path::Path::parent) {
        c.push(prefix.join("libexec/privsep-vault/vault"));
    }
    c.push(exe.with_file_name("vault"));
    c
}

/// The first of [`vault_candidates`] that exists for this program.
pub fn find_vault() -> Result<PathBuf, LaunchError> {
    let exe = std::env::current_exe().map_err(LaunchError::CurrentExe)?;
    let tried = vault_candidates(&exe);
    tried
        .iter()
        .find(|p| p.symlink_metadata().is_ok())
        .cloned()
        .ok_or(LaunchError::NotFound { tried })
}
