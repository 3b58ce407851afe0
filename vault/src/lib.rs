//! The vault's parts, as a library so that the regression suite's probe
//! installs exactly the vault's filter through the same code path. The
//! process itself is `main.rs`.

pub mod heap;
pub mod key;
pub mod sandbox;
pub mod serve;
pub mod startup;
