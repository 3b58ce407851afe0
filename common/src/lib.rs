//! What both processes share.
//!
//! - [`ring`]: two single-producer single-consumer byte rings in one sealed
//!   memfd, with wipe-after-read on both sides and a futex for sleeping.
//! - [`seal`]: creating the memfd, sealing it, and checking the seals of a
//!   memfd received from the peer before it is mapped.
//! - [`protocol`]: the versioned binary wire format.
//! - [`secret`]: page-backed, locked, never-dumped buffers for plaintext.
//! - [`secretmem`]: `memfd_secret(2)`, memory a passive read by root
//!   cannot reach.
//! - [`budget`]: the one memory-lock budget of both processes.
//! - [`harden`]: process hardening used by both sides.
//! - [`malloc`]: glibc's malloc settled for a seccomp filter (no trimming),
//!   and the `heap` selftest of both programs.
//! - [`openssl_init`]: OpenSSL initialised without its error strings.
//! - [`sandbox`]: installing a seccomp filter compiled at build time, and
//!   the learning mode's SIGSYS handler.
//! - [`sys`]: the thin syscall wrappers; most `unsafe` of this crate is here.
//!
//! Everything read from shared memory comes from an untrusted peer: it is read
//! once, validated, then used.

pub mod budget;
pub mod harden;
pub mod malloc;
pub mod openssl_init;
pub mod protocol;
pub mod ring;
pub mod sandbox;
pub mod seal;
pub mod secret;
pub mod secretmem;
pub mod sys;
#[cfg(test)]
mod testrand;
