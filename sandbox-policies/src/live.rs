//! Reading the seccomp filters the kernel holds for a running process.
//!
//! `PTRACE_SECCOMP_GET_FILTER` returns one filter of a thread as the kernel
//! stores it (an array of `struct sock_filter`), and
//! `PTRACE_SECCOMP_GET_METADATA` its flags. Both need:
//! - `CAP_SYS_ADMIN` (in practice: root; without it, `EACCES`);
//! - a kernel built with `CONFIG_CHECKPOINT_RESTORE` (else the requests are
//!   unknown: `EIO`);
//! - a caller not itself under seccomp (`EACCES`);
//! - the thread stopped under ptrace by the caller. Each thread is seized,
//!   interrupted, read and detached in turn, so the process is never
//!   stopped as a whole and each thread only for the few system calls the
//!   reading takes: the broker's deadline on a request the vault serves is
//!   far longer than that.
//!
//! Which index is the oldest filter is not taken on trust: the man page
//! says index 0 is the newest, the kernel's `get_nth_filter` counts from
//! the oldest. [`probe_order`] installs two known filters in a child and
//! reads them back, and the filters are reported in install order whatever
//! the answer.

use std::io;

use crate::verify::Held;

const PTRACE_SEIZE: libc::c_uint = 0x4206;
const PTRACE_INTERRUPT: libc::c_uint = 0x4207;
const PTRACE_DETACH: libc::c_uint = 17;
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
/// `PTRACE_EVENT_STOP`: the stop `PTRACE_INTERRUPT` asks for.
const PTRACE_EVENT_STOP: libc::c_int = 128;

/// Longest a thread may take to reach the ptrace stop asked for.
const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// `struct seccomp_metadata`.
#[repr(C)]
#[derive(Debug, Default)]
struct Metadata {
    filter_off: u64,
    flags: u64,
}

/// Why the filters of a thread could not be read.
#[derive(Debug)]
pub enum LiveError {
    /// The thread ended while it was being read.
    Gone,
    /// A request failed; `what` says which and what it takes.
    Failed { what: String, source: io::Error },
}

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gone => f.write_str("the thread ended while it was being read"),
            Self::Failed { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for LiveError {}

/// What a failed `PTRACE_SECCOMP_GET_*` means, in words.
fn explain_get(e: &io::Error) -> String {
    match e.raw_os_error() {
        // The kernel answers EACCES to both: no CAP_SYS_ADMIN, or a caller
        // under seccomp itself (checked before, see `self_under_seccomp`).
        Some(libc::EACCES) => "PTRACE_SECCOMP_GET_FILTER refused (EACCES): it needs \
                               CAP_SYS_ADMIN (run as root) and a reader not itself under seccomp"
            .into(),
        Some(libc::EIO) => "PTRACE_SECCOMP_GET_FILTER unknown to this kernel (EIO): it is \
                            built without CONFIG_CHECKPOINT_RESTORE, so no process can read \
                            another's filters here"
            .into(),
        Some(libc::EMEDIUMTYPE) => {
            "PTRACE_SECCOMP_GET_FILTER refused (EMEDIUMTYPE): the filter is \
                                    not a classic BPF program the kernel can return"
                .into()
        }
        _ => "PTRACE_SECCOMP_GET_FILTER failed".into(),
    }
}

fn ptrace(
    req: libc::c_uint,
    tid: libc::pid_t,
    addr: usize,
    data: usize,
) -> io::Result<libc::c_long> {
    // SAFETY: every request used here either takes no pointer or takes
    // `data` pointing to a buffer the caller sized for it (the filter's
    // instruction count, or a `struct seccomp_metadata` whose size is
    // passed in `addr`).
    let r = unsafe { libc::ptrace(req, tid, addr, data) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A thread seized and in a ptrace stop; detached (with the signal it was
/// stopped for, if any, so nothing is lost) when dropped.
struct Stopped {
    tid: libc::pid_t,
    signal: libc::c_int,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let sig = usize::try_from(self.signal).unwrap_or(0);
        // A thread that ended meanwhile cannot be detached: nothing to do.
        let _ = ptrace(PTRACE_DETACH, self.tid, 0, sig);
    }
}

fn failed(what: &str) -> impl Fn(io::Error) -> LiveError + '_ {
    move |source| {
        if source.raw_os_error() == Some(libc::ESRCH) {
            LiveError::Gone
        } else {
            LiveError::Failed {
                what: what.to_owned(),
                source,
            }
        }
    }
}

/// Seizes `tid` and waits until it is in a ptrace stop.
fn stop(tid: libc::pid_t) -> Result<Stopped, LiveError> {
    ptrace(PTRACE_SEIZE, tid, 0, 0).map_err(failed(
        "PTRACE_SEIZE refused (it needs CAP_SYS_PTRACE over the process, or the same user \
         and a dumpable process; another tracer may hold it)",
    ))?;
    let mut stopped = Stopped { tid, signal: 0 };
    ptrace(PTRACE_INTERRUPT, tid, 0, 0).map_err(failed("PTRACE_INTERRUPT"))?;
    let start = std::time::Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waits for a thread this process traces; status is ours.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(failed("waitpid")(e));
        }
        if r == 0 {
            // A thread in an uninterruptible wait (a vfork parent, a frozen
            // cgroup, disk I/O) does not stop until it leaves it. Give up
            // rather than hang: the thread is detached when this process
            // exits, and nothing is read from it.
            if start.elapsed() > STOP_DEADLINE {
                return Err(LiveError::Failed {
                    what: format!(
                        "thread {tid} did not stop within {STOP_DEADLINE:?} (an uninterruptible \
                         wait: a vfork parent, a frozen cgroup, disk I/O); try again"
                    ),
                    source: io::Error::from_raw_os_error(libc::ETIMEDOUT),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            std::mem::forget(stopped);
            return Err(LiveError::Gone);
        }
        if libc::WIFSTOPPED(status) {
            if status >> 16 == PTRACE_EVENT_STOP {
                return Ok(stopped);
            }
            // A signal-delivery stop came first: a ptrace stop too, good
            // enough to read in; the signal is delivered on detach.
            stopped.signal = libc::WSTOPSIG(status);
            return Ok(stopped);
        }
    }
}

/// The filters of thread `tid`, as the kernel indexes them (see
/// [`probe_order`] for which end is the oldest).
pub fn read_thread(tid: libc::pid_t) -> Result<Vec<Held>, LiveError> {
    let _stopped = stop(tid)?;
    let mut out = Vec::new();
    for index in 0usize.. {
        let count = match ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index, 0) {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            // No filter at all: the kernel says EINVAL for a thread not in
            // filter mode.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && index == 0 => break,
            Err(e) => {
                let what = explain_get(&e);
                return Err(failed(&what)(e));
            }
        };
        let mut buf = vec![0u8; count * crate::bpf::INSN_LEN];
        let got = ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid,
            index,
            buf.as_mut_ptr() as usize,
        )
        .map_err(|e| failed(&explain_get(&e))(e))?;
        if usize::try_from(got).ok() != Some(count) {
            return Err(LiveError::Failed {
                what: format!("filter {index} changed size while being read ({count} then {got})"),
                source: io::Error::from_raw_os_error(libc::EAGAIN),
            });
        }
        let mut md = Metadata {
            filter_off: index as u64,
            flags: 0,
        };
        ptrace(
            PTRACE_SECCOMP_GET_METADATA,
            tid,
            std::mem::size_of::<Metadata>(),
            std::ptr::addr_of_mut!(md) as usize,
        )
        .map_err(failed("PTRACE_SECCOMP_GET_METADATA"))?;
        out.push(Held {
            bpf: buf,
            flags: md.flags,
        });
    }
    Ok(out)
}

/// The threads of process `pid`, from `/proc/PID/task`.
pub fn threads(pid: u32) -> io::Result<Vec<libc::pid_t>> {
    let mut out: Vec<libc::pid_t> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Which index `PTRACE_SECCOMP_GET_FILTER` gives the oldest filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Index 0 is the filter installed first (the kernel's code).
    OldestFirst,
    /// Index 0 is the filter installed last (the man page's words).
    NewestFirst,
}

/// Finds out [`Order`] on this kernel: a child installs a one-instruction
/// filter, then a two-instruction one, and waits; its filters are read back.
pub fn probe_order() -> Result<Order, LiveError> {
    let first = crate::bpf::encode(&[crate::bpf::Insn {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: crate::bpf::RET_ALLOW,
    }]);
    let second = crate::bpf::encode(&[
        crate::bpf::Insn {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        crate::bpf::Insn {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: crate::bpf::RET_ALLOW,
        },
    ]);
    let progs: Vec<libc::sock_fprog> = [&first, &second]
        .iter()
        .map(|p| libc::sock_fprog {
            len: u16::try_from(p.len() / crate::bpf::INSN_LEN).unwrap_or(0),
            filter: p.as_ptr().cast_mut().cast(),
        })
        .collect();
    let mut fds = [0; 2];
    // SAFETY: a pipe into a two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(failed("pipe2")(io::Error::last_os_error()));
    }
    let (rd, wr) = (fds[0], fds[1]);
    // Ready byte from the child to us.
    let mut ready = [0; 2];
    // SAFETY: as above.
    if unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(failed("pipe2")(io::Error::last_os_error()));
    }
    // SAFETY: the child only makes async-signal-safe system calls (prctl,
    // seccomp, write, read, _exit) on memory prepared before the fork.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: see the fork above; every pointer is into `progs`, alive.
        unsafe {
            libc::close(wr);
            libc::close(ready[0]);
            let ok = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                && progs.iter().all(|p| {
                    libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        0,
                        std::ptr::from_ref(p),
                    ) == 0
                });
            let byte = [u8::from(ok)];
            libc::write(ready[1], byte.as_ptr().cast(), 1);
            let mut b = [0u8; 1];
            while libc::read(rd, b.as_mut_ptr().cast(), 1) == -1 {}
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copies of the child's ends.
    unsafe {
        libc::close(rd);
        libc::close(ready[1]);
    }
    let reap = |wr: libc::c_int| {
        // SAFETY: closing our end lets the child's read return; then reap it.
        unsafe {
            libc::close(wr);
            libc::waitpid(child, std::ptr::null_mut(), libc::__WALL);
        }
    };
    if child == -1 {
        return Err(failed("fork")(io::Error::last_os_error()));
    }
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into our buffer.
    let n = unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 1) };
    // SAFETY: done with it.
    unsafe { libc::close(ready[0]) };
    if n != 1 || b[0] != 1 {
        reap(wr);
        return Err(LiveError::Failed {
            what: "the order probe's child could not install its two filters".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    let held = read_thread(child);
    reap(wr);
    let held = held?;
    match held.as_slice() {
        [a, b] if a.bpf == first && b.bpf == second => Ok(Order::OldestFirst),
        [a, b] if a.bpf == second && b.bpf == first => Ok(Order::NewestFirst),
        other => Err(LiveError::Failed {
            what: format!(
                "the order probe read {} filter(s) that are not the two it installed",
                other.len()
            ),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        }),
    }
}

/// Whether this process runs under seccomp (`Seccomp:` of its status is not
/// 0), in which case the kernel refuses to show it any filter.
pub fn self_under_seccomp() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim() != "0"))
        })
        .unwrap_or(false)
}

/// Every thread of `pid` with its filters in install order (oldest
/// first), read one thread at a time. A thread that ends while it is read
/// is left out (it holds nothing any more).
pub fn read_process(pid: u32, order: Order) -> Result<Vec<(libc::pid_t, Vec<Held>)>, String> {
    let tids = threads(pid).map_err(|e| format!("cannot list the threads of {pid}: {e}"))?;
    let mut out = Vec::new();
    for tid in tids {
        match read_thread(tid) {
            Ok(mut held) => {
                if order == Order::NewestFirst {
                    held.reverse();
                }
                out.push((tid, held));
            }
            Err(LiveError::Gone) => {}
            Err(e) => return Err(format!("thread {tid} of process {pid}: {e}")),
        }
    }
    if out.is_empty() {
        return Err(format!("process {pid} has no thread left to read"));
    }
    Ok(out)
}
