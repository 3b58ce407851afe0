//! The vault's seccomp filter, compiled at build time from
//! `sandbox-policies/vault.json` (see `build.rs`) and installed through
//! `common::sandbox` on every thread at once (TSYNC).

use common::sandbox::{self, Compiled, Mode, SandboxError};

/// The embedded policy, in its three modes.
pub const POLICY: Compiled = common::embedded_policy!("vault");

/// Installs the vault's filter in `mode` (enforcing unless policy work asks
/// for a learning mode).
pub fn install(mode: Mode) -> Result<(), SandboxError> {
    sandbox::install(&POLICY, mode)
}
