//! The residue suite's application: a process that uses the broker library
//! the way an application would, one step per command on stdin, so that the
//! suite can read its memory (and the vault's) between steps, while idle.
//!
//! Commands (one per line; each answered with one line on stdout):
//! `store` (answered `send-secret`, then the next line of stdin is read into
//! a locked buffer with `terminal::read_password` and stored: `stored`),
//! `read` (`read LEN`), `hold` (`holding LEN` inside `with_secret`, until
//! the next line, then `released LEN`), `reads N` (N reads, `reads N TOTAL_LEN`), `preads T N`
//! (N reads on each of T threads at once, `preads T N TOTAL_LEN`), `delete` (`deleted`), `plant HEX` (keeps the bytes in
//! an ordinary heap `Vec`, the positive control: `planted`), `pubkey`
//! (`pubkey HEX` of the DER key), `status` (`status DECRYPTS WIPES`),
//! `shutdown` (`shutdown EXIT`), `exit`.
//! Options: `--key-bits N`, `--secret-memory auto|require|off` (the
//! library's default, auto, if not given), `--vault PATH`,
//! `--vault-arg ARG` (repeatable; passed to the vault), `--sigchld ignore`,
//! `--heap-size BYTES`, `--lanes N`, `--openssl-error-strings yes|no`
//! (`Config::openssl_error_strings`; no, the library's default, if not
//! given). `openssl-strings` answers `openssl-strings loaded` or
//! `openssl-strings unloaded`: whether OpenSSL's error strings are in this
//! process.
//!
//! It hardens itself only at the top of `main` and does not call
//! `broker::protect_process`: an application that does not use the
//! start-up protection (the start-up race suite's positive control).

use std::io::Write;

use broker::terminal::{self, PasswordSource};
use broker::{Broker, Config};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// One command line (`suites::stdin_line`: nothing buffered beyond it, so
/// the secret line that follows `store` stays in the pipe).
fn command() -> Option<String> {
    suites::stdin_line().and_then(|l| String::from_utf8(l).ok())
}

fn say(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

pub fn main() {
    common::harden::harden_process().expect("harden");
    let mut config = Config::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--key-bits", Some(v)) => config.key_bits = v.parse().expect("--key-bits"),
            ("--secret-memory", Some(v)) => {
                config.secret_memory =
                    broker::SecretMemory::parse(v).expect("--secret-memory auto|require|off")
            }
            ("--vault", Some(v)) => config.vault_path = Some(v.into()),
            ("--heap-size", Some(v)) => config.heap_size = Some(v.parse().expect("--heap-size")),
            ("--lanes", Some(v)) => config.lanes = v.parse().expect("--lanes"),
            ("--openssl-error-strings", Some(v)) => {
                config.openssl_error_strings = match v.as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => panic!("--openssl-error-strings yes|no"),
                }
            }
            // An application that ignores SIGCHLD: its children are reaped
            // by the kernel, and their exit status is lost.
            ("--sigchld", Some(v)) if v == "ignore" => {
                // SAFETY: setting a disposition, before any thread exists.
                unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
            }
            ("--vault-arg", Some(v)) => config.vault_args.push(v.clone()),
            (other, _) => panic!("unknown option {other}"),
        }
    }
    let broker = match Broker::spawn(config) {
        Ok(b) => b,
        Err(e) => {
            // One line the suites can match: the error and its causes.
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("residue-driver: cannot start the vault: {msg}");
            std::process::exit(1);
        }
    };
    say(&format!("ready {}", broker.vault_pid()));
    let mut planted: Vec<Vec<u8>> = Vec::new();
    while let Some(cmd) = command() {
        let (verb, arg) = cmd.split_once(' ').unwrap_or((cmd.as_str(), ""));
        match verb {
            "store" => {
                say("send-secret");
                let pw = terminal::read_password(
                    PasswordSource::Stdin,
                    "",
                    broker.max_secret_len(),
                    None,
                )
                .expect("read the secret");
                broker.store("canary", pw).expect("store");
                say("stored");
            }
            "read" => {
                let n = broker
                    .with_secret("canary", |p| p.len())
                    .expect("with_secret");
                say(&format!("read {n}"));
            }
            // `hold`: a read whose closure says `holding LEN` and keeps the
            // plaintext lent until the next line of stdin (`release`), so
            // that a suite can look at memory during `with_secret`; then
            // `released LEN`.
            "hold" => {
                let n = broker
                    .with_secret("canary", |p| {
                        say(&format!("holding {}", p.len()));
                        let _ = command();
                        std::hint::black_box(p);
                        p.len()
                    })
                    .expect("with_secret");
                say(&format!("released {n}"));
            }
            // `try-read`: a read whose failure is an answer, not a panic.
            "try-read" => match broker.with_secret("canary", |p| p.len()) {
                Ok(n) => say(&format!("read {n}")),
                Err(e) => say(&format!("error {e}")),
            },
            "reads" => {
                let count: u64 = arg.parse().expect("reads COUNT");
                let mut total = 0usize;
                for _ in 0..count {
                    total += broker
                        .with_secret("canary", |p| p.len())
                        .expect("with_secret");
                }
                say(&format!("reads {count} {total}"));
            }
            "preads" => {
                // `preads THREADS COUNT`: COUNT reads on each of THREADS
                // threads at once (every lane busy).
                let (t, n) = arg.split_once(' ').expect("preads THREADS COUNT");
                let (t, n): (usize, u64) = (t.parse().expect("threads"), n.parse().expect("count"));
                let total: usize = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..t)
                        .map(|_| {
                            s.spawn(|| {
                                (0..n)
                                    .map(|_| {
                                        broker
                                            .with_secret("canary", |p| p.len())
                                            .expect("with_secret")
                                    })
                                    .sum::<usize>()
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().expect("reader")).sum()
                });
                say(&format!("preads {t} {n} {total}"));
            }
            "delete" => {
                broker.delete("canary").expect("delete");
                say("deleted");
            }
            "plant" => {
                planted.push(unhex(arg).expect("hex"));
                std::hint::black_box(&planted);
                say("planted");
            }
            "pubkey" => say(&format!("pubkey {}", hex(&broker.public_key_der()))),
            "openssl-strings" => say(if common::openssl_init::error_strings_loaded() {
                "openssl-strings loaded"
            } else {
                "openssl-strings unloaded"
            }),
            "status" => {
                let s = broker.heap_status().expect("status");
                say(&format!(
                    "status {} {} {} {}",
                    s.decrypts, s.wipes_verified, s.arena_size, s.used
                ));
            }
            "shutdown" => {
                let exit = broker.shutdown().expect("shutdown");
                say(&format!("shutdown {exit}"));
            }
            "exit" => break,
            other => say(&format!("unknown {other}")),
        }
    }
}
