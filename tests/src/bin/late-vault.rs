//! The start-up race suite's late-hardening pair, vault half: started by
//! `late-app` from its readable file with a plain `execve`, the ring at fd
//! 3. It hardens itself late: only once its work is done (at the end of
//! its input), so it is dumpable from its `execve` through all it does, as
//! a vault without the start-up protection is at least in its first
//! moments. The window is held open on purpose: what the attacks on the
//! vault role must succeed against is a vault they can reach, in every
//! start, however busy the machine (hardening at the top of `main` made the
//! window a race the attacker lost under load, and the control a matter of
//! timing). See `late-app`.
//!
//! Commands on stdin, one answer line each on stdout: `take` (copies the
//! secret from the ring into its heap: `taken`), `give` (writes it back at
//! offset 2048 of the ring: `given LEN`). It ends at the end of stdin.

use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// Where the secret is written back (`late-app`'s `BACK`).
const BACK: u64 = 2048;

fn main() {
    // Links libcrypto, as the real vault does.
    std::hint::black_box(openssl::version::number());
    // SAFETY: F_GETFD only queries the descriptor table.
    let ring_open = unsafe { libc::fcntl(3, libc::F_GETFD) } != -1;
    assert!(
        ring_open,
        "late-vault: no ring at fd 3; it is started by late-app"
    );
    // SAFETY: fd 3 is open (checked above) and was passed to this process
    // for it alone; nothing else here owns it.
    let ring = File::from(unsafe { OwnedFd::from_raw_fd(3) });
    let mut kept: Vec<u8> = Vec::new();
    let mut out = std::io::stdout().lock();
    for cmd in std::io::stdin().lock().lines() {
        let Ok(cmd) = cmd else { break };
        match cmd.as_str() {
            "take" => {
                let mut len = [0u8; 4];
                ring.read_exact_at(&mut len, 0).expect("ring");
                let len = usize::try_from(u32::from_le_bytes(len)).expect("length");
                kept = vec![0u8; len];
                ring.read_exact_at(&mut kept, 4).expect("ring");
                std::hint::black_box(&kept);
                writeln!(out, "taken").expect("stdout");
            }
            "give" => {
                ring.write_all_at(&kept, BACK).expect("ring");
                writeln!(out, "given {}", kept.len()).expect("stdout");
            }
            other => writeln!(out, "unknown {other}").expect("stdout"),
        }
        out.flush().expect("stdout");
    }
    // Late: only now, with its work done.
    common::harden::harden_process().expect("harden");
}
