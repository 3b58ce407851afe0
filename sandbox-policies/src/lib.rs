//! The seccomp policies as reviewed data, and the tools that keep them honest.
//!
//! - [`model`]: a policy file read with every comment kept (seccompiler
//!   discards them), strictly: unknown fields are errors.
//! - [`lint`]: the rules a policy must follow before it may be embedded.
//! - [`render`]: the human-readable review (`REVIEW.md`), with flag names.
//! - [`compile`]: build-time compilation into BPF, in the enforcing and the
//!   learning modes, used by the vault's and the broker's `build.rs`.
//! - [`bpf`]: a classic-BPF interpreter written from the kernel's
//!   definitions, independent of seccompiler, and the rule by which the
//!   kernel combines the results of several filters.
//! - [`verify`] and [`live`]: `policy verify`, which reads the filters
//!   the kernel holds for a running process and checks them against the
//!   JSON, byte for byte and by meaning.
//! - [`syscalls`]: the system call table (from the kernel's UAPI header).

pub mod bpf;
pub mod compile;
pub mod decode;
pub mod lint;
pub mod live;
pub mod model;
pub mod render;
pub mod syscalls;
pub mod verify;

/// The policy files this project embeds, relative to this crate's directory.
pub const POLICY_FILES: [&str; 2] = ["vault.json", "broker.json"];
