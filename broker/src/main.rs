//! The `broker` command line. `broker demo` runs the original proof of
//! concept's example loop against the real sandboxed vault.

mod demo;
mod selftest;
mod signals;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// The exit statuses of `broker`, in one place: the help text lists
/// [`exit::TABLE`], and the README's table is checked against the help
/// (`tests/tests/demo.rs`).
pub mod exit {
    /// The reads ran, or a signal ended the loop.
    pub const SUCCESS: u8 = 0;
    /// The vault, or the protected start around it, failed. 1 because
    /// scripts and suites already took 1 for these (a vault killed by its
    /// sandbox, a broker under a tracer).
    pub const VAULT_FAILED: u8 = 1;
    /// The command line was refused; nothing was started.
    pub const USAGE: u8 = 2;
    /// Cancelled at the password prompt; nothing was stored.
    pub const CANCELLED: u8 = 3;
    /// The password was refused or could not be read.
    pub const PASSWORD_REFUSED: u8 = 4;
    /// A check failed: a ✗ in the output.
    pub const CHECK_FAILED: u8 = 5;

    /// Each status and its meaning, as the help text and the README list
    /// them.
    pub const TABLE: [(u8, &str); 6] = [
        (
            SUCCESS,
            "success: the reads ran, or Ctrl-C, SIGTERM or SIGHUP ended the loop",
        ),
        (
            VAULT_FAILED,
            "the vault failed: not found or refused by the trust check, could not \
             start, died, timed out or refused a request; or the broker could not \
             protect or sandbox itself, or write the public key",
        ),
        (
            USAGE,
            "usage: the command line was refused (the message names the argument \
             and what is accepted), or cannot be honoured here (standard input is \
             not a terminal and --password-stdin was not given; the \
             --public-key-out file cannot be opened): nothing was started",
        ),
        (
            CANCELLED,
            "cancelled at the password prompt (Ctrl-C, Ctrl-D, SIGTERM, SIGHUP, or \
             the end of the input): nothing was stored",
        ),
        (
            PASSWORD_REFUSED,
            "the password was refused (empty, or over the limit) or could not be read",
        ),
        (
            CHECK_FAILED,
            "a check failed (a ✗ in the output): the demo stopped there",
        ),
    ];
}

/// Where a usage error sends the user.
const TOP_HELP: &str = "broker --help";
const DEMO_HELP: &str = "broker demo --help";

/// `text` wrapped at 79 columns, the first line after `first`, the others
/// after `indent` spaces.
fn wrap(first: &str, indent: usize, text: &str) -> String {
    let mut out = String::from(first);
    let mut col = first.chars().count();
    let mut line_empty = true;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if !line_empty && col + 1 + len > 79 {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
            line_empty = true;
        }
        if !line_empty {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += len;
        line_empty = false;
    }
    out
}

/// Lane counts grouped by `f(lanes)`: "1048576 with 1 or 2 lanes, 2097152
/// with 3 or 4".
fn by_lanes(f: fn(usize) -> usize) -> String {
    let max = broker::client::DEFAULT_MAX_LANES;
    let mut groups: Vec<(usize, usize, usize)> = Vec::new();
    for lanes in 1..=max {
        match groups.last_mut() {
            Some((value, _, last)) if *value == f(lanes) => *last = lanes,
            _ => groups.push((f(lanes), lanes, lanes)),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, &(value, first, last))| {
            let lanes = match last - first {
                0 => format!("{first}"),
                1 => format!("{first} or {last}"),
                _ => format!("{first} to {last}"),
            };
            let unit = if i > 0 {
                ""
            } else if last == 1 {
                " lane"
            } else {
                " lanes"
            };
            format!("{value} with {lanes}{unit}")
        })
        .collect();
    parts.join(", ")
}

/// The help text, made from the values the program enforces.
fn help() -> String {
    let lanes = broker::client::DEFAULT_MAX_LANES;
    let heap = wrap(
        "  --heap-size BYTES     ",
        24,
        &format!(
            "the vault's secure heap: a power of two from the least its lanes \
             need ({}) to {}; default {} (one lane per CPU, up to {lanes})",
            by_lanes(common::budget::min_arena),
            demo::MAX_HEAP_SIZE,
            by_lanes(common::budget::default_arena),
        ),
    );
    let vault = wrap(
        "  --vault PATH          ",
        24,
        &format!(
            "the vault binary (default: the first of ../libexec/privsep-vault/vault \
             from this program's directory, where `make install` puts it, `vault` \
             next to this program, and {}); it must pass the trust check (a \
             regular file owned by root or you, not writable by others, nor any \
             directory above it)",
            broker::launch::installed_vault().display()
        ),
    );
    let exits: Vec<String> = exit::TABLE
        .iter()
        .map(|(code, meaning)| wrap(&format!("  {code}  "), 5, meaning))
        .collect();
    format!(
        "\
usage: broker demo [OPTIONS]
       broker help [demo] | -h | --help
       broker -V | --version

`broker demo` runs the whole lifecycle: it starts the sandboxed vault, shows
its secure heap and key verification, reads a password, then reads it back
through the vault in a loop, showing that each side wiped its copy. Ctrl-C,
SIGTERM or SIGHUP ends the loop and shuts both processes down gracefully.

options of demo (each also as --name=value):
  --iterations N        stop after N reads, {iter_min} to {iter_max}
                        (default: run until interrupted)
  --interval-ms MS      pause between reads, {int_min} to {int_max} (default: 1000)
  --key-bits BITS       RSA key size: 2048 (default), 3072 or 4096
{heap}
  --password-stdin      read the password from standard input, not the
                        terminal: up to the first newline (a final \\n or \\r\\n
                        is removed) or to the end of the input
  --public-key-out FILE write the vault's public key there (PEM); opened
                        before the vault starts
  --secret-memory auto|require|off
                        memfd_secret memory, out of the kernel's direct map,
                        for the vault's arena (the key), the rings and the
                        broker's plaintext buffers: a passive read even by
                        root fails. auto (default): where the kernel offers
                        it, else ordinary locked memory, said so; require:
                        or refuse to start; off: ordinary locked memory
{vault}
  --sandbox-learning M  policy work only: run both seccomp filters in learning
                        mode M, trap (name refused calls, answer ENOSYS) or log
                        (the kernel logs them and lets them through)
  --sandbox-name-rule FILTER:RULE
                        policy work only: the broker's own filter enforcing
                        with one rule taken away (numbered as in
                        sandbox-policies/REVIEW.md, e.g. broker:12): each call
                        that needed it is named on stderr and answered ENOSYS;
                        not with --sandbox-learning
  --selftest NAME       the suites only: the broker does NAME on purpose once
                        it gets SIGUSR1 (panic, segv, sigbus, clone3, contend,
                        heap or thread-end)
  -h, --help            this text

the password: 1 to {max_pw} bytes, any bytes. On the terminal it is not echoed;
Backspace erases a character, Ctrl-U the line; Ctrl-C, or Ctrl-D on an empty
entry, cancels. Over what one RSA-OAEP-SHA256 block holds (190 bytes at 2048
bits), it is sealed in an AES-256-GCM envelope whose key the vault's RSA key
wraps.

exit status:
{exits}",
        iter_min = demo::ITERATIONS.start(),
        iter_max = demo::ITERATIONS.end(),
        int_min = demo::INTERVAL_MS.start(),
        int_max = demo::INTERVAL_MS.end(),
        max_pw = demo::MAX_PASSWORD_LEN,
        exits = exits.join("\n"),
    )
}

/// Prints `text` on standard output; a closed pipe (`broker --help | head`)
/// is not an error.
fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
    ExitCode::from(exit::SUCCESS)
}

/// A usage error: one line naming the problem and where the help is.
fn usage_error(problem: &str, help: &str) -> ExitCode {
    eprintln!("broker: {problem}; see '{help}'");
    ExitCode::from(exit::USAGE)
}

common::libcrypto_only_init!();

fn main() -> ExitCode {
    // First: no descriptor inherited above 2 (but the vault image handed
    // across our own re-exec). The filter lets this program signal through
    // any pidfd it holds; it must hold only its vaults'.
    if let Err(e) = broker::launch::close_inherited_fds() {
        eprintln!("broker: cannot close the descriptors it inherited: {e}");
        return ExitCode::from(exit::VAULT_FAILED);
    }
    // A panic's backtrace reads the program's own file for its symbols,
    // which the sandbox refuses: with RUST_BACKTRACE set (a developer's
    // shell), a panic under the filter would end as a sandbox kill instead
    // of the crash it is. std reads the variable at the first panic; it is
    // dropped here, before any thread exists.
    std::env::remove_var("RUST_BACKTRACE");
    std::env::remove_var("RUST_LIB_BACKTRACE");
    common::openssl_init::without_error_strings();
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    match first.as_ref().map(|a| a.to_str()) {
        None => return usage_error("no command given (the command is demo)", TOP_HELP),
        Some(Some("demo")) => {}
        Some(Some("help")) => {
            let rest: Vec<OsString> = args.collect();
            return match rest.as_slice() {
                [] => print(&help()),
                [topic] if topic == "demo" => print(&help()),
                [topic] => usage_error(
                    &format!("no help on {topic:?}: the only command is demo"),
                    TOP_HELP,
                ),
                [_, extra, ..] => usage_error(&format!("unexpected argument {extra:?}"), TOP_HELP),
            };
        }
        Some(Some("-h" | "--help")) => return print(&help()),
        Some(Some("-V" | "--version")) => {
            return print(&format!("broker {}", env!("CARGO_PKG_VERSION")))
        }
        Some(Some(option)) if option.starts_with('-') => {
            return usage_error(&format!("unknown option {option:?}"), TOP_HELP)
        }
        Some(_) => {
            let command = first.unwrap_or_default();
            return usage_error(
                &format!("unknown command {command:?} (the command is demo)"),
                TOP_HELP,
            );
        }
    }
    let opts = match demo::Command::parse(args) {
        Ok(demo::Command::Help) => return print(&help()),
        Ok(demo::Command::Run(o)) => o,
        Err(problem) => return usage_error(&problem, DEMO_HELP),
    };
    // Refused before anything has effects, the vault's key above all.
    if let Err(problem) = opts.preflight() {
        eprintln!("broker: {problem}");
        return ExitCode::from(exit::USAGE);
    }
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
            return ExitCode::from(exit::VAULT_FAILED);
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
            return ExitCode::from(exit::VAULT_FAILED);
        }
    };
    demo::run(&opts, signals, &protection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_distinct_and_each_listed_once() {
        let mut codes: Vec<u8> = exit::TABLE.iter().map(|&(c, _)| c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), exit::TABLE.len(), "two meanings share a code");
        for code in [
            exit::SUCCESS,
            exit::VAULT_FAILED,
            exit::USAGE,
            exit::CANCELLED,
            exit::PASSWORD_REFUSED,
            exit::CHECK_FAILED,
        ] {
            assert!(codes.contains(&code), "{code} is not in the table");
        }
        assert_eq!(exit::SUCCESS, 0);
        assert_eq!(exit::USAGE, 2);
    }

    #[test]
    fn the_help_lists_every_exit_status_and_fits_79_columns() {
        let help = help();
        for (code, meaning) in exit::TABLE {
            let first = meaning.split_whitespace().take(3).collect::<Vec<_>>();
            assert!(
                help.contains(&format!("  {code}  {}", first.join(" "))),
                "{code} missing:\n{help}"
            );
        }
        for line in help.lines() {
            assert!(line.chars().count() <= 79, "too long: {line:?}");
        }
        assert!(help.contains(&format!("1 to {} bytes", demo::MAX_PASSWORD_LEN)));
        assert!(help.contains(&demo::MAX_HEAP_SIZE.to_string()));
        // Every selftest is named (the help wraps the list by hand).
        let names = selftest::Selftest::NAMES.replace(" or ", ", ");
        let flat = help
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace(" or ", ", ");
        for name in names.split(", ") {
            assert!(
                flat.contains(&format!("{name},")) || flat.contains(&format!("{name})")),
                "selftest {name} missing from the help"
            );
        }
    }

    #[test]
    fn wrap_breaks_between_words_under_the_width() {
        let text = "word ".repeat(40);
        let wrapped = wrap("  9  ", 5, &text);
        assert!(wrapped.lines().count() > 1);
        for (i, line) in wrapped.lines().enumerate() {
            assert!(line.chars().count() <= 79, "{line:?}");
            if i > 0 {
                assert!(line.starts_with("     word"), "{line:?}");
            }
        }
        assert_eq!(wrapped.split_whitespace().count(), 1 + 40, "no word lost");
    }

    #[test]
    fn lanes_are_grouped_by_value() {
        assert_eq!(broker::client::DEFAULT_MAX_LANES, 4);
        assert_eq!(
            by_lanes(|l| if l <= 2 { 10 } else { 20 }),
            "10 with 1 or 2 lanes, 20 with 3 or 4"
        );
        assert_eq!(
            by_lanes(|l| if l == 1 { 10 } else { 20 }),
            "10 with 1 lane, 20 with 2 to 4"
        );
        assert_eq!(by_lanes(|_| 10), "10 with 1 to 4 lanes");
    }
}
