//! The start-up race attacker of the `startup_race` suite. Run as the same
//! unprivileged uid as its target, it does what such a process can do to a
//! program in the instants after `execve`, before the program has made
//! itself non-dumpable, and keeps what it got for later.
//!
//! ```text
//! startup-attacker --broker files|ptrace|none --vault files|ptrace|none LAUNCHER_PID
//! ```
//!
//! `LAUNCHER_PID` is a shell of the attacker's uid blocked in `read` that
//! will `exec` the program (the broker, or the positive control's
//! application) in place; the "broker" target is that pid, the "vault" target
//! is the child process it starts.
//!
//! - broker `files`: `PTRACE_SEIZE` the launcher with `PTRACE_O_TRACEEXEC`
//!   only, wait for the exec event (the program stopped at its first
//!   instruction), open `/proc/T/mem` (read-write), `/proc/T/maps` and
//!   `/proc/T/fd/N` for N >= 3 (0-2 are the user's own terminal or pipes),
//!   then `PTRACE_DETACH`.
//! - broker `ptrace`: the same seize, then stay attached through the exec
//!   (and any later one), relaying every signal.
//! - vault `files`/`ptrace`: watch the last pid the kernel handed out
//!   (`/proc/loadavg`) and every new pid's `/proc/P/status` for a process
//!   whose parent is the target; `SIGSTOP` it at once, wait for state `T`,
//!   note `Seccomp:` from its (world-readable) status, try the opens (or
//!   `PTRACE_SEIZE`). If that is refused while `Seccomp:` is still 0 (it
//!   was stopped between `fork` and `exec`, when it is still a non-dumpable
//!   copy of its parent), it is stepped with SIGCONT/SIGSTOP and the attempt
//!   repeated at each stop (the two kept on different CPUs meanwhile),
//!   until it succeeds, or it has exec'd and still refuses, or it has a
//!   seccomp filter.
//!
//! "Caught" (the suite requires it in most starts, else the run proves
//! nothing): the broker target is caught when it stopped at its exec event,
//! by construction in every start; the vault target is caught when it was
//! stopped while its status showed `Seccomp: 0` (before its sandbox and its
//! key existed). A vault stopped later, or never found, is not caught.
//!
//! A target of another uid cannot be seized or stopped (`EPERM`). Then the
//! attacker tries the attack at once (all the opens, or `PTRACE_SEIZE`),
//! and again (mem, then the rest if mem opened; or the seize) at every turn
//! of its main loop, without a pause, until `go`. Such a target is
//! caught when an attempt was refused while it was dumpable, which anyone
//! can see: the kernel gives the files in `/proc/PID/` of a non-dumpable
//! process to root, so `/proc/PID/stat` was owned by the target's uid just
//! before and just after that attempt (then only the uid check refused
//! it); or, for the vault, when it was found before its `execve` (its
//! `Name` and `VmExe` still its parent's), so that the retries span its
//! whole window.
//!
//! Protocol on stdin/stdout, one line each: the attacker prints `armed`
//! once it is ready for the launcher to exec, then `note ...` lines as it
//! goes. On `go HEXCANARY` it uses what it got: each `/proc/X/mem` is read
//! over every readable range of the maps (re-read through the kept maps
//! descriptor, else as read at open), each `/proc/X/fd/N` is mapped or read,
//! and each live tracee is interrupted for `PTRACE_GETREGSET` and
//! `PTRACE_PEEKDATA` (then detached). It prints, per attacked target,
//!
//! ```text
//! result ROLE caught=yes|no how=WORD pid=P mem=BYTES maps=BYTES fds=N fdbytes=BYTES canary=WHERE regs=R peek=R
//! ```
//!
//! (WHERE: `no`, `mem`, `fdN` or `mem+fdN,fdM`; `how`: how the catch went, e.g. `exec-event`, `in-at-first-stop`,
//! `in-at-step-2`, `refused-after-exec-at-step-1`, `late(Seccomp-2)`,
//! `not-found`; R: `ok`, `denied(ERRNO)`, `gone` when the tracee had
//! exited, `none` without an attachment), then `done`, and exits.

use std::ffi::c_void;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

/// How a target is attacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Files,
    Ptrace,
    None,
}

impl Mode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "files" => Some(Self::Files),
            "ptrace" => Some(Self::Ptrace),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ESRCH) => "ESRCH".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::EIO) => "EIO".into(),
        Some(libc::ENXIO) => "ENXIO".into(),
        Some(n) => format!("errno{n}"),
        None => e.to_string().replace(' ', "_"),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

// ---------------------------------------------------------------------------
// ptrace and wait

/// Converts a `-1` return into the thread's `errno`.
fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A ptrace request whose `addr` and `data` are integers, not pointers.
fn ptrace_int(req: libc::c_uint, pid: i32, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: every request passed here (SEIZE, CONT, DETACH, INTERRUPT)
    // reads `addr` and `data` as integers; the kernel dereferences nothing.
    cvt(unsafe { libc::ptrace(req, pid, addr as *mut c_void, data as *mut c_void) })
}

fn signal_data(sig: i32) -> usize {
    usize::try_from(sig).unwrap_or(0)
}

fn seize(pid: i32, options: i32) -> io::Result<()> {
    ptrace_int(libc::PTRACE_SEIZE, pid, 0, signal_data(options)).map(drop)
}

fn cont(pid: i32, sig: i32) {
    let _ = ptrace_int(libc::PTRACE_CONT, pid, 0, signal_data(sig));
}

fn detach(pid: i32, sig: i32) {
    let _ = ptrace_int(libc::PTRACE_DETACH, pid, 0, signal_data(sig));
}

/// The general registers of a tracee in a ptrace-stop.
fn registers(pid: i32) -> io::Result<libc::user_regs_struct> {
    // SAFETY: user_regs_struct is plain integers; all zeroes is a value.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: std::ptr::addr_of_mut!(regs).cast(),
        iov_len: std::mem::size_of::<libc::user_regs_struct>(),
    };
    // SAFETY: `data` points at a live iovec describing `regs`, which the
    // kernel fills with at most `iov_len` bytes; `addr` is the note type.
    cvt(unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            pid,
            signal_data(libc::NT_PRSTATUS) as *mut c_void,
            std::ptr::addr_of_mut!(iov).cast::<c_void>(),
        )
    })?;
    Ok(regs)
}

#[cfg(target_arch = "x86_64")]
fn stack_pointer(r: &libc::user_regs_struct) -> u64 {
    r.rsp
}

#[cfg(target_arch = "aarch64")]
fn stack_pointer(r: &libc::user_regs_struct) -> u64 {
    r.sp
}

/// One word of the tracee's memory (`PTRACE_PEEKDATA`).
fn peek(pid: i32, addr: u64) -> io::Result<libc::c_long> {
    // SAFETY: the errno location is this thread's, valid for its life.
    unsafe { *libc::__errno_location() = 0 };
    let addr = usize::try_from(addr).unwrap_or(0);
    // SAFETY: PEEKDATA reads `addr` in the tracee, not ours; `data` unused.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_PEEKDATA,
            pid,
            addr as *mut c_void,
            std::ptr::null_mut::<c_void>(),
        )
    };
    let e = io::Error::last_os_error();
    if r == -1 && e.raw_os_error().is_some_and(|n| n != 0) {
        return Err(e);
    }
    Ok(r)
}

/// What a `waitpid` status says about a tracee.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Gone,
    Exec,
    /// `PTRACE_EVENT_STOP`: a group-stop or our interrupt.
    Event,
    /// Signal-delivery-stop: the signal to relay.
    Signal(i32),
    Other,
}

fn classify(status: i32) -> Stop {
    if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
        return Stop::Gone;
    }
    if !libc::WIFSTOPPED(status) {
        return Stop::Other;
    }
    let event = status >> 16;
    if event == libc::PTRACE_EVENT_EXEC {
        Stop::Exec
    } else if event == libc::PTRACE_EVENT_STOP {
        Stop::Event
    } else if event == 0 {
        Stop::Signal(libc::WSTOPSIG(status))
    } else {
        Stop::Other
    }
}

/// `waitpid(pid, flags | __WALL)`; `None` when nothing is ready (WNOHANG)
/// or there is nothing to wait for.
fn wait(pid: i32, flags: i32) -> Option<(i32, i32)> {
    let mut status = 0;
    // SAFETY: `status` is a live local the kernel writes.
    let r = unsafe { libc::waitpid(pid, &mut status, flags | libc::__WALL) };
    (r > 0).then_some((r, status))
}

/// Waits for the exec event of the seized `pid`, relaying any signal.
fn wait_exec(pid: i32) -> Result<(), String> {
    loop {
        let Some((_, status)) = wait(pid, 0) else {
            return Err(format!("waitpid: {}", io::Error::last_os_error()));
        };
        match classify(status) {
            Stop::Exec => return Ok(()),
            Stop::Gone => return Err("the launcher ended before exec".into()),
            Stop::Signal(sig) => cont(pid, sig),
            Stop::Event | Stop::Other => cont(pid, 0),
        }
    }
}

// ---------------------------------------------------------------------------
// /proc

fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    })
}

fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Readable ranges of a maps text.
fn readable_ranges(maps: &str) -> Vec<(u64, u64)> {
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            if !perms.starts_with('r') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

/// The last pid the kernel handed out (`/proc/loadavg`'s last field).
fn last_pid() -> Option<u32> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .nth(4)?
        .parse()
        .ok()
}

/// Finds the first child process of `parent` by watching new pids
/// (`/proc/PID/task/*/children` needs CONFIG_PROC_CHILDREN, off here).
struct Finder {
    parent: i32,
    next: u32,
    pid_max: u32,
    /// Pids handed out whose /proc entry was not there yet (between
    /// `alloc_pid` and `attach_pid` in `fork`), re-checked for a while.
    pending: Vec<(u32, Instant)>,
}

impl Finder {
    fn new(parent: i32) -> Self {
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4_194_304);
        Finder {
            parent,
            next: last_pid().map_or(1, |p| p + 1),
            pid_max,
            pending: Vec::new(),
        }
    }

    /// Whether `pid` is a process (not a thread) whose parent is ours;
    /// `None` if it has no /proc entry.
    fn check(&self, pid: u32) -> Option<bool> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .and_then(|v| v.trim().parse::<i64>().ok())
            })
        };
        Some(field("Tgid") == Some(i64::from(pid)) && field("PPid") == Some(i64::from(self.parent)))
    }

    fn poll(&mut self) -> Option<i32> {
        let last = last_pid()?;
        let mut fresh = Vec::new();
        let mut p = self.next;
        while p != last.wrapping_add(1) && fresh.len() < 100_000 {
            fresh.push(p);
            p = if p >= self.pid_max { 1 } else { p + 1 };
        }
        self.next = last.wrapping_add(1);
        let now = Instant::now();
        let mut candidates: Vec<(u32, Instant)> = std::mem::take(&mut self.pending);
        candidates.extend(fresh.into_iter().map(|p| (p, now)));
        for (pid, seen) in candidates {
            match self.check(pid) {
                Some(true) => return i32::try_from(pid).ok(),
                Some(false) => {}
                None if now.duration_since(seen) < Duration::from_millis(100) => {
                    self.pending.push((pid, seen));
                }
                None => {}
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Targets and what was taken from them

struct Target {
    role: &'static str,
    mode: Mode,
    pid: Option<i32>,
    caught: bool,
    mem: Option<File>,
    maps: Option<File>,
    /// Readable ranges as read right after opening the maps.
    early_ranges: Vec<(u64, u64)>,
    fds: Vec<(i32, File)>,
    traced: bool,
    exited: bool,
    /// How the catch went, in one word (for the suite's summary).
    how: String,
    /// The target may not be stopped by this process (another uid): the
    /// attempt is repeated at every turn of the main loop until `go`.
    retry: bool,
}

impl Target {
    fn new(role: &'static str, mode: Mode) -> Self {
        Target {
            role,
            mode,
            pid: None,
            caught: false,
            mem: None,
            maps: None,
            early_ranges: Vec::new(),
            fds: Vec::new(),
            traced: false,
            exited: false,
            how: "not-found".into(),
            retry: false,
        }
    }

    fn note(&self, what: &str) {
        say(&format!("note {} {what}", self.role));
    }
}

fn open_mem(pid: i32) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
}

/// Opens maps and every fd >= 3 of `t` (its mem is opened by the caller,
/// first: it is the one that matters), then reads the maps once.
fn open_rest(t: &mut Target, pid: i32) {
    match File::open(format!("/proc/{pid}/maps")) {
        Ok(f) => t.maps = Some(f),
        Err(e) => t.note(&format!("open maps denied({})", errno_name(&e))),
    }
    let listed: Option<Vec<i32>> = std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| {
        d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|n| *n >= 3)
            .collect()
    });
    let candidates = listed.unwrap_or_else(|| (3..=64).collect());
    let (mut opened, mut denied) = (Vec::new(), Vec::new());
    for n in candidates {
        let r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(format!("/proc/{pid}/fd/{n}"));
        match r {
            Ok(f) => {
                opened.push(n);
                t.fds.push((n, f));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => denied.push(format!("{n}:{}", errno_name(&e))),
        }
    }
    if let Some(maps) = &mut t.maps {
        let mut text = String::new();
        let _ = maps.read_to_string(&mut text);
        t.early_ranges = readable_ranges(&text);
        t.note(&format!(
            "open maps ok ({} readable ranges)",
            t.early_ranges.len()
        ));
    }
    t.note(&format!(
        "open fds>=3 opened {opened:?}, denied {}{}",
        denied.len(),
        denied
            .first()
            .map_or(String::new(), |d| format!(" (first {d})"))
    ));
}

/// Opens everything of `t`; whether mem opened.
fn open_files(t: &mut Target, pid: i32) -> bool {
    match open_mem(pid) {
        Ok(f) => {
            t.mem = Some(f);
            t.note("open mem (read-write) ok");
        }
        Err(e) => t.note(&format!("open mem denied({})", errno_name(&e))),
    }
    open_rest(t, pid);
    t.mem.is_some()
}

/// One attempt on a stopped or running vault; whether it got in.
fn attempt(t: &mut Target, pid: i32, quiet: bool) -> bool {
    match t.mode {
        Mode::Files if quiet => match open_mem(pid) {
            Ok(f) => {
                t.mem = Some(f);
                t.note("open mem (read-write) ok");
                open_rest(t, pid);
                true
            }
            Err(_) => false,
        },
        Mode::Files => open_files(t, pid),
        Mode::Ptrace => match seize(pid, 0) {
            Ok(()) => {
                t.traced = true;
                t.note("PTRACE_SEIZE ok");
                true
            }
            Err(e) => {
                if !quiet {
                    t.note(&format!("PTRACE_SEIZE denied({})", errno_name(&e)));
                }
                false
            }
        },
        Mode::None => false,
    }
}

/// Whether the signal was sent (a process of another uid refuses it).
fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill takes integers only.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Fields of `/proc/PID/stat` that anyone may read, even of a non-dumpable
/// process, and that move as it runs: minor faults, utime, stime.
fn progress(pid: i32) -> Option<[u64; 3]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some([n(7)?, n(11)?, n(12)?])
}

/// Whether `pid` is dumpable now, as anyone can tell: the kernel gives the
/// files in `/proc/PID/` of a process that is not dumpable by its uid to
/// root (`task_dump_owner`; not the directory itself, which keeps its uid).
fn dumpable(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/stat")).is_ok_and(|m| m.uid() != 0)
}

/// One attempt on a target that may not be stopped (another uid's); it is
/// caught once an attempt was refused while it was dumpable (before and
/// after the attempt): refused by the uid check alone, in its window.
fn retry(t: &mut Target, pid: i32, quiet: bool) {
    let before = dumpable(pid);
    if attempt(t, pid, quiet) {
        t.note("got in");
        t.how = "in-unstoppable".into();
        t.retry = false;
        return;
    }
    if before && dumpable(pid) && !t.caught {
        t.caught = true;
        t.note("refused while dumpable: caught");
        t.how = "refused-while-dumpable".into();
    }
}

/// Whether this process may signal `pid` (no: it is another uid's).
fn may_signal(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks; it takes integers.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
}

/// Sends SIGSTOP and waits for state `T`; false if the process ended.
fn stop(pid: i32) -> bool {
    if !kill(pid, libc::SIGSTOP) {
        return false;
    }
    let start = Instant::now();
    loop {
        match proc_state(pid) {
            Some('T' | 't') => return true,
            None | Some('Z' | 'X') => return false,
            _ if start.elapsed() > Duration::from_secs(20) => return false,
            _ => std::hint::spin_loop(),
        }
    }
}

/// Lets a stopped process run a little: SIGCONT, then SIGSTOP as soon as
/// it is seen to have run (a fault or a tick more), or after 2 ms.
fn step(pid: i32) -> bool {
    let before = progress(pid);
    if !kill(pid, libc::SIGCONT) {
        return false;
    }
    let start = Instant::now();
    while progress(pid) == before && start.elapsed() < Duration::from_millis(2) {
        std::hint::spin_loop();
    }
    stop(pid)
}

/// The CPU affinity of `pid` (0: this thread).
fn affinity(pid: i32) -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most the given size into the live set.
    let r = unsafe { libc::sched_getaffinity(pid, std::mem::size_of_val(&set), &mut set) };
    (r == 0).then_some(set)
}

fn set_affinity(pid: i32, set: &libc::cpu_set_t) {
    // SAFETY: the kernel reads the live set, of the given size.
    unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(set), set) };
}

fn cpus(set: &libc::cpu_set_t) -> Vec<usize> {
    let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads bit `c` of a live set; `c` is below its size.
    (0..bits)
        .filter(|c| unsafe { libc::CPU_ISSET(*c, set) })
        .collect()
}

fn cpu_set(of: &[usize]) -> libc::cpu_set_t {
    // SAFETY: as in `affinity`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in of {
        // SAFETY: sets bit `c` of a live set; `c` came from `cpus`.
        unsafe { libc::CPU_SET(*c, &mut set) };
    }
    set
}

/// Keeps the attacker and the vault on different CPUs while it is stepped
/// (a process may set the affinity of any process of its uid), so that the
/// vault never runs unobserved on the attacker's CPU; restored on drop.
struct Apart {
    pid: i32,
    mine: libc::cpu_set_t,
    theirs: libc::cpu_set_t,
}

impl Apart {
    fn new(pid: i32) -> Option<Self> {
        let (mine, theirs) = (affinity(0)?, affinity(pid)?);
        let me = *cpus(&mine).first()?;
        let others: Vec<usize> = cpus(&theirs).into_iter().filter(|c| *c != me).collect();
        if others.is_empty() {
            return None;
        }
        set_affinity(0, &cpu_set(&[me]));
        set_affinity(pid, &cpu_set(&others));
        Some(Apart { pid, mine, theirs })
    }
}

impl Drop for Apart {
    fn drop(&mut self) {
        set_affinity(self.pid, &self.theirs);
        set_affinity(0, &self.mine);
    }
}

/// Stops the vault the moment it is found, judges "caught", attacks.
///
/// If the attempt is refused while `Seccomp:` is still 0 and the process
/// is still a copy of its parent (stopped between `fork` and `exec`, its
/// `Name` and `VmExe` those of the parent: non-dumpable like it), it is stepped
/// (continued, and stopped again as soon as it has run a little: any
/// process may signal one of its own uid) and the attempt repeated at every
/// stop, until it gets in, or it has exec'd and still refuses (it was
/// non-dumpable from its first instruction, or protected itself before
/// the stop), or it has a seccomp filter.
fn catch_vault(v: &mut Target, pid: i32, parent: i32, others: &mut [&mut Target]) {
    v.pid = Some(pid);
    let parent_image = (status_field(parent, "Name"), status_field(parent, "VmExe"));
    let forked = |pid| (status_field(pid, "Name"), status_field(pid, "VmExe")) == parent_image;
    if !may_signal(pid) {
        // Another uid's: it cannot be stopped. Try at once, and again at
        // every turn of the main loop until `go`; caught if found before
        // its exec (the whole window then lies within the retries) and
        // refused.
        v.retry = true;
        v.how = "refused-unstoppable".into();
        v.note(&format!("pid {pid} may not be signalled"));
        // Found before its exec: the retries, without a pause from here
        // until `go`, span its whole window; caught unless one gets in.
        if forked(pid) {
            v.caught = true;
            v.how = "refused-from-before-exec".into();
        }
        retry(v, pid, false);
        return;
    }
    if !stop(pid) {
        v.note(&format!("pid {pid} ended or never stopped"));
        v.how = "never-stopped".into();
        kill(pid, libc::SIGCONT);
        return;
    }
    let seccomp = status_field(pid, "Seccomp").unwrap_or_else(|| "?".into());
    v.caught = seccomp == "0";
    v.note(&format!(
        "pid {pid} stopped: Seccomp {seccomp}, caught {}",
        yes(v.caught)
    ));
    v.note(&format!(
        "Name {} VmExe {} (its parent's {:?}), state {:?}",
        status_field(pid, "Name").unwrap_or_default(),
        status_field(pid, "VmExe").unwrap_or_default(),
        parent_image,
        status_field(pid, "State")
    ));
    let mut got = attempt(v, pid, false);
    v.how = match (got, v.caught) {
        (true, _) => "in-at-first-stop".into(),
        (false, true) => "refused-at-first-stop".into(),
        (false, false) => format!("late(Seccomp-{seccomp})"),
    };
    if !got && v.caught && forked(pid) {
        v.note("stopped before its exec; stepping it");
        let _apart = Apart::new(pid);
        let start = Instant::now();
        let mut steps = 0u64;
        loop {
            service(v, others);
            if !step(pid) {
                v.note(&format!("ended after {steps} steps"));
                v.how = format!("ended-at-step-{steps}");
                return;
            }
            steps += 1;
            got = attempt(v, pid, true);
            if got {
                v.note(&format!("got in at step {steps}"));
                v.how = format!("in-at-step-{steps}");
                break;
            }
            let seccomp = status_field(pid, "Seccomp");
            if !forked(pid) || seccomp.as_deref() != Some("0") {
                v.note(&format!(
                    "refused at step {steps}, after its exec (Seccomp {})",
                    seccomp.as_deref().unwrap_or("?")
                ));
                v.how = format!("refused-after-exec-at-step-{steps}");
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                v.note(&format!("gave up after {steps} steps"));
                v.how = format!("gave-up-at-step-{steps}");
                break;
            }
        }
    }
    kill(pid, libc::SIGCONT);
}

/// Relays the stops of every tracee without blocking.
fn service(a: &mut Target, others: &mut [&mut Target]) {
    while let Some((pid, status)) = wait(-1, libc::WNOHANG) {
        let stop = classify(status);
        if let Stop::Gone = stop {
            for t in std::iter::once(&mut *a).chain(others.iter_mut().map(|t| &mut **t)) {
                if t.pid == Some(pid) {
                    t.traced = false;
                    t.exited = true;
                    t.note(&format!("traced pid {pid} ended"));
                }
            }
            continue;
        }
        match stop {
            Stop::Signal(sig) => cont(pid, sig),
            _ => cont(pid, 0),
        }
    }
}

// ---------------------------------------------------------------------------
// Using what was taken

/// Whether `needle` is in the `len` bytes at `hay`.
///
/// # Safety
/// `hay` must be readable for `len` bytes for the duration of the call.
unsafe fn contains_raw(hay: *const u8, len: usize, needle: &[u8]) -> bool {
    if needle.is_empty() || len < needle.len() {
        return false;
    }
    // SAFETY: the caller guarantees `hay` for `len` bytes; `needle` is a
    // live slice; memmem only reads both.
    !unsafe { libc::memmem(hay.cast(), len, needle.as_ptr().cast(), needle.len()) }.is_null()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    // SAFETY: a live slice is readable for its length.
    unsafe { contains_raw(hay.as_ptr(), hay.len(), needle) }
}

/// Reads every range through `mem`; bytes read and whether the canary was
/// among them.
fn read_ranges(mem: &File, ranges: &[(u64, u64)], canary: &[u8]) -> (u64, bool) {
    const PAGE: u64 = 4096;
    let mut buf = vec![0u8; 1 << 20];
    let (mut total, mut found) = (0u64, false);
    let keep = canary.len().saturating_sub(1);
    for &(start, end) in ranges {
        let mut addr = start;
        let mut tail: Vec<u8> = Vec::new();
        while addr < end {
            let want = usize::try_from((end - addr).min(1 << 20)).unwrap_or(1 << 20);
            match mem.read_at(&mut buf[..want], addr) {
                Ok(0) => break,
                Ok(n) => {
                    total += u64::try_from(n).unwrap_or(0);
                    let chunk = &buf[..n];
                    if !found {
                        let mut seam = tail.clone();
                        seam.extend_from_slice(&chunk[..n.min(keep)]);
                        found = contains(&seam, canary) || contains(chunk, canary);
                        tail = chunk[n.saturating_sub(keep)..].to_vec();
                    }
                    addr += u64::try_from(n).unwrap_or(PAGE);
                }
                Err(_) => {
                    tail.clear();
                    addr = (addr / PAGE + 1) * PAGE;
                }
            }
        }
    }
    (total, found)
}

/// Maps (or reads) an opened fd; bytes seen and whether the canary was in.
fn scan_fd(f: &File, canary: &[u8]) -> (u64, bool) {
    let Ok(meta) = f.metadata() else {
        return (0, false);
    };
    if !meta.file_type().is_file() || meta.len() == 0 {
        return (0, false);
    }
    let Ok(len) = usize::try_from(meta.len()) else {
        return (0, false);
    };
    // SAFETY: a fresh shared read-only mapping of the whole file; the
    // kernel picks the address; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p != libc::MAP_FAILED {
        // SAFETY: `p` is mapped readable for `len` bytes until the munmap
        // below (the peer may change the bytes; memmem only reads them).
        let found = unsafe { contains_raw(p.cast(), len, canary) };
        // SAFETY: unmapping exactly the mapping made above.
        unsafe { libc::munmap(p, len) };
        return (meta.len(), found);
    }
    let mut buf = vec![0u8; len];
    match f.read_at(&mut buf, 0) {
        Ok(n) => (u64::try_from(n).unwrap_or(0), contains(&buf[..n], canary)),
        Err(_) => (0, false),
    }
}

/// Interrupts a live tracee and tries to use the attachment.
fn use_attachment(t: &mut Target, pid: i32) -> (String, String) {
    if let Err(e) = ptrace_int(libc::PTRACE_INTERRUPT, pid, 0, 0) {
        let d = format!("denied({})", errno_name(&e));
        return (d.clone(), d);
    }
    let start = Instant::now();
    let relay = loop {
        match wait(pid, libc::WNOHANG) {
            None if start.elapsed() > Duration::from_secs(20) => {
                return ("denied(no-stop)".into(), "denied(no-stop)".into())
            }
            None => std::thread::sleep(Duration::from_millis(1)),
            Some((_, status)) => match classify(status) {
                Stop::Gone => {
                    t.exited = true;
                    t.traced = false;
                    return ("gone".into(), "gone".into());
                }
                Stop::Signal(sig) => break sig,
                _ => break 0,
            },
        }
    };
    let (regs, peeked) = match registers(pid) {
        Ok(r) => ("ok".to_owned(), peek(pid, stack_pointer(&r))),
        Err(e) => (format!("denied({})", errno_name(&e)), peek(pid, 0)),
    };
    let peek = match peeked {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("denied({})", errno_name(&e)),
    };
    detach(pid, relay);
    t.traced = false;
    (regs, peek)
}

fn report(t: &mut Target, canary: &[u8]) {
    if t.mode == Mode::None {
        return;
    }
    let (mut mem_bytes, mut maps_bytes, mut canary_seen) = (0u64, 0u64, false);
    if let Some(mem) = &t.mem {
        let mut text = String::new();
        if let Some(maps) = &mut t.maps {
            let _ = maps.seek(SeekFrom::Start(0));
            let _ = maps.read_to_string(&mut text);
        }
        maps_bytes = u64::try_from(text.len()).unwrap_or(0);
        let mut ranges = readable_ranges(&text);
        if ranges.is_empty() {
            ranges.clone_from(&t.early_ranges);
        }
        let (n, found) = read_ranges(mem, &ranges, canary);
        mem_bytes = n;
        canary_seen |= found;
    } else if let Some(maps) = &mut t.maps {
        let mut text = String::new();
        let _ = maps.seek(SeekFrom::Start(0));
        let _ = maps.read_to_string(&mut text);
        maps_bytes = u64::try_from(text.len()).unwrap_or(0);
    }
    let mut fd_bytes = 0u64;
    let mut canary_fds = Vec::new();
    for (fd, f) in &t.fds {
        let (n, found) = scan_fd(f, canary);
        fd_bytes += n;
        if found {
            canary_fds.push(fd.to_string());
        }
    }
    let canary_where = match (canary_seen, canary_fds.is_empty()) {
        (false, true) => "no".to_owned(),
        (true, true) => "mem".to_owned(),
        (mem, false) => format!(
            "{}fd{}",
            if mem { "mem+" } else { "" },
            canary_fds.join(",fd")
        ),
    };
    let (regs, peek) = match t.pid {
        Some(pid) if t.traced && !t.exited => use_attachment(t, pid),
        _ if t.exited => ("gone".into(), "gone".into()),
        _ => ("none".into(), "none".into()),
    };
    say(&format!(
        "result {} caught={} how={} pid={} mem={mem_bytes} maps={maps_bytes} fds={} fdbytes={fd_bytes} canary={canary_where} regs={regs} peek={peek}",
        t.role,
        yes(t.caught),
        t.how,
        t.pid.unwrap_or(0),
        t.fds.len(),
    ));
}

// ---------------------------------------------------------------------------
// The suite's commands

/// Lines from stdin, read without blocking longer than asked.
struct Input {
    buf: Vec<u8>,
    eof: bool,
}

impl Input {
    fn line(&mut self, timeout: Duration) -> Option<String> {
        if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            return Some(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        if self.eof {
            return None;
        }
        let mut pfd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::c_long::try_from(timeout.as_nanos().min(999_999_999)).unwrap_or(0),
        };
        // SAFETY: one live pollfd and a live timespec; no signal mask.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if n > 0 {
            let mut chunk = [0u8; 4096];
            match io::stdin().lock().read(&mut chunk) {
                Ok(0) | Err(_) => self.eof = true,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        None
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn usage() -> ! {
    eprintln!(
        "usage: startup-attacker --broker files|ptrace|none --vault files|ptrace|none LAUNCHER_PID"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut broker_mode, mut vault_mode, mut launcher) = (Mode::None, Mode::None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--broker" => {
                broker_mode = it
                    .next()
                    .and_then(|m| Mode::parse(m))
                    .unwrap_or_else(|| usage())
            }
            "--vault" => {
                vault_mode = it
                    .next()
                    .and_then(|m| Mode::parse(m))
                    .unwrap_or_else(|| usage())
            }
            pid => launcher = Some(pid.parse::<i32>().unwrap_or_else(|_| usage())),
        }
    }
    let Some(launcher) = launcher else { usage() };
    // Short sleeps really short: the polling below races the target.
    // SAFETY: PR_SET_TIMERSLACK takes an integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };

    let mut broker = Target::new("broker", broker_mode);
    broker.pid = Some(launcher);
    let mut vault = Target::new("vault", vault_mode);
    // Pids from here on are watched; the vault cannot be older.
    let mut finder = (vault_mode != Mode::None).then(|| Finder::new(launcher));
    let mut seized = false;
    if broker_mode != Mode::None {
        match seize(launcher, libc::PTRACE_O_TRACEEXEC) {
            Ok(()) => seized = true,
            // Another uid's launcher: refused before its exec, so caught;
            // tried again (seize, or the opens) at every turn until `go`.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                broker.how = "refused-unstoppable".into();
                broker.retry = true;
                broker.note(&format!(
                    "PTRACE_SEIZE of the launcher denied({})",
                    errno_name(&e)
                ));
                retry(&mut broker, launcher, false);
            }
            Err(e) => {
                say(&format!(
                    "error PTRACE_SEIZE of the launcher {launcher}: {e}"
                ));
                std::process::exit(1);
            }
        }
    }
    say("armed");
    if seized {
        if let Err(e) = wait_exec(launcher) {
            say(&format!("error {e}"));
            std::process::exit(1);
        }
        broker.caught = true;
        broker.how = "exec-event".into();
        broker.note("stopped at its exec event (first instruction): caught");
        if broker_mode == Mode::Files {
            open_files(&mut broker, launcher);
            detach(launcher, 0);
            broker.note("detached");
        } else {
            cont(launcher, 0);
            broker.traced = true;
        }
    }

    let mut input = Input {
        buf: Vec::new(),
        eof: false,
    };
    let canary = loop {
        service(&mut broker, &mut [&mut vault]);
        for t in [&mut broker, &mut vault] {
            if let (true, Some(pid)) = (t.retry, t.pid) {
                retry(t, pid, true);
            }
        }
        let retrying = broker.retry || vault.retry;
        let hunting = finder.is_some() && vault.pid.is_none();
        if hunting {
            if let Some(pid) = finder.as_mut().and_then(Finder::poll) {
                catch_vault(&mut vault, pid, launcher, &mut [&mut broker]);
                continue;
            }
        }
        // A target of another uid is retried without a pause: its window
        // is short and nothing stops it for us.
        let wait_for = if retrying {
            Duration::ZERO
        } else if hunting {
            Duration::from_micros(100)
        } else {
            Duration::from_millis(5)
        };
        match input.line(wait_for) {
            Some(l) if l == "go" || l.starts_with("go ") => {
                break unhex(l.trim_start_matches("go").trim()).unwrap_or_default();
            }
            Some(other) => say(&format!("note unknown command {other:?}")),
            None if input.eof => std::process::exit(3),
            None => {}
        }
    };
    service(&mut broker, &mut [&mut vault]);
    if vault_mode != Mode::None && vault.pid.is_none() {
        vault.note("never found");
    }
    report(&mut broker, &canary);
    report(&mut vault, &canary);
    // Any attachment left (a tracee that ended) goes with this process.
    say("done");
}
