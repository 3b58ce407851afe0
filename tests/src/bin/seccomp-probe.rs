//! The regression suite's probe: installs one of the project's filters
//! through the same code path as the process it belongs to, then makes one
//! raw system call given on the command line.
//!
//! ```text
//! seccomp-probe vault|broker|allow-all SYSCALL [ARG...]
//! ```
//!
//! SYSCALL is a name or a number. An ARG is a number (decimal, `0x` hex, or
//! negative) or one of: `buf` (a zeroed 4 KiB buffer), `page` (a page-aligned
//! read-write 4 KiB mapping), `path` (a C string naming a path that does not
//! exist), `self` (our pid), `tid` (our thread id). If the call returns, the
//! probe prints what it returned and exits 0; a call the filter refuses kills
//! it with SIGSYS. After a successful fork, vfork or clone the child exits at
//! once.

use std::process::ExitCode;

use common::sandbox::{self, Mode};

const PATH: &std::ffi::CStr = c"/nonexistent-seccomp-probe/dir/file";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 8 {
        eprintln!("usage: seccomp-probe vault|broker|allow-all SYSCALL [ARG...] (at most 6 args)");
        return ExitCode::from(2);
    }
    let nr = match args[1].parse::<i64>() {
        Ok(n) => n,
        Err(_) => match sandbox::syscall_number(&args[1]) {
            Some(n) => i64::from(n),
            None => {
                eprintln!("unknown system call {:?}", args[1]);
                return ExitCode::from(2);
            }
        },
    };
    let mut buf = [0u8; 4096];
    // SAFETY: a fresh anonymous mapping, used only as a target for the call.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        eprintln!("cannot map the probe page");
        return ExitCode::from(2);
    }
    // Resolve everything that needs a system call before the filter.
    let me = i64::from(std::process::id());
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let mut vals = [0i64; 6];
    for (i, a) in args[2..].iter().enumerate() {
        vals[i] = match a.as_str() {
            "buf" => buf.as_mut_ptr() as i64,
            "page" => page as i64,
            "path" => PATH.as_ptr() as i64,
            "self" => me,
            "tid" => tid,
            s => {
                let parsed = match s.strip_prefix("0x") {
                    Some(h) => i64::from_str_radix(h, 16),
                    None => s.parse::<i64>(),
                };
                match parsed {
                    Ok(v) => v,
                    Err(_) => {
                        eprintln!("bad argument {s:?}");
                        return ExitCode::from(2);
                    }
                }
            }
        };
    }
    let installed = match args[0].as_str() {
        "vault" => vault::sandbox::install(Mode::Enforce),
        "broker" => broker::sandbox::install(Mode::Enforce),
        "allow-all" => sandbox::install_allow_all(),
        other => {
            eprintln!("unknown filter {other:?}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = installed {
        eprintln!("cannot install the filter: {e}");
        return ExitCode::from(3);
    }
    // SAFETY: the caller chose the call and arguments to be harmless when
    // allowed (nonexistent paths, invalid fds, query-only operations); the
    // pointers given are live for the call.
    let ret = unsafe { libc::syscall(nr, vals[0], vals[1], vals[2], vals[3], vals[4], vals[5]) };
    let errno = std::io::Error::last_os_error();
    let forks = [
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_clone,
        libc::SYS_clone3,
    ];
    if ret == 0 && forks.contains(&nr) {
        // A child of fork/vfork/clone: leave at once, without touching the
        // parent's state (vfork shares it).
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(0) };
    }
    std::hint::black_box(&mut buf);
    // stderr: the one stream every policy lets the process write.
    eprintln!("survived: {} returned {ret} ({errno})", args[1]);
    ExitCode::SUCCESS
}
