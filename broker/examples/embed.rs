//! An application that embeds the broker library: it reads a password,
//! keeps only its ciphertext, has the vault decrypt it once for a closure,
//! and shuts the vault down.
//!
//! ```sh
//! cargo build --example embed            # target/debug/examples/embed
//! sudo make install-bins PREFIX=/opt/demo PROFILE=debug
//! sudo install -m 0711 target/debug/examples/embed /opt/demo/bin/embed
//! echo hunter2 | /opt/demo/bin/embed     # finds ../libexec/privsep-vault/vault
//! echo hunter2 | target/debug/examples/embed target/debug/vault
//! sudo make install                      # /usr/local/libexec/privsep-vault/vault
//! echo hunter2 | target/debug/examples/embed   # finds it there
//! ```
//!
//! Usage: `embed [VAULT]`. Without `VAULT`, the vault is found where
//! `make install` puts it beside this program (`../libexec/privsep-vault/vault`
//! from its directory), else beside it, else where `sudo make install` put
//! it under the prefix baked in at build time
//! (`/usr/local/libexec/privsep-vault/vault` by default): the one place
//! that works from `target/debug/examples/`, unless the path is given. The password comes from the
//! terminal (not echoed), or from standard input up to a newline when that
//! is not a terminal. Exit status 0 when the secret went through the vault
//! and the vault exited cleanly.

use std::error::Error;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use broker::terminal::{self, PasswordSource};
use broker::{Broker, Config};

fn main() -> ExitCode {
    // First thing in main, before any thread and before anything with
    // effects: it may re-execute this program (same arguments, same
    // environment) from an execute-only copy. It also finds, checks and
    // prepares the vault binary, which `Broker::spawn` then runs.
    let vault = std::env::args_os().nth(1).map(PathBuf::from);
    let protection = match broker::protect_process(vault.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    println!("embed: {}", protection.describe());
    if let Some(warning) = protection.warning() {
        eprintln!("embed: {warning}");
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.as_ref()),
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let vault = Broker::spawn(Config::default())?;
    println!(
        "embed: vault pid {} ready, {} lane(s), run from {}",
        vault.vault_pid(),
        vault.lanes(),
        vault.vault_image().describe()
    );

    // The password lands in a locked, never-dumped buffer; `store` encrypts
    // it with the vault's public key and wipes it, whatever happens.
    let source = if std::io::stdin().is_terminal() {
        PasswordSource::Terminal
    } else {
        PasswordSource::Stdin
    };
    let password = terminal::read_password(source, "password: ", vault.direct_secret_len(), None)?;
    let len = password.len();
    vault.store("db-password", password)?;
    println!("embed: stored \"db-password\" ({len} bytes): the application keeps only ciphertext");

    // The plaintext exists in this process only while `connect` (any
    // `FnOnce(&[u8]) -> R`, a closure as often) runs, in a locked buffer
    // wiped when it returns or panics.
    let lent = vault.with_secret("db-password", connect)?;
    println!("embed: with_secret lent {lent} bytes to the closure; the copy is wiped");

    // Dropping the broker would do the same; shutting down says how the
    // vault ended.
    let exit = vault.shutdown()?;
    println!("embed: vault {exit}");
    if exit.is_clean() {
        Ok(())
    } else {
        Err(format!("the vault {exit}").into())
    }
}

/// Stands in for whatever the application does with the password (log in
/// to a database, say): here, it only counts the bytes.
fn connect(password: &[u8]) -> usize {
    password.len()
}

/// Prints `e` and its causes on one line; exit status 1.
fn fail(e: &dyn Error) -> ExitCode {
    let mut line = format!("embed: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{line}");
    ExitCode::FAILURE
}
