//! The suites' unprivileged attacker: started as an unprivileged uid, it
//! tries every way a same-uid process has to read another one's memory and
//! prints one line per attempt: `PID WHAT ok` or `PID WHAT denied (ERROR)`.
//!
//! ```text
//! attacker PID...
//! ```

use std::fs::File;
use std::io::Read;

fn report(pid: i32, what: &str, r: Result<(), std::io::Error>) {
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

fn main() {
    for arg in std::env::args().skip(1) {
        let Ok(pid) = arg.parse::<i32>() else {
            continue;
        };
        let addr = some_address(pid);
        report(
            pid,
            "mem",
            (|| {
                let f = File::open(format!("/proc/{pid}/mem"))?;
                let mut b = [0u8; 16];
                std::os::unix::fs::FileExt::read_exact_at(
                    &f,
                    &mut b,
                    u64::try_from(addr).unwrap_or(0),
                )
            })(),
        );
        report(
            pid,
            "maps",
            std::fs::read_to_string(format!("/proc/{pid}/maps")).map(drop),
        );
        report(
            pid,
            "ptrace",
            (|| {
                // SAFETY: PTRACE_ATTACH with no pointers.
                if unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) } == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut status = 0;
                // SAFETY: waiting for the tracee we attached to.
                unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
                // SAFETY: detaching from our tracee.
                unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
                Ok(())
            })(),
        );
        report(
            pid,
            "process_vm_readv",
            (|| {
                let mut b = [0u8; 16];
                let local = libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                };
                let remote = libc::iovec {
                    iov_base: addr as *mut libc::c_void,
                    iov_len: b.len(),
                };
                // SAFETY: one local iovec over our buffer; the remote one is only
                // read by the kernel on the target's side.
                let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
                if n == -1 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            })(),
        );
        // Every fd of the target, the ring among them for the vault (fd 3).
        let mut any_fd = Err(std::io::Error::other("no fd tried"));
        for fd in 0..8 {
            let r = File::open(format!("/proc/{pid}/fd/{fd}")).and_then(|mut f| {
                let mut b = [0u8; 1];
                let _ = f.read(&mut b);
                Ok(())
            });
            match r {
                Ok(()) => {
                    any_fd = Ok(());
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => any_fd = Err(e),
            }
        }
        report(pid, "fd", any_fd);
        report(
            pid,
            "ring-fd",
            File::open(format!("/proc/{pid}/fd/3")).map(drop),
        );
    }
}
