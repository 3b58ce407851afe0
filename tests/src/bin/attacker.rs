//! The suites' unprivileged attacker: started as an unprivileged uid, it
//! tries every way a same-uid process has to read another one's memory and
//! prints one line per attempt: `PID WHAT ok` or `PID WHAT denied (ERROR)`.
//!
//! ```text
//! attacker PID...
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

fn report(pid: i32, what: &str, r: io::Result<()>) {
    match r {
        Ok(()) => println!("{pid} {what} ok"),
        Err(e) => println!("{pid} {what} denied ({e})"),
    }
}

/// An address mapped in `pid`, if its maps are readable (else a guess).
fn some_address(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .ok()
        .and_then(|m| {
            m.lines().find(|l| l.contains("rw-p")).and_then(|l| {
                l.split('-')
                    .next()
                    .and_then(|a| usize::from_str_radix(a, 16).ok())
            })
        })
        .unwrap_or(0x10000)
}

fn read_mem(pid: i32, addr: usize) -> io::Result<()> {
    let f = File::open(format!("/proc/{pid}/mem"))?;
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, u64::try_from(addr).unwrap_or(0))
}

fn ptrace_attach(pid: i32) -> io::Result<()> {
    // SAFETY: PTRACE_ATTACH takes no pointers.
    if unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let mut status = 0;
    // SAFETY: waiting for the tracee we attached to, into a live local.
    unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    // SAFETY: detaching from our tracee; no pointers.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
    Ok(())
}

fn vm_read(pid: i32, addr: usize) -> io::Result<()> {
    let mut b = [0u8; 16];
    let local = libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: b.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: b.len(),
    };
    // SAFETY: one local iovec over our live buffer; the remote one is only
    // used by the kernel on the target's side.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens (and reads a byte of) the first fd of `pid` that exists.
fn open_any_fd(pid: i32) -> io::Result<()> {
    let mut last = Err(io::Error::other("no fd tried"));
    for fd in 0..8 {
        match File::open(format!("/proc/{pid}/fd/{fd}")) {
            Ok(mut f) => {
                let mut b = [0u8; 1];
                let _ = f.read(&mut b);
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => last = Err(e),
        }
    }
    last
}

fn main() {
    for arg in std::env::args().skip(1) {
        let Ok(pid) = arg.parse::<i32>() else {
            continue;
        };
        let addr = some_address(pid);
        report(pid, "mem", read_mem(pid, addr));
        report(
            pid,
            "maps",
            std::fs::read_to_string(format!("/proc/{pid}/maps")).map(drop),
        );
        report(pid, "ptrace", ptrace_attach(pid));
        report(pid, "process_vm_readv", vm_read(pid, addr));
        report(pid, "fd", open_any_fd(pid));
        // The vault's ring is its fd 3.
        report(
            pid,
            "ring-fd",
            File::open(format!("/proc/{pid}/fd/3")).map(drop),
        );
    }
}
