//! The `broker` program's own seccomp filter, compiled at build time from
//! `sandbox-policies/broker.json`.
//!
//! The program installs it once the vault is running: from then on it cannot
//! exec, ptrace, read other processes' memory, open sockets or files, load
//! modules or enter namespaces. The library does not install it on behalf of
//! an application that embeds it: an application has its own needs and must
//! choose its own filter.

use common::sandbox::{self, Compiled, Mode, SandboxError};

/// The embedded policy, in its three modes.
pub const POLICY: Compiled = common::embedded_policy!("broker");

/// Installs the broker program's filter on every thread.
pub fn install(mode: Mode) -> Result<(), SandboxError> {
    sandbox::install(&POLICY, mode)
}
