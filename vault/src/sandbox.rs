//! The vault's seccomp filter, compiled at build time from
//! `sandbox-policies/vault.json` (see `build.rs`) and installed through
//! `common::sandbox` on every thread at once (TSYNC).

use common::sandbox::{self, Aside, Compiled, Mode, SandboxError};

/// The embedded policy, in its three modes.
pub const POLICY: Compiled = common::embedded_policy!("vault");

/// Installs the vault's filter in `mode` (enforcing unless policy work asks
/// for a learning mode).
pub fn install(mode: Mode) -> Result<(), SandboxError> {
    sandbox::install(&POLICY, mode)
}

/// The rule check (`--sandbox-name-rule FILTER:RULE`): the filter enforcing
/// and, on top, the namer of that rule (see
/// [`common::sandbox::install_naming`]). A line for a rule about `write`
/// goes out with `writev` (stderr is the vault's only output).
pub fn install_naming(filter: &str, rule: u32) -> Result<(), SandboxError> {
    sandbox::install_naming(&POLICY, filter, rule, Aside::Writev(2))
}
