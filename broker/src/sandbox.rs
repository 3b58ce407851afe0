//! The `broker` program's own seccomp filter, compiled at build time from
//! `sandbox-policies/broker.json`.
//!
//! The program installs it once the vault is running: from then on it cannot
//! exec, ptrace, read other processes' memory, open sockets or files, load
//! modules or enter namespaces. The library does not install it on behalf of
//! an application that embeds it: an application has its own needs and must
//! choose its own filter.

use common::sandbox::{self, Aside, Compiled, Mode, SandboxError};

/// The embedded policy, in its three modes.
pub const POLICY: Compiled = common::embedded_policy!("broker");

/// Installs the broker program's filter on every thread.
pub fn install(mode: Mode) -> Result<(), SandboxError> {
    sandbox::install(&POLICY, mode)
}

/// The rule check (`broker demo --sandbox-name-rule FILTER:RULE`, policy
/// work and the "every rule is needed" suite only): the filter enforcing
/// and, on top, the namer of that rule, which traps its calls (see
/// [`common::sandbox::install_naming`]). The broker may write on fd 1 and
/// fd 2, one rule each: the line naming a call goes to stderr, or to stdout
/// when the call named is a write to stderr.
pub fn install_naming(filter: &str, rule: u32) -> Result<(), SandboxError> {
    sandbox::install_naming(&POLICY, filter, rule, Aside::WriteAvoiding(2, 1))
}
