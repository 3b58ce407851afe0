//! The start-up race suite's late-hardening pair, application half: the
//! positive control for the attacks on the vault role, and the target of
//! the other-uid suite.
//!
//! It does what the broker and its vault do at start, minus the start-up
//! protection: it hardens itself at the top of `main` only, creates a ring
//! (a memfd), and starts `late-vault` (found beside it) with a plain
//! fork and `execve` of that readable file, the ring at fd 3. The vault is
//! therefore dumpable from its `execve` on (it hardens itself only once its
//! work is done, so the window stays open in every start): the window the
//! real vault closes by running from an execute-only copy. A secret goes through the ring into the vault's heap,
//! as a password goes through the real ring.
//!
//! It speaks the protocol of `residue-driver` that the suite uses, on
//! stdin/stdout: `ready VAULT_PID`; `store` (answered `send-secret`; the next
//! line is the secret, written into the ring and taken by the vault into its
//! heap: `stored`), `read` (the vault writes the secret back into the ring:
//! `read LEN`), `plant HEX` (kept in this process's heap: `planted`),
//! `exit`. Nothing here is protected: never use it for a real secret.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The ring's size: the secret's length (4 bytes) and bytes, and the
/// vault's copy back at [`BACK`].
const RING_LEN: u64 = 4096;
/// Where the vault writes the secret back.
const BACK: u64 = 2048;

fn say(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn main() {
    // Late: the kernel made this process dumpable at its execve, and it
    // stays so until here.
    common::harden::harden_process().expect("harden");
    // SAFETY: memfd_create reads the C string; the result is checked below.
    let fd = unsafe { libc::memfd_create(c"late-ring".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    let ring = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ring.set_len(RING_LEN).expect("size the ring");
    let exe = std::env::current_exe().expect("own path");
    let raw = ring.as_raw_fd();
    let mut cmd = Command::new(exe.with_file_name("late-vault"));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // The ring at fd 3, open across the exec.
            let r = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if r == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut vault = cmd.spawn().expect("start late-vault");
    let mut to_vault = vault.stdin.take().expect("stdin");
    let mut from_vault = BufReader::new(vault.stdout.take().expect("stdout"));
    let mut ask = |what: &str| -> String {
        writeln!(to_vault, "{what}").expect("to the vault");
        to_vault.flush().expect("to the vault");
        let mut answer = String::new();
        from_vault.read_line(&mut answer).expect("from the vault");
        answer.trim_end().to_owned()
    };
    say(&format!("ready {}", vault.id()));
    let mut planted: Vec<Vec<u8>> = Vec::new();
    while let Some(cmd) = suites::stdin_line() {
        let cmd = String::from_utf8_lossy(&cmd).into_owned();
        let (verb, arg) = cmd.split_once(' ').unwrap_or((cmd.as_str(), ""));
        match verb {
            "store" => {
                say("send-secret");
                let secret = suites::stdin_line().expect("the secret's line");
                let len = u32::try_from(secret.len()).expect("short secret");
                ring.write_all_at(&len.to_le_bytes(), 0).expect("ring");
                ring.write_all_at(&secret, 4).expect("ring");
                assert_eq!(ask("take"), "taken");
                say("stored");
            }
            "read" => {
                let answer = ask("give");
                let n: usize = answer
                    .strip_prefix("given ")
                    .and_then(|n| n.parse().ok())
                    .expect("given LEN");
                let mut back = vec![0u8; n];
                ring.read_exact_at(&mut back, BACK).expect("ring");
                say(&format!("read {}", back.len()));
            }
            "plant" => {
                planted.push(unhex(arg).expect("hex"));
                std::hint::black_box(&planted);
                say("planted");
            }
            "exit" => break,
            other => say(&format!("unknown {other}")),
        }
    }
    drop(to_vault);
    let _ = vault.wait();
}
