//! The vault's parts, as a library so that the regression suite's probe
//! installs exactly the vault's filter through the same code path. The
//! process itself is `main.rs`.

pub mod alloc;
pub mod arena_thread;
pub mod heap;
pub mod key;
pub mod sandbox;
pub mod secret_arena;
pub mod serve;
pub mod startup;

/// Writes one line to standard error: the broker's drain pipe, the one
/// place besides its rings the vault writes to. Never panics (`eprintln!`
/// does when the write fails): if the broker is gone, no one is left to
/// tell.
pub fn say(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}
