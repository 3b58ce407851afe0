//! `broker demo`: the original proof of concept's example loop, made true.
//!
//! 1. start the sandboxed vault and show its secure heap and key verification;
//! 2. show the public key's SHA-256 fingerprint (and write it out if asked);
//! 3. read the password (terminal with echo off, or `--password-stdin`);
//! 4. loop: verify the allocation, read the password inside `with_secret`,
//!    and show the evidence that each side wiped its copy;
//! 5. on a signal or after `--iterations`, shut both processes down.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use broker::terminal::{self, PasswordError, PasswordSource};
use broker::{Broker, Config, HeapStatus, Protection, RingBacking, SandboxMode};
use common::protocol::PRIVATE_NUMBERS;

use crate::signals::Signals;

const SECRET_NAME: &str = "demo-password";

/// The demo's options.
#[derive(Debug)]
pub struct Options {
    iterations: Option<u64>,
    interval: Duration,
    key_bits: u32,
    heap_size: Option<usize>,
    password_stdin: bool,
    public_key_out: Option<PathBuf>,
    vault: Option<PathBuf>,
    sandbox_mode: SandboxMode,
    vault_args: Vec<String>,
    ring: RingBacking,
}

impl Options {
    /// The vault binary asked for, if any.
    pub fn vault(&self) -> Option<&std::path::Path> {
        self.vault.as_deref()
    }

    /// Parses the options after `demo`.
    pub fn parse(args: impl Iterator<Item = OsString>) -> Result<Self, String> {
        let mut o = Options {
            iterations: None,
            interval: Duration::from_millis(1000),
            key_bits: 2048,
            heap_size: None,
            password_stdin: false,
            public_key_out: None,
            vault: None,
            sandbox_mode: SandboxMode::Enforce,
            vault_args: Vec::new(),
            ring: RingBacking::SealedMemfd,
        };
        // `--name=value` is split into `--name value`.
        let mut split = Vec::new();
        for arg in args {
            let arg = arg
                .into_string()
                .map_err(|a| format!("argument {a:?} is not UTF-8"))?;
            match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => {
                    split.push(OsString::from(name));
                    split.push(OsString::from(value));
                }
                _ => split.push(OsString::from(arg)),
            }
        }
        let mut args = split.into_iter();
        while let Some(arg) = args.next() {
            let arg = arg.into_string().unwrap_or_default();
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            let number = |name: &str, v: OsString| -> Result<u64, String> {
                v.to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("{name}: {v:?} is not a number"))
            };
            match arg.as_str() {
                "--iterations" => {
                    o.iterations = Some(number("--iterations", value("--iterations")?)?)
                }
                "--interval-ms" => {
                    o.interval =
                        Duration::from_millis(number("--interval-ms", value("--interval-ms")?)?)
                }
                "--key-bits" => {
                    let b = number("--key-bits", value("--key-bits")?)?;
                    o.key_bits = match b {
                        2048 | 3072 | 4096 => u32::try_from(b).unwrap_or(2048),
                        _ => {
                            return Err(format!(
                                "--key-bits {b} is not offered; use 2048, 3072 or 4096"
                            ))
                        }
                    };
                }
                "--heap-size" => {
                    let n = number("--heap-size", value("--heap-size")?)?;
                    let n =
                        usize::try_from(n).map_err(|_| "--heap-size is too large".to_owned())?;
                    if !n.is_power_of_two() {
                        return Err(format!(
                            "--heap-size {n} is not a power of two (e.g. 65536 or 131072)"
                        ));
                    }
                    o.heap_size = Some(n);
                }
                "--password-stdin" => o.password_stdin = true,
                "--public-key-out" => {
                    o.public_key_out = Some(PathBuf::from(value("--public-key-out")?))
                }
                "--vault" => o.vault = Some(PathBuf::from(value("--vault")?)),
                "--ring" => {
                    let v = value("--ring")?.into_string().unwrap_or_default();
                    o.ring = RingBacking::parse(&v)
                        .ok_or_else(|| format!("--ring {v:?}: use sealed or secret"))?;
                }
                "--sandbox-learning" => {
                    let v = value("--sandbox-learning")?
                        .into_string()
                        .unwrap_or_default();
                    o.sandbox_mode = match SandboxMode::parse(&v) {
                        Some(m) if m.is_learning() => m,
                        _ => return Err(format!("--sandbox-learning {v:?}: use trap or log")),
                    };
                }
                // For the regression suite: passed through to the vault
                // (e.g. `--vault-arg --selftest --vault-arg panic`).
                "--vault-arg" => o
                    .vault_args
                    .push(value("--vault-arg")?.into_string().unwrap_or_default()),
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        Ok(o)
    }
}

fn tick(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An error and its causes, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

fn show_heap(s: &HeapStatus, arena_ok: bool) {
    println!(
        "  secure heap: CRYPTO_secure_malloc_init({}, {}) = 1, initialized: {}",
        s.arena_size,
        s.min_size,
        if s.initialized { "yes" } else { "NO" }
    );
    let numbers: Vec<String> = PRIVATE_NUMBERS
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n} {}", tick(s.secure_flags & s.in_arena & (1 << i) != 0)))
        .collect();
    println!(
        "  private numbers in the secure heap (BN_FLG_SECURE and limbs inside the arena): {}",
        numbers.join("  ")
    );
    println!(
        "  secure heap used: {} B before key generation (OpenSSL's own state and the lanes' stacks), {} B after it (+{} B), {} B once every lane had warmed up: the baseline {}",
        s.used_before_keygen,
        s.after_keygen,
        s.after_keygen.saturating_sub(s.used_before_keygen),
        s.baseline,
        tick(arena_ok)
    );
    println!(
        "  arena high-water mark {} B of {} B; allocations refused because it was full: {}",
        s.high_water, s.arena_size, s.refused
    );
}

fn show_sandbox(b: &Broker) {
    let pid = b.vault_pid();
    let field = |f: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|st| {
                st.lines().find_map(|l| {
                    l.strip_prefix(f)
                        .map(|v| v.trim_start_matches(':').trim().to_owned())
                })
            })
            .unwrap_or_else(|| "?".into())
    };
    let seccomp = field("Seccomp");
    let nnp = field("NoNewPrivs");
    let capeff = field("CapEff");
    let capprm = field("CapPrm");
    let capbnd = field("CapBnd");
    let zero = |v: &str| v.trim_start_matches('0').is_empty();
    // Only a privileged vault can empty its bounding set (CAP_SETPCAP); for
    // an unprivileged one it stays full and grants nothing (no_new_privs, no
    // execve).
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let bounding = if zero(&capbnd) {
        format!("CapBnd {capbnd} {}", tick(true))
    } else if root {
        format!("CapBnd {capbnd} {}", tick(false))
    } else {
        "CapBnd full (unprivileged: cannot be dropped; grants nothing under NoNewPrivs without execve)".to_owned()
    };
    println!(
        "  vault sandbox (from /proc/{pid}/status): Seccomp {seccomp} {}  NoNewPrivs {nnp} {}  CapEff {capeff} {}  CapPrm {capprm} {}  {bounding}",
        tick(seccomp == "2"),
        tick(nnp == "1"),
        tick(zero(&capeff)),
        tick(zero(&capprm)),
    );
    let kib = common::ring::REGION_LEN / 1024;
    match b.ring_backing() {
        RingBacking::SealedMemfd => {
            let seals = b.ring_seals();
            println!(
                "  rings: {} lane(s), one vault thread each; each a sealed memfd of {kib} KiB, seals {} {}",
                b.lanes(),
                common::seal::seal_names(seals),
                tick(seals & common::seal::REQUIRED_SEALS == common::seal::REQUIRED_SEALS)
            );
        }
        RingBacking::Secret => {
            let seals = b.ring_seals();
            println!(
                "  rings: {} lane(s), one vault thread each; data in memfd_secret ({} KiB each): out of the kernel's direct map, so a passive read even by root fails; size set once ✓",
                b.lanes(),
                common::ring::DATA_REGION_LEN / 1024
            );
            println!(
                "        indices and futex words in a sealed memfd ({} KiB), seals {} {}",
                common::ring::CONTROL_REGION_LEN / 1024,
                common::seal::seal_names(seals),
                tick(seals & common::seal::REQUIRED_SEALS == common::seal::REQUIRED_SEALS)
            );
            println!("  the broker's plaintext buffers are memfd_secret memory too");
        }
    }
}

fn warn_learning(mode: SandboxMode) {
    let what = match mode {
        SandboxMode::Trap => "named on stderr and answered ENOSYS",
        _ => "logged by the kernel (dmesg, audit type 1326) and ALLOWED",
    };
    let bar = "!".repeat(78);
    println!("{bar}");
    println!(
        "!! SANDBOX LEARNING MODE ({}): the seccomp filters of the vault and the broker",
        mode.as_str()
    );
    println!("!! do NOT kill forbidden system calls; they are {what}.");
    println!("!! This is for policy work only. Never use it with real secrets.");
    println!("{bar}\n");
}

/// The start-up protection of both processes, as measured.
fn show_protection(b: &Broker, protection: &Protection) {
    let pid = b.vault_pid();
    // The vault's tracer, from its status (readable to its user).
    let vault_tracer = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("TracerPid:").map(|v| v.trim().to_owned()))
        });
    let untraced = vault_tracer.as_deref() == Some("0");
    let (broker_mark, vault_mark) = match protection {
        Protection::ExecuteOnly => ("✓", "non-dumpable from its first instruction ✓"),
        Protection::Reexecuted { .. } => (
            "(partial: see the warning above)",
            "non-dumpable from its first instruction ✓",
        ),
        Protection::Privileged => (
            "",
            "as root the kernel's execute-only protection does not apply",
        ),
    };
    println!("  start-up protection against other processes of your user:");
    println!("    broker: {} {broker_mark}", protection.describe());
    println!(
        "    vault: run from {}: {vault_mark}",
        b.vault_image().describe()
    );
    println!(
        "    tracers: none on the broker (checked at its start) ✓, none on the vault (TracerPid {}) {}",
        vault_tracer.as_deref().unwrap_or("?"),
        tick(untraced)
    );
}

/// Runs the demo; the exit code is 0 after a graceful shutdown.
pub fn run(opts: &Options, mut signals: Signals, protection: &Protection) -> ExitCode {
    println!("privsep-vault demo: a sandboxed vault holds an RSA key in OpenSSL's secure heap;");
    println!(
        "the broker keeps only ciphertext and lends plaintext to a closure, wiping every copy.\n"
    );

    if opts.sandbox_mode.is_learning() {
        warn_learning(opts.sandbox_mode);
    }
    println!("[1/4] starting the sandboxed vault (RSA-{})", opts.key_bits);
    // The vault binary was resolved, checked and prepared by
    // protect_process (before any re-exec); the broker runs that image.
    let config = Config {
        key_bits: opts.key_bits,
        heap_size: opts.heap_size,
        sandbox_mode: opts.sandbox_mode,
        vault_args: opts.vault_args.clone(),
        ring: opts.ring,
        ..Config::default()
    };
    let started = Instant::now();
    let broker = match Broker::spawn(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("broker: cannot start the vault: {}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    println!(
        "  vault pid {} ready in {} ms: key generated inside the sandbox",
        broker.vault_pid(),
        started.elapsed().as_millis()
    );
    let status = match broker.heap_status() {
        Ok(s) => s,
        Err(e) => return fail(&broker, &e),
    };
    show_heap(&status, status.verified());
    show_sandbox(&broker);
    show_protection(&broker, protection);
    if !status.verified() {
        eprintln!("broker: the vault's secure heap verification failed; stopping");
        let _ = broker.shutdown();
        return ExitCode::FAILURE;
    }

    println!("\n[2/4] public key");
    println!(
        "  SHA-256 fingerprint of the DER public key:\n  {}",
        hex(&broker.fingerprint())
    );
    if let Some(path) = &opts.public_key_out {
        let written = broker
            .public_key_pem()
            .map_err(|e| e.to_string())
            .and_then(|pem| std::fs::write(path, pem).map_err(|e| e.to_string()));
        match written {
            Ok(()) => println!("  written to {} (PEM)", path.display()),
            Err(e) => {
                eprintln!(
                    "broker: cannot write the public key to {}: {e}",
                    path.display()
                );
                let _ = broker.shutdown();
                return ExitCode::FAILURE;
            }
        }
    }

    // The vault runs and every file this run writes is written: from here on
    // the broker itself needs no exec, no files, no sockets, no ptrace.
    match broker::sandbox::install(opts.sandbox_mode) {
        Ok(()) => println!(
            "  broker sandbox: sandbox-policies/broker.json installed ({})",
            if opts.sandbox_mode.is_learning() {
                "LEARNING MODE, not enforcing"
            } else {
                "enforcing"
            }
        ),
        Err(e) => {
            eprintln!("broker: cannot sandbox the broker: {}", error_chain(&e));
            let _ = broker.shutdown();
            return ExitCode::FAILURE;
        }
    }

    println!("\n[3/4] password");
    let source = if opts.password_stdin {
        PasswordSource::Stdin
    } else {
        PasswordSource::Terminal
    };
    if opts.password_stdin {
        println!("  reading the password from standard input (up to a newline)");
    }
    let _ = std::io::stdout().flush();
    let limit = broker.direct_secret_len();
    let password = match terminal::read_password(
        source,
        "  password (not echoed): ",
        limit,
        Some(signals.fd()),
    ) {
        Ok(p) => p,
        Err(PasswordError::Interrupted { what }) => {
            let why = signals
                .take()
                .map_or(what.to_owned(), |s| s.as_str().to_owned());
            println!("  interrupted by {why} at the password prompt; nothing was kept");
            return shutdown(&broker);
        }
        Err(e) => {
            eprintln!("broker: {}", error_chain(&e));
            let _ = broker.shutdown();
            return ExitCode::FAILURE;
        }
    };
    let len = password.len();
    if let Err(e) = broker.store(SECRET_NAME, password) {
        return fail(&broker, &e);
    }
    println!(
        "  {len} bytes read into a locked buffer, encrypted with RSA-OAEP-SHA256 ({} bytes of ciphertext kept as {SECRET_NAME:?});",
        broker.key_bytes()
    );
    println!("  the plaintext buffer was wiped at once");

    println!(
        "\n[4/4] reading the password through the vault{}",
        match opts.iterations {
            Some(n) => format!(" {n} times"),
            None => ", until Ctrl-C".to_owned(),
        }
    );
    let mut i = 0u64;
    loop {
        if opts.iterations.is_some_and(|n| i >= n) {
            break;
        }
        if let Some(sig) = signals.take() {
            println!("  {} received", sig.as_str());
            break;
        }
        i += 1;
        let read = broker.with_secret_evidence(SECRET_NAME, |pw| pw.len());
        let (n, evidence) = match read {
            Ok(v) => v,
            Err(e) => return fail(&broker, &e),
        };
        let after = match broker.heap_status() {
            Ok(s) => s,
            Err(e) => return fail(&broker, &e),
        };
        // The vault checked its key before the decryption (it refuses to
        // decrypt otherwise); at rest after it, the arena must hold its
        // baseline (within what OpenSSL's caches settle by): more would be
        // secure memory leaking, less a freed key.
        let alloc_ok = after.verified() && after.at_baseline();
        let vault_wiped = after.wipes_verified == after.decrypts && after.decrypts == i;
        println!(
            "  #{i:<4} allocation {} ({} B, baseline {} B) · with_secret lent {n} bytes · wiped: vault copy {} ({} of {}) · request frame in ring {} · rings {} · broker copy {}",
            tick(alloc_ok),
            after.used,
            after.baseline,
            tick(vault_wiped),
            after.wipes_verified,
            after.decrypts,
            tick(evidence.request_frame_residue == Some(0)),
            tick(evidence.ring_residue == 0),
            tick(evidence.broker_copy_residue == 0),
        );
        if !alloc_ok || !vault_wiped || !evidence.all_wiped() {
            eprintln!("broker: a check failed (see ✗ above); stopping");
            let _ = broker.shutdown();
            return ExitCode::FAILURE;
        }
        let last = opts.iterations.is_some_and(|n| i >= n);
        if !last {
            if let Some(sig) = signals.wait(opts.interval) {
                println!("  {} received", sig.as_str());
                break;
            }
        }
    }
    shutdown(&broker)
}

fn shutdown(broker: &Broker) -> ExitCode {
    println!("\nshutting down: asking the vault to wipe its key and exit");
    match broker.shutdown() {
        Ok(exit) if exit.is_clean() => {
            println!("  vault {exit}; rings wiped; the broker's buffers are wiped on exit");
            ExitCode::SUCCESS
        }
        Ok(exit) => {
            eprintln!("broker: vault {exit}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("broker: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn fail(broker: &Broker, e: &broker::Error) -> ExitCode {
    eprintln!("broker: {}", error_chain(e));
    let _ = broker.shutdown();
    ExitCode::FAILURE
}
