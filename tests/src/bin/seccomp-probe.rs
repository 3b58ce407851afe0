//! The regression suite's probe: installs one of the project's filters
//! through the same code path as the process it belongs to, then makes one
//! raw system call given on the command line.
//!
//! ```text
//! seccomp-probe [--wait-child] vault|broker|allow-all SYSCALL [ARG...]
//! ```
//!
//! SYSCALL is a name or a number. An ARG is a number (decimal, `0x` hex, or
//! negative) or one of: `buf` (a zeroed 4 KiB buffer), `page` (a page-aligned
//! read-write 4 KiB mapping), `path` (a C string naming a path that does not
//! exist), `self` (our pid), `tid` (our thread id), `child` (the pid of a
//! child forked for the purpose, which only sleeps) and `pidfd` (a pidfd for
//! that child, from `pidfd_open`). Every token is resolved before the filter
//! is installed. If the call returns, the probe prints what it returned and
//! exits 0; a call the filter refuses kills it with SIGSYS. After a
//! successful fork, vfork or clone the child exits at once.
//!
//! The sleeping child dies with the probe (`PR_SET_PDEATHSIG` SIGKILL),
//! however the probe ends, and is reaped by whoever adopts it. With
//! `--wait-child`, the probe, once the call has returned, waits up to two
//! seconds for the child to end (`poll` on a pidfd of it, then `wait4`)
//! and says how it ended (or that it still runs): proof that a signal really arrived. Only the
//! broker's filter (and allow-all) lets the probe make those calls.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::sandbox::{self, Mode};

const PATH: &std::ffi::CStr = c"/nonexistent-seccomp-probe/dir/file";

/// Forks a child that sleeps until a signal ends it, and dies with us.
/// Returns once the child is ready: the parent-death signal set and the
/// probe's stdio closed (a signal that stopped it before that would leave
/// it holding the probe's stderr after the probe ended).
fn sleeping_child() -> Result<libc::pid_t, std::io::Error> {
    let mut ready = [0; 2];
    // SAFETY: `ready` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: two fresh descriptors that pipe2 just returned, owned by
    // nothing else.
    let (rd, wr) = unsafe {
        (
            OwnedFd::from_raw_fd(ready[0]),
            OwnedFd::from_raw_fd(ready[1]),
        )
    };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the probe has one thread here, so the child may run anything;
    // it makes only raw system calls and never returns from this block.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: prctl, getppid, close, write, pause and _exit have no
        // memory preconditions beyond the one-byte buffer, which is live;
        // the child ends here, by a signal or _exit.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            // The probe may have ended before the line above took effect.
            if libc::getppid() != parent {
                libc::_exit(0);
            }
            // Not a holder of the probe's stdio: whoever reads the probe's
            // output sees its end when the probe ends.
            for fd in 0..3 {
                libc::close(fd);
            }
            libc::close(rd.as_raw_fd());
            libc::write(wr.as_raw_fd(), [1u8].as_ptr().cast(), 1);
            libc::close(wr.as_raw_fd());
            loop {
                libc::pause();
            }
        }
    }
    drop(wr);
    let mut byte = [0u8; 1];
    // SAFETY: `byte` is a live one-byte buffer; read blocks until the child
    // writes or ends (EOF).
    let n = unsafe { libc::read(rd.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
    if n != 1 {
        return Err(std::io::Error::other("the sleeping child did not start"));
    }
    Ok(pid)
}

/// After the call: how the child ended within two seconds, in words. Waits
/// on `watch`, a pidfd of the child (readable once it has ended), with
/// `poll`, which the broker's filter allows (it has no sleep).
fn child_fate(child: libc::pid_t, watch: &OwnedFd) -> String {
    let mut pfd = libc::pollfd {
        fd: watch.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one live pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r == 1 {
            break;
        }
        if r == 0 {
            return "child still running".into();
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return format!("child: poll failed ({e})");
        }
    }
    let mut status = 0;
    // SAFETY: `status` is a live int; the child has ended, so WNOHANG finds it.
    let r = unsafe { libc::wait4(child, &mut status, libc::WNOHANG, std::ptr::null_mut()) };
    if r != child {
        return format!(
            "child: wait4 returned {r} ({})",
            std::io::Error::last_os_error()
        );
    }
    if libc::WIFSIGNALED(status) {
        format!("child ended by signal {}", libc::WTERMSIG(status))
    } else {
        format!("child exited {}", libc::WEXITSTATUS(status))
    }
}

/// A pidfd of `pid`, opened before the filter.
fn open_pidfd(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    match i32::try_from(fd) {
        // SAFETY: a fresh descriptor the call just returned, owned by
        // nothing else.
        Ok(fd) if fd >= 0 => Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        _ => None,
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let wait_child = args.first().is_some_and(|a| a == "--wait-child");
    if wait_child {
        args.remove(0);
    }
    if args.len() < 2 || args.len() > 8 {
        eprintln!(
            "usage: seccomp-probe [--wait-child] vault|broker|allow-all SYSCALL [ARG...] (at most 6 args)"
        );
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
    let wants_child = wait_child || args[2..].iter().any(|a| a == "child" || a == "pidfd");
    let child = if wants_child {
        match sleeping_child() {
            Ok(pid) => Some(pid),
            Err(e) => {
                eprintln!("cannot fork the sleeping child: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let wanted = |yes: bool| match child {
        Some(pid) if yes => open_pidfd(pid).map(Some).ok_or_else(|| {
            eprintln!("pidfd_open: {}", std::io::Error::last_os_error());
            ExitCode::from(2)
        }),
        _ => Ok(None),
    };
    let pidfd = match wanted(args[2..].iter().any(|a| a == "pidfd")) {
        Ok(fd) => fd,
        Err(code) => return code,
    };
    let watch = match wanted(wait_child) {
        Ok(fd) => fd,
        Err(code) => return code,
    };
    let mut vals = [0i64; 6];
    for (i, a) in args[2..].iter().enumerate() {
        vals[i] = match a.as_str() {
            "buf" => buf.as_mut_ptr() as i64,
            "page" => page as i64,
            "path" => PATH.as_ptr() as i64,
            "self" => me,
            "tid" => tid,
            "child" => child.map(i64::from).unwrap_or(-1),
            "pidfd" => pidfd.as_ref().map_or(-1, |fd| i64::from(fd.as_raw_fd())),
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
    // vfork shares the stack with the child until it exits: made through
    // syscall(3), the child would return through the parent's frames and
    // clobber them. Here the child exits in the same few instructions,
    // touching no memory; the filter sees the same vfork call.
    #[cfg(target_arch = "x86_64")]
    let vforked = (nr == libc::SYS_vfork).then(|| {
        let ret: i64;
        // SAFETY: the vfork system call; in the child (rax == 0) the next
        // instructions are exit_group(0), with no stack or memory access;
        // the parent gets the child's pid or -errno in rax. The kernel
        // clobbers rcx and r11.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "mov eax, 231",
                "xor edi, edi",
                "syscall",
                "2:",
                inlateout("rax") libc::SYS_vfork => ret,
                out("rdi") _,
                out("rcx") _,
                out("r11") _,
                options(nostack),
            );
        }
        if ret < 0 {
            // As syscall(3) reports it.
            // SAFETY: sets this thread's errno.
            unsafe { *libc::__errno_location() = i32::try_from(-ret).unwrap_or(0) };
            -1
        } else {
            ret
        }
    });
    #[cfg(not(target_arch = "x86_64"))]
    let vforked: Option<i64> = None;
    let ret = if let Some(r) = vforked {
        r
    } else {
        // SAFETY: the caller chose the call and arguments to be harmless
        // when allowed (nonexistent paths, invalid fds, query-only
        // operations); the pointers given are live for the call.
        unsafe { libc::syscall(nr, vals[0], vals[1], vals[2], vals[3], vals[4], vals[5]) }
    };
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
    if let (Some(child), Some(watch)) = (child, &watch) {
        eprintln!("{}", child_fate(child, watch));
    }
    drop(pidfd);
    ExitCode::SUCCESS
}
