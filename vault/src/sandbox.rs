//! Installing the seccomp filter compiled from `sandbox-policies/vault.json`.
//!
//! `build.rs` compiles the policy with seccompiler at build time and this
//! module embeds the result; the filter is installed on every thread at once
//! (TSYNC), so no thread can exist unfiltered. Default action: kill the
//! process.

use seccompiler::{sock_filter, BpfProgram};

static POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vault.bpf"));

/// Errors of installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the embedded policy is corrupt ({len} bytes is not a whole number of BPF instructions)"
    )]
    Corrupt { len: usize },
    #[error("cannot install the seccomp filter")]
    Install(#[source] seccompiler::Error),
}

/// The embedded BPF program.
pub fn program() -> Result<BpfProgram, SandboxError> {
    if POLICY.is_empty() || POLICY.len() % 8 != 0 {
        return Err(SandboxError::Corrupt { len: POLICY.len() });
    }
    Ok(POLICY
        .chunks_exact(8)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Installs the vault's filter on all threads of the process.
pub fn install() -> Result<(), SandboxError> {
    let prog = program()?;
    seccompiler::apply_filter_all_threads(&prog).map_err(SandboxError::Install)
}
