//! `broker demo`: the original proof of concept's example loop, made true.
//!
//! 1. start the sandboxed vault and show its secure heap and key verification;
//! 2. show the public key's SHA-256 fingerprint (and write it out if asked);
//! 3. read the password (terminal with echo off, or `--password-stdin`);
//! 4. loop: verify the allocation, read the password inside `with_secret`,
//!    and show the evidence that each side wiped its copy;
//! 5. on a signal or after `--iterations`, shut both processes down.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::ops::RangeInclusive;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use broker::client::{DEFAULT_MAX_LANES, MAX_SECRET_LEN};
use broker::terminal::{self, PasswordError, PasswordSource};
use broker::{Broker, Config, HeapStatus, Protection, RingBacking, SandboxMode, SecretMemory};
use common::protocol::PRIVATE_NUMBERS;

use crate::exit;
use crate::selftest::{self, Selftest};
use crate::signals::Signals;

const SECRET_NAME: &str = "demo-password";

/// The longest password the demo reads. Above what one RSA-OAEP-SHA256 block
/// holds ([`Broker::direct_secret_len`], 190 bytes at 2048 bits),
/// [`Broker::store`] seals it in an AES-256-GCM envelope.
pub const MAX_PASSWORD_LEN: usize = 1024;
const _: () = assert!(MAX_PASSWORD_LEN <= MAX_SECRET_LEN);

/// The largest secure heap the vault accepts (`vault::heap::MAX_ARENA`;
/// the broker does not link the vault's crate, the demo suite checks that
/// the two agree).
pub const MAX_HEAP_SIZE: usize = 4 * 1024 * 1024;

/// `--iterations`: 0 reads would be no demo; no upper bound but the type's.
pub const ITERATIONS: RangeInclusive<u64> = 1..=u64::MAX;
/// `--interval-ms`: up to a day.
pub const INTERVAL_MS: RangeInclusive<u64> = 0..=86_400_000;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// `-h` or `--help` among the options.
    Help,
    /// Run the demo.
    Run(Options),
}

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
    secret_memory: SecretMemory,
    /// `--sandbox-name-rule`: the rule of the broker's own filter taken away.
    name_rule: Option<(String, u32)>,
    /// `--selftest`: a deliberate failure of the broker, on SIGUSR1.
    selftest: Option<Selftest>,
}

/// One argument after `demo`: `--name value` or `--name=value`.
struct Arg {
    name: String,
    /// The value given with `=`, if any.
    inline: Option<OsString>,
}

impl Arg {
    fn split(arg: OsString) -> Result<Self, String> {
        let bytes = arg.as_bytes();
        let (name, inline) = match bytes.iter().position(|&b| b == b'=') {
            Some(eq) if bytes.starts_with(b"--") => (
                OsStr::from_bytes(&bytes[..eq]),
                Some(OsStr::from_bytes(&bytes[eq + 1..]).to_owned()),
            ),
            _ => (arg.as_os_str(), None),
        };
        let name = name
            .to_str()
            .ok_or_else(|| format!("unknown option {name:?}"))?
            .to_owned();
        Ok(Self { name, inline })
    }
}

impl Command {
    /// Parses the arguments after `demo`. `-h` or `--help` anywhere wins
    /// over any error. An error is one line naming the argument and, for a
    /// value, the values accepted.
    pub fn parse(args: impl Iterator<Item = OsString>) -> Result<Self, String> {
        let args: Vec<OsString> = args.collect();
        if args.iter().any(|a| a == "-h" || a == "--help") {
            return Ok(Self::Help);
        }
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
            secret_memory: SecretMemory::Auto,
            name_rule: None,
            selftest: None,
        };
        let mut args = args.into_iter();
        let mut seen: Vec<String> = Vec::new();
        while let Some(arg) = args.next() {
            let Arg { name, mut inline } = Arg::split(arg)?;
            let name = name.as_str();
            // Each option once (`--vault-arg` builds a list): a second
            // `--iterations` is a mistake to name, not a value to pick.
            if name != "--vault-arg" && name.starts_with("--") {
                if seen.iter().any(|s| s == name) {
                    return Err(format!("{name} is given twice; give it once"));
                }
                seen.push(name.to_owned());
            }
            let mut value = || {
                inline
                    .take()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match name {
                "--iterations" => o.iterations = Some(number(name, &value()?, ITERATIONS)?),
                "--interval-ms" => {
                    o.interval = Duration::from_millis(number(name, &value()?, INTERVAL_MS)?)
                }
                "--key-bits" => {
                    let v = value()?;
                    o.key_bits = match v.to_str() {
                        Some("2048") => 2048,
                        Some("3072") => 3072,
                        Some("4096") => 4096,
                        _ => {
                            return Err(format!(
                                "{name} {v:?} is not offered; use 2048, 3072 or 4096"
                            ))
                        }
                    }
                }
                "--heap-size" => o.heap_size = Some(heap_size(&value()?)?),
                "--password-stdin" => o.password_stdin = true,
                "--public-key-out" => o.public_key_out = Some(PathBuf::from(value()?)),
                "--vault" => o.vault = Some(PathBuf::from(value()?)),
                "--secret-memory" => {
                    let v = value()?;
                    o.secret_memory = v
                        .to_str()
                        .and_then(SecretMemory::parse)
                        .ok_or_else(|| format!("{name} {v:?}: use auto, require or off"))?;
                }
                "--ring" => {
                    return Err(format!(
                        "{name} is now --secret-memory auto|require|off (the rings, the vault's arena and the broker's buffers together; auto is the default)"
                    ))
                }
                "--sandbox-learning" => {
                    let v = value()?;
                    o.sandbox_mode = match v.to_str().and_then(SandboxMode::parse) {
                        Some(m) if m.is_learning() => m,
                        _ => return Err(format!("{name} {v:?}: use trap or log")),
                    };
                }
                "--sandbox-name-rule" => {
                    let v = value()?;
                    let accepted = broker::sandbox::rule_ranges()
                        .iter()
                        .map(|(filter, last)| format!("{filter}:1..={last}"))
                        .collect::<Vec<_>>()
                        .join(" or ");
                    // Checked here, before a vault or a key exists: the
                    // filter and its rules are the embedded policy's.
                    let (filter, rule) = v
                        .to_str()
                        .and_then(common::sandbox::parse_rule)
                        .filter(|&(filter, rule)| broker::sandbox::has_rule(filter, rule))
                        .ok_or_else(|| {
                            format!(
                                "{name} {v:?}: no such rule of the broker's filter; use FILTER:RULE, \
                                 {accepted} (numbered as in sandbox-policies/REVIEW.md)"
                            )
                        })?;
                    o.name_rule = Some((filter.to_owned(), rule));
                }
                // For the "every rule is needed" suite only: a deliberate
                // failure of the broker, once it receives SIGUSR1.
                "--selftest" => {
                    let v = value()?;
                    o.selftest = Some(
                        v.to_str()
                            .and_then(Selftest::parse)
                            .ok_or_else(|| format!("{name} {v:?}: use {}", Selftest::NAMES))?,
                    );
                }
                // For the regression suite: passed through to the vault
                // (e.g. `--vault-arg --selftest --vault-arg panic`).
                "--vault-arg" => o.vault_args.push(
                    value()?
                        .into_string()
                        .map_err(|v| format!("{name} {v:?} is not UTF-8"))?,
                ),
                "-h" | "--help" => return Err(format!("{name} takes no value")),
                other if other.starts_with('-') => return Err(format!("unknown option {other:?}")),
                other => {
                    return Err(format!(
                        "unexpected argument {other:?} (options start with --)"
                    ))
                }
            }
            if inline.is_some() {
                return Err(format!("{name} takes no value"));
            }
        }
        if o.name_rule.is_some() && o.sandbox_mode.is_learning() {
            return Err(
                "--sandbox-name-rule checks one rule of the enforcing filter: not with --sandbox-learning"
                    .into(),
            );
        }
        Ok(Self::Run(o))
    }
}

/// A whole number in `range`, or an error naming the range.
fn number(name: &str, v: &OsStr, range: RangeInclusive<u64>) -> Result<u64, String> {
    v.to_str()
        .and_then(|s| s.parse().ok())
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "{name} {v:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// Lanes the vault will serve with a `heap` arena: as [`Broker::spawn`]
/// chooses them (one per CPU up to [`DEFAULT_MAX_LANES`], fewer if the
/// memory-lock limit requires).
fn planned_lanes(heap: usize) -> usize {
    let wanted = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(DEFAULT_MAX_LANES);
    common::budget::plan(None, wanted, Some(heap), common::budget::memlock_limit())
        .map_or(wanted, |p| p.lanes)
}

/// `--heap-size`: a power of two the vault will accept with the lanes it
/// will have, from `common::budget::min_arena` to [`MAX_HEAP_SIZE`]; checked
/// here, before anything starts, rather than by the vault after it started.
fn heap_size(v: &OsStr) -> Result<usize, String> {
    let n = v.to_str().and_then(|s| s.parse::<usize>().ok());
    let lanes = planned_lanes(n.unwrap_or(MAX_HEAP_SIZE));
    let min = common::budget::min_arena(lanes);
    n.filter(|n| n.is_power_of_two() && (min..=MAX_HEAP_SIZE).contains(n))
        .ok_or_else(|| {
            format!(
                "--heap-size {v:?} is not accepted: use a power of two from {min} (what the vault needs with {lanes} {}) to {MAX_HEAP_SIZE}",
                if lanes == 1 { "lane" } else { "lanes" }
            )
        })
}

impl Options {
    /// The vault binary asked for, if any.
    pub fn vault(&self) -> Option<&Path> {
        self.vault.as_deref()
    }

    /// Refusals that need nothing started, and no effect on anything:
    /// made before the start-up protection and the vault, so that a key is
    /// never generated for a run that could not go on.
    pub fn preflight(&self) -> Result<(), String> {
        if !self.password_stdin && !std::io::stdin().is_terminal() {
            return Err(PasswordError::NotATerminal.to_string());
        }
        Ok(())
    }
}

/// `--public-key-out`: the file, opened before the vault starts (so that a
/// path that cannot be written is refused before a key is generated),
/// written once the key exists. A file this run created is removed if the
/// run ends before writing it.
struct KeyFile {
    path: PathBuf,
    file: File,
    created: bool,
}

impl KeyFile {
    fn open(path: &Path) -> Result<Self, String> {
        let refused = |e: std::io::Error| {
            format!(
                "--public-key-out {}: cannot open it for writing: {e}",
                path.display()
            )
        };
        let (file, created) = match File::options().write(true).create_new(true).open(path) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (
                File::options().write(true).open(path).map_err(refused)?,
                false,
            ),
            Err(e) => return Err(refused(e)),
        };
        Ok(Self {
            path: path.to_owned(),
            file,
            created,
        })
    }

    /// Replaces the file's contents with `pem`. Consumes the handle: once
    /// written, nothing is removed (the broker's own sandbox, installed
    /// next, would not allow it).
    fn write(mut self, pem: &[u8]) -> Result<PathBuf, String> {
        let written = self
            .file
            .set_len(0)
            .and_then(|()| self.file.write_all(pem))
            .and_then(|()| self.file.sync_all());
        let path = std::mem::take(&mut self.path);
        self.created = false;
        match written {
            Ok(()) => Ok(path),
            Err(e) => Err(format!(
                "cannot write the public key to {}: {e}",
                path.display()
            )),
        }
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
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
        }
    }
    show_secret_memory(b);
}

/// Which of the three holds its bytes in secret memory, as `--secret-memory`
/// asked and the kernel allowed.
fn show_secret_memory(b: &Broker) {
    let Ok(m) = b.secret_memory() else {
        println!("  secret memory: the vault did not answer");
        return;
    };
    let place = |secret: bool| {
        if secret {
            "memfd_secret ✓"
        } else {
            "ordinary locked memory"
        }
    };
    println!(
        "  secret memory ({}): the vault's arena (the key): {}; the rings: {}; the broker's plaintext buffers: {}",
        m.setting.as_str(),
        place(m.arena),
        place(m.rings),
        place(m.buffers)
    );
    if m.arena && m.rings && m.buffers {
        println!("        out of the kernel's direct map: a passive read of them fails, even by root (/proc/PID/mem, process_vm_readv, ptrace PEEKDATA, core dumps)");
    } else if m.setting == SecretMemory::Off {
        println!("        off, as asked: root can read them (/proc/PID/mem, a core dump)");
    } else {
        println!(
            "        NOT all secret memory{}: root can read what is in ordinary memory",
            m.why_not
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        );
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

fn warn_rule_check(filter: &str, rule: u32) {
    let bar = "!".repeat(78);
    let syscall = broker::sandbox::POLICY
        .namers
        .iter()
        .find(|n| n.filter == filter && n.rule == rule)
        .map_or("no such rule", |n| n.syscall);
    println!("{bar}");
    println!(
        "!! SANDBOX RULE CHECK: the broker's own filter enforces, with {filter} rule {rule} ({syscall})"
    );
    println!("!! taken away: each call that needed it is named on stderr and answered ENOSYS.");
    println!("!! This is for policy work only. Never use it with real secrets.");
    println!("{bar}\n");
}

fn warn_selftest(test: Selftest) {
    let bar = "!".repeat(78);
    println!("{bar}");
    println!(
        "!! SELFTEST {}: on SIGUSR1 the broker fails on purpose (the suites only).",
        test.as_str()
    );
    println!("!! Never use it with real secrets.");
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

/// The exit status `code`.
fn status(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// Runs the demo. The exit status is one of [`exit`]: `SUCCESS` after the
/// reads or a signal in the loop, each failure its own.
pub fn run(opts: &Options, mut signals: Signals, protection: &Protection) -> ExitCode {
    // Opened before anything starts: a path that cannot be written is
    // refused before a key is generated for nothing.
    let key_file = match opts.public_key_out.as_deref().map(KeyFile::open) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(msg)) => {
            eprintln!("broker: {msg}");
            return status(exit::USAGE);
        }
    };
    println!("privsep-vault demo: a sandboxed vault holds an RSA key in OpenSSL's secure heap;");
    println!(
        "the broker keeps only ciphertext and lends plaintext to a closure, wiping every copy.\n"
    );

    // Before the filter: malloc never trims a heap, a path that would open
    // a file inside the sandbox (common::malloc).
    if let Err(e) = common::malloc::settle_for_sandbox() {
        eprintln!("broker: {e}");
        return status(exit::VAULT_FAILED);
    }
    if opts.sandbox_mode.is_learning() {
        warn_learning(opts.sandbox_mode);
    }
    if let Some((filter, rule)) = &opts.name_rule {
        warn_rule_check(filter, *rule);
    }
    if let Some(test) = opts.selftest {
        warn_selftest(test);
        // Before the vault's start makes the first thread, and before the
        // filter.
        if let Err(msg) = selftest::arm(test) {
            eprintln!("broker: {msg}");
            return status(exit::VAULT_FAILED);
        }
    }
    println!("[1/4] starting the sandboxed vault (RSA-{})", opts.key_bits);
    // The vault binary was resolved, checked and prepared by
    // protect_process (before any re-exec); the broker runs that image.
    let config = Config {
        key_bits: opts.key_bits,
        heap_size: opts.heap_size,
        sandbox_mode: opts.sandbox_mode,
        vault_args: opts.vault_args.clone(),
        secret_memory: opts.secret_memory,
        ..Config::default()
    };
    let started = Instant::now();
    let broker = match Broker::spawn(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("broker: cannot start the vault: {}", error_chain(&e));
            return status(exit::VAULT_FAILED);
        }
    };
    println!(
        "  vault pid {} ready in {} ms: key generated inside the sandbox",
        broker.vault_pid(),
        started.elapsed().as_millis()
    );
    let heap = match broker.heap_status() {
        Ok(s) => s,
        Err(e) => return fail(&broker, &e),
    };
    show_heap(&heap, heap.verified());
    show_sandbox(&broker);
    show_protection(&broker, protection);
    if !heap.verified() {
        eprintln!("broker: the vault's secure heap verification failed (see ✗ above); stopping");
        let _ = broker.shutdown();
        return status(exit::CHECK_FAILED);
    }

    println!("\n[2/4] public key");
    println!(
        "  SHA-256 fingerprint of the DER public key:\n  {}",
        hex(&broker.fingerprint())
    );
    if let Some(file) = key_file {
        let written = broker
            .public_key_pem()
            .map_err(|e| format!("cannot export the public key: {}", error_chain(&e)))
            .and_then(|pem| file.write(&pem));
        match written {
            Ok(path) => println!("  written to {} (PEM)", path.display()),
            Err(msg) => {
                eprintln!("broker: {msg}");
                let _ = broker.shutdown();
                return status(exit::VAULT_FAILED);
            }
        }
    }

    // The vault runs and every file this run writes is written: from here on
    // the broker itself needs no exec, no files, no sockets, no ptrace.
    let installed = match &opts.name_rule {
        Some((filter, rule)) => broker::sandbox::install_naming(filter, *rule),
        None => broker::sandbox::install(opts.sandbox_mode),
    };
    match installed {
        Ok(()) => println!(
            "  broker sandbox: sandbox-policies/broker.json installed ({})",
            match &opts.name_rule {
                Some((filter, rule)) =>
                    format!("enforcing, RULE CHECK: {filter} rule {rule} taken away"),
                None if opts.sandbox_mode.is_learning() => "LEARNING MODE, not enforcing".into(),
                None => "enforcing".into(),
            }
        ),
        Err(e) => {
            eprintln!("broker: cannot sandbox the broker: {}", error_chain(&e));
            let _ = broker.shutdown();
            return status(exit::VAULT_FAILED);
        }
    }

    println!("\n[3/4] password");
    let source = if opts.password_stdin {
        println!(
            "  reading the password from standard input: 1 to {MAX_PASSWORD_LEN} bytes, up to the first newline or the end of the input"
        );
        PasswordSource::Stdin
    } else {
        println!(
            "  1 to {MAX_PASSWORD_LEN} bytes; Backspace erases a character, Ctrl-U the line, Ctrl-C cancels"
        );
        PasswordSource::Terminal
    };
    let _ = std::io::stdout().flush();
    let password = match terminal::read_password(
        source,
        "  password (not echoed): ",
        MAX_PASSWORD_LEN,
        Some(signals.fd()),
    ) {
        Ok(p) => p,
        Err(PasswordError::Interrupted { what }) => {
            let why = signals
                .take()
                .map_or(what.to_owned(), |s| s.as_str().to_owned());
            println!("  interrupted by {why} at the password prompt; nothing was kept");
            return shutdown(&broker, exit::CANCELLED);
        }
        Err(PasswordError::InputEnded) => {
            println!("  the input ended at the password prompt; nothing was kept");
            return shutdown(&broker, exit::CANCELLED);
        }
        Err(e) => {
            eprintln!("broker: {}", error_chain(&e));
            let _ = broker.shutdown();
            return status(exit::PASSWORD_REFUSED);
        }
    };
    let len = password.len();
    let direct = broker.direct_secret_len();
    if let Err(e) = broker.store(SECRET_NAME, password) {
        return fail(&broker, &e);
    }
    if len <= direct {
        println!(
            "  {len} bytes read into a locked buffer, encrypted with RSA-OAEP-SHA256 ({} bytes of ciphertext kept as {SECRET_NAME:?});",
            broker.key_bytes()
        );
        println!("  the plaintext buffer was wiped at once");
    } else {
        println!(
            "  {len} bytes read into a locked buffer: more than one RSA-OAEP-SHA256 block holds ({direct} bytes),"
        );
        println!(
            "  so sealed in an AES-256-GCM envelope: a fresh data key encrypted them ({len} bytes of ciphertext),"
        );
        println!(
            "  and RSA-OAEP-SHA256 wrapped that key ({} bytes), kept as {SECRET_NAME:?};",
            broker.key_bytes()
        );
        println!("  the plaintext buffer and the data key were wiped at once");
    }

    println!(
        "\n[4/4] reading the password through the vault{}",
        match opts.iterations {
            Some(1) => " once".to_owned(),
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
            return status(exit::CHECK_FAILED);
        }
        let last = opts.iterations.is_some_and(|n| i >= n);
        if !last {
            if let Some(sig) = signals.wait(opts.interval) {
                println!("  {} received", sig.as_str());
                break;
            }
        }
    }
    shutdown(&broker, exit::SUCCESS)
}

/// Shuts the vault down; `code` if it exits cleanly, else `VAULT_FAILED`.
fn shutdown(broker: &Broker, code: u8) -> ExitCode {
    println!("\nshutting down: asking the vault to wipe its key and exit");
    match broker.shutdown() {
        Ok(end) if end.is_clean() => {
            println!("  vault {end}; rings wiped; the broker's buffers are wiped on exit");
            status(code)
        }
        Ok(end) => {
            eprintln!("broker: vault {end}");
            status(exit::VAULT_FAILED)
        }
        Err(e) => {
            eprintln!("broker: {}", error_chain(&e));
            status(exit::VAULT_FAILED)
        }
    }
}

/// A request to the vault failed: the vault died, timed out, refused or
/// broke the protocol.
fn fail(broker: &Broker, e: &broker::Error) -> ExitCode {
    eprintln!("broker: {}", error_chain(e));
    let _ = broker.shutdown();
    status(exit::VAULT_FAILED)
}
