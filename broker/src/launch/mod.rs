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

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use image::{Image, ImageError, ImageKind};
pub use process::{signal_name, SpawnError, VaultExit, VaultProcess};
pub use protect::{
    close_inherited_fds, protect_process, protected_vault, ProtectError, Protection,
};
pub use trust::TrustError;

/// The install prefix baked in when the broker crate was built:
/// `PRIVSEP_VAULT_PREFIX` at build time, else `/usr/local` (the Makefile's
/// default `PREFIX`). [`installed_vault`] is the vault under it.
pub const INSTALL_PREFIX: &str = env!("PRIVSEP_BUILT_VAULT_PREFIX");

/// Where `sudo make install` (with the [`INSTALL_PREFIX`] as `PREFIX`) puts
/// the vault: `INSTALL_PREFIX/libexec/privsep-vault/vault`. The last place
/// [`vault_candidates`] names, whatever the program's own path: an
/// application run by `cargo run` from its `target/` finds the vault
/// installed there.
pub fn installed_vault() -> PathBuf {
    installed_vault_under(Path::new(INSTALL_PREFIX))
}

fn installed_vault_under(prefix: &Path) -> PathBuf {
    prefix.join("libexec/privsep-vault/vault")
}

/// Errors of finding, checking and starting the vault, and of protecting
/// the process that starts it.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No path was given and no vault is at any of the default places
    /// ([`vault_candidates`]); the message lists them and says how to put
    /// a vault at one of them.
    #[error("{}", NotFoundMessage(.tried))]
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

/// The message of [`LaunchError::NotFound`]: every place looked, then the
/// fixes, each of which works wherever the program runs from.
struct NotFoundMessage<'a>(&'a [PathBuf]);

impl fmt::Display for NotFoundMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no vault binary found; looked for ")?;
        let n = self.0.len();
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(if i + 1 == n { " and " } else { ", " })?;
            }
            write!(f, "{}", p.display())?;
        }
        let make_install = if INSTALL_PREFIX == "/usr/local" {
            "sudo make install".to_owned()
        } else {
            format!("sudo make install PREFIX={INSTALL_PREFIX}")
        };
        write!(
            f,
            ": install it with `{make_install}` in the privsep-vault checkout (it puts the vault in {}), or give its path (`Config::vault_path` or `protect_process(Some(path))` in an application, `--vault PATH` for `broker`)",
            installed_vault().display()
        )
    }
}

/// Where the vault is looked for, from a program at `exe`, in order:
///
/// 1. `../libexec/privsep-vault/vault` from the program's directory (the
///    layout `make install` makes; a directory of this project's own, so an
///    unrelated program called `vault` beside an installed `broker`, such as
///    another vault product's in `/usr/local/bin`, is never taken for it);
/// 2. `vault` in the same directory (a build directory: `target/release/`
///    after `make build`);
/// 3. [`installed_vault`], the fixed place under the prefix baked in at
///    build time (`/usr/local/libexec/privsep-vault/vault` by default),
///    unless it is one of the above already.
///
/// Whichever is found must still pass the trust check ([`trust`]).
pub fn vault_candidates(exe: &Path) -> Vec<PathBuf> {
    vault_candidates_under(exe, Path::new(INSTALL_PREFIX))
}

fn vault_candidates_under(exe: &Path, prefix: &Path) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(up) = exe.parent().and_then(Path::parent) {
        c.push(up.join("libexec/privsep-vault/vault"));
    }
    c.push(exe.with_file_name("vault"));
    let installed = installed_vault_under(prefix);
    if !c.contains(&installed) {
        c.push(installed);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_place_comes_after_the_relative_ones_and_only_once() {
        let prefix = Path::new("/usr/local");
        assert_eq!(
            vault_candidates_under(Path::new("/home/me/app/target/debug/app"), prefix),
            [
                "/home/me/app/target/libexec/privsep-vault/vault",
                "/home/me/app/target/debug/vault",
                "/usr/local/libexec/privsep-vault/vault",
            ]
            .map(PathBuf::from)
        );
        // Installed under the prefix itself: the first place is the fixed
        // one, not looked at twice.
        assert_eq!(
            vault_candidates_under(Path::new("/usr/local/bin/broker"), prefix),
            [
                "/usr/local/libexec/privsep-vault/vault",
                "/usr/local/bin/vault",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn the_not_found_message_lists_every_place_and_the_install_fix() {
        let tried = vault_candidates(Path::new("/opt/app/bin/app"));
        let msg = LaunchError::NotFound { tried }.to_string();
        let fixed = installed_vault();
        assert!(
            msg.starts_with(&format!(
                "no vault binary found; looked for /opt/app/libexec/privsep-vault/vault, /opt/app/bin/vault and {}: ",
                fixed.display()
            )),
            "{msg}"
        );
        assert!(msg.contains("sudo make install"), "{msg}");
        assert!(msg.contains("or give its path"), "{msg}");
    }
}
