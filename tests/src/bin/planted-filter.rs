//! A process that holds a filter other than the reviewed one, for the
//! positive controls of `policy verify` (`tests/tests/seccomp.rs`).
//!
//! `planted-filter extra-call`: the vault's overlay, then the vault's filter
//! compiled from `vault.json` with one more allowed call (`getuid`), in every
//! thread, as the vault installs them.
//! `planted-filter thread-left-out`: the vault's two filters exactly, but
//! installed without TSYNC while a second thread already runs: that thread
//! holds none.
//!
//! Either way it then writes `ready` on stderr (the one descriptor the
//! vault's filter lets it write to) and sleeps until it is killed.

use std::path::Path;

use policy::compile::{compile, Program};

/// `SECCOMP_FILTER_FLAG_TSYNC`.
const TSYNC: libc::c_ulong = 1;

fn install(p: &Program, flags: libc::c_ulong) {
    let mut insns: Vec<libc::sock_filter> = p
        .bpf
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let pid = std::process::id();
    for &s in &p.pid_slots {
        insns[usize::try_from(s).expect("slot")].k = pid;
    }
    let prog = libc::sock_fprog {
        len: u16::try_from(insns.len()).expect("a filter of at most 4096 instructions"),
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: prog points to insns, alive for the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::from_ref(&prog),
        )
    };
    assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-policies");
    let text = std::fs::read_to_string(dir.join("vault.json")).expect("vault.json");
    let overlay = compile(&text, "vault-errno", "allow", "x86_64").expect("overlay");
    let vault = match mode.as_str() {
        "extra-call" => {
            let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
            json["vault"]["filter"]
                .as_array_mut()
                .expect("rules")
                .push(serde_json::json!({"syscall": "getuid"}));
            compile(&json.to_string(), "vault", "kill_process", "x86_64").expect("planted")
        }
        "thread-left-out" => compile(&text, "vault", "kill_process", "x86_64").expect("vault"),
        other => {
            eprintln!("usage: planted-filter extra-call|thread-left-out (not {other:?})");
            std::process::exit(2);
        }
    };
    let (_tx, rx) = std::sync::mpsc::channel::<()>();
    let flags = if mode == "thread-left-out" {
        // A second thread, running before the filters: without TSYNC it
        // keeps none.
        std::thread::spawn(move || {
            let _ = rx.recv();
        });
        0
    } else {
        drop(rx);
        TSYNC
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(r, 0, "no_new_privs");
    install(&overlay, flags);
    install(&vault, flags);
    eprintln!("ready");
    loop {
        std::thread::park();
    }
}
