//! The `broker` command line. `broker demo` runs the original proof of
//! concept's example loop against the real sandboxed vault.

mod demo;
mod signals;

use std::process::ExitCode;

const USAGE: &str = "\
usage: broker demo [OPTIONS]

Runs the whole lifecycle: starts the sandboxed vault, shows its secure heap
and key verification, reads a password, then reads it back through the vault
in a loop, showing that each side wiped its copy. Ctrl-C (or SIGTERM/SIGHUP)
shuts both processes down gracefully.

options:
  --iterations N        stop after N reads (default: run until interrupted)
  --interval-ms MS      pause between reads (default: 1000)
  --key-bits BITS       RSA key size: 2048 (default), 3072 or 4096
  --heap-size BYTES     secure heap arena, a power of two (default: by key size)
  --password-stdin      read the password from standard input, up to a newline
  --public-key-out FILE write the vault's public key there (PEM)
  --ring sealed|secret  the ring: a sealed memfd (default), or memfd_secret
                        memory that even root cannot read (the broker's
                        plaintext buffers then use it too)
  --vault PATH          the vault binary (default: next to this program, or
                        ../libexec/privsep-vault/vault as `make install` puts it);
                        it must pass the trust check (owned by root or you, not
                        writable by others, nor any directory above it)
  --sandbox-learning M  policy work only: run both seccomp filters in learning
                        mode M, trap (name refused calls, answer ENOSYS) or log
                        (the kernel logs them and lets them through)
  -h, --help            this text
  -V, --version         the version";

fn main() -> ExitCode {
    common::openssl_init::without_error_strings();
    let mut args = std::env::args_os().skip(1);
    match args.next().as_ref().and_then(|a| a.to_str()) {
        Some("demo") => {}
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("broker {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("broker: unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let opts = match demo::Options::parse(args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("broker: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The vault's exit status is collected by pid: an ignored SIGCHLD
    // (inherited across exec) would have the kernel discard it.
    // SAFETY: setting the default disposition; no handler is involved.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    // Before anything else has effects: non-dumpable, no core files, no
    // tracer, the vault checked and prepared; started from a readable file,
    // this re-executes the program from an execute-only copy (with the same
    // arguments, parsed again).
    let protection = match broker::protect_process(opts.vault()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("broker: {}", demo::error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    if let Some(warning) = protection.warning() {
        eprintln!("broker: {warning}");
    }
    broker::terminal::install_restore_hook();
    let signals = match signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    demo::run(&opts, signals, &protection)
}
