//! Installing a seccomp filter compiled at build time from a policy in
//! `sandbox-policies/`, in one of three modes.
//!
//! - [`Mode::Enforce`]: the policy as written; a call it does not allow kills
//!   the process (SIGSYS), which the broker reports as a sandbox kill.
//! - [`Mode::Trap`] (learning): a refused call raises SIGSYS in the process;
//!   the handler installed here names the call on stderr and makes it return
//!   `ENOSYS`, and the process goes on.
//! - [`Mode::Log`] (learning): the kernel logs the refused call (audit
//!   record type 1326, `dmesg`) and lets it through.
//!
//! The learning modes are for policy work only: never the default, and
//! announced loudly by whoever turns them on.
//!
//! The filter is installed with TSYNC on every thread of the process, so no
//! thread can exist unfiltered.

use std::ffi::{c_int, c_void};

use seccompiler::{sock_filter, BpfProgram};

include!(concat!(env!("OUT_DIR"), "/syscall_names.rs"));

/// How a filter treats a call its policy does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kill the process (the policy as written).
    Enforce,
    /// Learning: name the call from a SIGSYS handler, answer ENOSYS.
    Trap,
    /// Learning: the kernel logs the call and allows it.
    Log,
}

impl Mode {
    /// Parses `enforce`, `trap` or `log`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enforce" => Some(Self::Enforce),
            "trap" => Some(Self::Trap),
            "log" => Some(Self::Log),
            _ => None,
        }
    }

    /// The mode's name, as [`Mode::parse`] takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Trap => "trap",
            Self::Log => "log",
        }
    }

    /// Whether this is a learning mode (the sandbox does not kill).
    pub fn is_learning(self) -> bool {
        self != Self::Enforce
    }
}

/// One embedded program and the slots of its run-time values, as
/// `policy::compile::embed` wrote them.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    /// The canonical program: 8 little-endian bytes per instruction, every
    /// run-time slot a `BPF_JMP|BPF_JEQ|BPF_K` with `k` = 0.
    pub bpf: &'static [u8],
    /// The instructions that compare with the installing process's own pid
    /// (`"val": "own_pid"` in the policy): u32 little-endian indices.
    pub pid_slots: &'static [u8],
}

/// The three compiled variants of one policy, as embedded by [`embedded_policy!`](crate::embedded_policy).
/// A one-rule filter that traps the calls one rule of the policy allows
/// (`policy::compile::namer`): installed after the policy, it takes that
/// rule away and names every call that needed it.
#[derive(Debug, Clone, Copy)]
pub struct Namer {
    /// The filter the rule belongs to (`vault`, `vault-errno`, ...).
    pub filter: &'static str,
    /// The rule's number in that filter, from 1, as `REVIEW.md` numbers it.
    pub rule: u32,
    /// The system call the rule is about.
    pub syscall: &'static str,
    /// The program: trap for the rule's calls, allow for every other.
    pub program: Embedded,
}

#[derive(Debug, Clone, Copy)]
pub struct Compiled {
    pub enforce: Embedded,
    pub trap: Embedded,
    pub log: Embedded,
    /// The `NAME-errno` overlay (empty if the policy has none): installed
    /// first, it answers some calls with an errno (clone3 with ENOSYS).
    pub overlay: Embedded,
    /// One namer per rule of the filter and of its overlay: the rule check
    /// of the "every rule is needed" suite ([`install_naming`]).
    pub namers: &'static [Namer],
}

/// Embeds the variants that `policy::compile::embed` wrote to `OUT_DIR` for
/// filter `$name`: each program (`NAME-MODE.bpf`) with its slot list
/// (`NAME-MODE.pid`).
#[macro_export]
macro_rules! embedded_policy {
    ($name:literal) => {
        $crate::sandbox::Compiled {
            enforce: $crate::embedded_policy!(@mode $name, "enforce"),
            trap: $crate::embedded_policy!(@mode $name, "trap"),
            log: $crate::embedded_policy!(@mode $name, "log"),
            overlay: $crate::embedded_policy!(@mode $name, "overlay"),
            // A list written by the build script; it names the types by
            // their path from the `common` crate.
            namers: include!(concat!(env!("OUT_DIR"), "/", $name, "-namers.rs")),
        }
    };
    (@mode $name:literal, $mode:literal) => {
        $crate::sandbox::Embedded {
            bpf: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, "-", $mode, ".bpf")),
            pid_slots: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, "-", $mode, ".pid")),
        }
    };
}

/// Errors of installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the embedded filter is corrupt ({len} bytes is not a whole number of BPF instructions)"
    )]
    Corrupt { len: usize },
    #[error(
        "the embedded filter's slot list is corrupt ({len} bytes is not a whole number of u32 indices)"
    )]
    CorruptSlots { len: usize },
    #[error("the embedded filter lists run-time slot {index}, past its end ({len} instructions)")]
    SlotOutOfRange { index: u32, len: usize },
    #[error(
        "the embedded filter's run-time slot {index} is not a pid comparison waiting for its \
         value (code {code:#06x}, k {k:#x}; expected a BPF_JMP|BPF_JEQ|BPF_K with k 0): \
         refusing to patch it"
    )]
    BadSlot { index: u32, code: u16, k: u32 },
    #[error("cannot install the SIGSYS handler of the learning mode")]
    Handler(#[source] std::io::Error),
    #[error("cannot install the seccomp filter")]
    Install(#[source] seccompiler::Error),
    /// The rule check named a rule the embedded policy does not have.
    #[error("--sandbox-name-rule {filter}:{rule}: the policy has no such rule (filters and rules are numbered as REVIEW.md numbers them)")]
    NoSuchRule { filter: String, rule: u32 },
}

/// Decodes an embedded program (8 little-endian bytes per instruction).
pub fn program(bytes: &[u8]) -> Result<BpfProgram, SandboxError> {
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return Err(SandboxError::Corrupt { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Decodes an embedded slot list (u32 little-endian indices).
pub fn pid_slots(bytes: &[u8]) -> Result<Vec<u32>, SandboxError> {
    if bytes.len() % 4 != 0 {
        return Err(SandboxError::CorruptSlots { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// `BPF_JMP | BPF_JEQ | BPF_K`: the only instruction a run-time slot may be.
const JEQ_K: u16 = 0x05 | 0x10;

/// Writes `pid` into each instruction `slots` lists, after checking that
/// it is a `BPF_JMP|BPF_JEQ|BPF_K` whose `k` is still 0 (a slot listed
/// twice is refused the second time). On an error `prog` is partly patched
/// and must not be installed.
pub fn patch_pid(prog: &mut BpfProgram, slots: &[u8], pid: u32) -> Result<(), SandboxError> {
    let len = prog.len();
    for index in pid_slots(slots)? {
        let insn = usize::try_from(index)
            .ok()
            .and_then(|i| prog.get_mut(i))
            .ok_or(SandboxError::SlotOutOfRange { index, len })?;
        if insn.code != JEQ_K || insn.k != 0 {
            return Err(SandboxError::BadSlot {
                index,
                code: insn.code,
                k: insn.k,
            });
        }
        insn.k = pid;
    }
    Ok(())
}

/// Decodes `embedded` and writes `pid` into its run-time slots.
fn ready(embedded: &Embedded, pid: u32) -> Result<BpfProgram, SandboxError> {
    let mut prog = program(embedded.bpf)?;
    patch_pid(&mut prog, embedded.pid_slots, pid)?;
    Ok(prog)
}

/// Installs `policy` in `mode` on every thread of the process, with the
/// process's own pid (`getpid()`, here, now) written into the comparisons
/// that need it. A process that forks after this keeps its parent's pid in
/// the filter: this project's sandboxed processes never fork once filtered.
pub fn install(policy: &Compiled, mode: Mode) -> Result<(), SandboxError> {
    let chosen = match mode {
        Mode::Enforce => &policy.enforce,
        Mode::Trap => &policy.trap,
        Mode::Log => &policy.log,
    };
    let pid = std::process::id();
    let prog = ready(chosen, pid)?;
    let overlay = if policy.overlay.bpf.is_empty() {
        // No overlay, so no slot either: a listed one is out of range.
        patch_pid(&mut BpfProgram::new(), policy.overlay.pid_slots, pid)?;
        None
    } else {
        Some(ready(&policy.overlay, pid)?)
    };
    if mode == Mode::Trap {
        install_sigsys_handler()?;
    }
    // The overlay first: it allows everything but its errno calls, so the
    // moment between the two installs is no wider than before either.
    if let Some(overlay) = overlay {
        seccompiler::apply_filter_all_threads(&overlay).map_err(SandboxError::Install)?;
    }
    seccompiler::apply_filter_all_threads(&prog).map_err(SandboxError::Install)
}

/// The rule under check, for the SIGSYS handler (null: learning mode).
static NAMING: std::sync::atomic::AtomicPtr<Namer> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// How the SIGSYS handler writes its line when the rule under check is
/// about `write` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aside {
    /// `writev` on this descriptor.
    Writev(c_int),
    /// `write` on this descriptor.
    Write(c_int),
    /// `write` on the first descriptor, or on the second when the call
    /// being named is itself a write to the first: for a filter with a
    /// `write` rule for each of the two (the broker's, fd 1 and fd 2).
    WriteAvoiding(c_int, c_int),
}

impl Aside {
    /// The encoding in [`ASIDE`], and the descriptor for [`ASIDE_ELSE`]
    /// (-1: none).
    fn encode(self) -> (i64, i64) {
        match self {
            Self::Writev(fd) => (i64::from(fd), -1),
            Self::Write(fd) => (-1 - i64::from(fd), -1),
            Self::WriteAvoiding(fd, other) => (-1 - i64::from(fd), i64::from(other)),
        }
    }

    fn decode(v: i64) -> Self {
        if v >= 0 {
            Self::Writev(c_int::try_from(v).unwrap_or(2))
        } else {
            Self::Write(c_int::try_from(-1 - v).unwrap_or(2))
        }
    }
}

/// [`Aside`] of the rule under check, encoded.
static ASIDE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(2);
/// The second descriptor of [`Aside::WriteAvoiding`], or -1.
static ASIDE_ELSE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(-1);

/// Parses a rule reference `FILTER:RULE` (`vault:12`, `vault-errno:1`).
pub fn parse_rule(s: &str) -> Option<(&str, u32)> {
    let (filter, rule) = s.rsplit_once(':')?;
    let rule = rule.parse().ok().filter(|&r| r > 0)?;
    (!filter.is_empty()).then_some((filter, rule))
}

/// The rule check: installs the policy enforcing, exactly as [`install`]
/// does, and then the namer of rule `rule` of filter `filter`, which traps
/// that rule's calls; the SIGSYS handler names each one on stderr
/// (`sandbox (rule check): without vault rule 12 (writev), ...`) and makes
/// it return `ENOSYS`. Every call the policy does not allow still kills.
/// Policy work and the "every rule is needed" suite only: the process runs
/// under a filter tighter than the policy, never looser.
///
/// A rule about `write` may be the very one the handler writes its line
/// with; `aside` says how to write instead (the vault: `writev` on stderr;
/// the broker: `write` on stderr, or on stdout when stderr's rule is the
/// one taken away).
pub fn install_naming(
    policy: &Compiled,
    filter: &str,
    rule: u32,
    aside: Aside,
) -> Result<(), SandboxError> {
    let namer = policy
        .namers
        .iter()
        .find(|n| n.filter == filter && n.rule == rule)
        .ok_or_else(|| SandboxError::NoSuchRule {
            filter: filter.to_owned(),
            rule,
        })?;
    let prog = ready(&namer.program, std::process::id())?;
    let (aside, other) = aside.encode();
    ASIDE.store(aside, std::sync::atomic::Ordering::SeqCst);
    ASIDE_ELSE.store(other, std::sync::atomic::Ordering::SeqCst);
    NAMING.store(
        std::ptr::from_ref(namer).cast_mut(),
        std::sync::atomic::Ordering::SeqCst,
    );
    install_sigsys_handler()?;
    // The namer first: the policy allows no seccomp() after it. The order
    // changes nothing else (the most restrictive result wins).
    seccompiler::apply_filter_all_threads(&prog).map_err(SandboxError::Install)?;
    install(policy, Mode::Enforce)
}

/// Installs a filter that allows every call, through the same path as the
/// real ones: the positive control of the regression suite.
pub fn install_allow_all() -> Result<(), SandboxError> {
    let filter = seccompiler::SeccompFilter::new(
        Default::default(),
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::KillProcess,
        std::env::consts::ARCH
            .try_into()
            .map_err(|e| SandboxError::Install(seccompiler::Error::Backend(e)))?,
    )
    .map_err(|e| SandboxError::Install(seccompiler::Error::Backend(e)))?;
    let prog: BpfProgram = filter
        .try_into()
        .map_err(|e| SandboxError::Install(seccompiler::Error::Backend(e)))?;
    seccompiler::apply_filter_all_threads(&prog).map_err(SandboxError::Install)
}

/// The name of system call `nr`, if the build's kernel headers list it.
pub fn syscall_name(nr: u32) -> Option<&'static str> {
    SYSCALL_NAMES
        .iter()
        .find(|(n, _)| *n == nr)
        .map(|(_, name)| *name)
}

/// The number of system call `name`, if the build's kernel headers list it.
pub fn syscall_number(name: &str) -> Option<u32> {
    SYSCALL_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(nr, _)| *nr)
}

/// `si_code` of a SIGSYS raised by a seccomp `trap` action.
const SYS_SECCOMP: c_int = 1;

fn install_sigsys_handler() -> Result<(), SandboxError> {
    // SAFETY: a zeroed sigaction is valid; the handler only does
    // async-signal-safe work (stack formatting, write(2), a register store).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void)
            as libc::sighandler_t;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) == -1 {
            return Err(SandboxError::Handler(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Appends `s` to `buf` at `*len`, truncating at the end of `buf`.
fn push(buf: &mut [u8], len: &mut usize, s: &[u8]) {
    for &b in s {
        if *len < buf.len() {
            buf[*len] = b;
            *len += 1;
        }
    }
}

/// Formats `n` in decimal into `out`, returning the digits used.
fn decimal(mut n: u32, out: &mut [u8; 10]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &out[i..]
}

/// Formats `n` in hexadecimal into `out`, returning the digits used.
fn hex(mut n: u64, out: &mut [u8; 16]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b"0123456789abcdef"[usize::try_from(n % 16).unwrap_or(0)];
        n /= 16;
        if n == 0 || i == 0 {
            break;
        }
    }
    &out[i..]
}

/// The learning mode's SIGSYS handler. Async-signal-safe: no allocation,
/// no locks; formats into a stack buffer, writes it with one write(2), and
/// sets the trapped call's return value to -ENOSYS.
extern "C" fn on_sigsys(_sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // The interrupted code's errno, restored on the way out: a write from
    // here may set it.
    // SAFETY: __errno_location is async-signal-safe and returns this
    // thread's errno.
    let errno = unsafe { *libc::__errno_location() };
    on_sigsys_inner(info, ctx);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn on_sigsys_inner(info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // The SIGSYS fields follow the common header: `void *_call_addr` at
    // offset 16, `int _syscall` at 24 (include/uapi/asm-generic/siginfo.h).
    // SAFETY: siginfo_t is 128 bytes, so bytes 24..28 are inside it; read
    // unaligned-safe, so no alignment assumption is needed.
    let nr = unsafe { info.cast::<u8>().add(24).cast::<c_int>().read_unaligned() };
    let mut buf = [0u8; 512];
    let mut len = 0;
    // SAFETY: NAMING is null or points to a `Namer` of a `'static` policy.
    let naming = unsafe {
        NAMING
            .load(std::sync::atomic::Ordering::SeqCst)
            .cast_const()
            .as_ref()
    };
    if code == SYS_SECCOMP {
        if let Some(n) = naming {
            push(&mut buf, &mut len, b"sandbox (rule check): without ");
            push(&mut buf, &mut len, n.filter.as_bytes());
            push(&mut buf, &mut len, b" rule ");
            let mut digits = [0u8; 10];
            push(&mut buf, &mut len, decimal(n.rule, &mut digits));
            push(&mut buf, &mut len, b" (");
            push(&mut buf, &mut len, n.syscall.as_bytes());
            push(&mut buf, &mut len, b"), the process made ");
        } else {
            push(
                &mut buf,
                &mut len,
                b"sandbox (learning mode): the policy would refuse ",
            );
        }
        let nr = u32::try_from(nr).unwrap_or(u32::MAX);
        push(
            &mut buf,
            &mut len,
            syscall_name(nr).unwrap_or("an unknown call").as_bytes(),
        );
        push(&mut buf, &mut len, b" (#");
        let mut digits = [0u8; 10];
        push(&mut buf, &mut len, decimal(nr, &mut digits));
        push(&mut buf, &mut len, b")");
        #[cfg(target_arch = "x86_64")]
        {
            // The six arguments, from the interrupted context: what a
            // rule's conditions would have to allow.
            push(&mut buf, &mut len, b" args");
            // SAFETY: for an SA_SIGINFO handler `ctx` is the interrupted
            // context; RDI, RSI, RDX, R10, R8 and R9 hold the arguments.
            let regs = unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
            for r in [
                libc::REG_RDI,
                libc::REG_RSI,
                libc::REG_RDX,
                libc::REG_R10,
                libc::REG_R8,
                libc::REG_R9,
            ] {
                let v = usize::try_from(r)
                    .ok()
                    .and_then(|i| regs.get(i).copied())
                    .unwrap_or(0);
                push(&mut buf, &mut len, b" 0x");
                let mut h = [0u8; 16];
                push(
                    &mut buf,
                    &mut len,
                    hex(u64::from_ne_bytes(v.to_ne_bytes()), &mut h),
                );
            }
        }
        push(&mut buf, &mut len, b"; answered ENOSYS\n");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: for an SA_SIGINFO handler `ctx` is the interrupted
        // context; RAX holds the system call's return value on x86_64.
        unsafe {
            let uc = ctx.cast::<libc::ucontext_t>();
            let rax = usize::try_from(libc::REG_RAX).unwrap_or(0);
            (*uc).uc_mcontext.gregs[rax] = -libc::greg_t::from(libc::ENOSYS);
        }
    } else {
        push(
            &mut buf,
            &mut len,
            b"sandbox (learning mode): SIGSYS not raised by the filter; ignored\n",
        );
    }
    let _ = ctx;
    let aside = naming
        .filter(|n| n.syscall == "write")
        .map(|_| Aside::decode(ASIDE.load(std::sync::atomic::Ordering::SeqCst)));
    if let Some(Aside::Writev(fd)) = aside {
        // The rule under check is write's: a write from here would trap
        // again with SIGSYS blocked, and the kernel would kill the process
        // before the call was named.
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: len,
        };
        // SAFETY: writev(2) is async-signal-safe; one live iovec.
        unsafe { libc::writev(fd, &iov, 1) };
    } else if let Some(Aside::Write(fd)) = aside {
        // [`Aside::WriteAvoiding`]: if the call being named was a write to
        // `fd`, the namer traps writes to `fd`: the other descriptor then.
        let other = ASIDE_ELSE.load(std::sync::atomic::Ordering::SeqCst);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: for an SA_SIGINFO handler `ctx` is the interrupted
        // context; RDI holds the first argument (the descriptor of a write).
        let to_fd = unsafe {
            let regs = &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs;
            usize::try_from(libc::REG_RDI)
                .ok()
                .and_then(|i| regs.get(i).copied())
                == Some(libc::greg_t::from(fd))
        };
        #[cfg(not(target_arch = "x86_64"))]
        let to_fd = true;
        let fd = match c_int::try_from(other) {
            Ok(other) if other >= 0 && to_fd => other,
            _ => fd,
        };
        // SAFETY: write(2) is async-signal-safe; the buffer is live and `len` long.
        unsafe { libc::write(fd, buf.as_ptr().cast(), len) };
    } else {
        // SAFETY: write(2) is async-signal-safe; the buffer is live and `len` long.
        unsafe { libc::write(2, buf.as_ptr().cast(), len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_only_enforce_kills() {
        for m in [Mode::Enforce, Mode::Trap, Mode::Log] {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
        }
        assert_eq!(Mode::parse("kill"), None);
        assert!(
            !Mode::Enforce.is_learning() && Mode::Trap.is_learning() && Mode::Log.is_learning()
        );
    }

    #[test]
    fn the_name_table_is_there() {
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(syscall_name(202), Some("futex"));
            assert_eq!(syscall_number("getppid"), Some(110));
        }
    }

    #[test]
    fn decimal_formatting() {
        let mut d = [0u8; 10];
        assert_eq!(decimal(0, &mut d), b"0");
        assert_eq!(decimal(447, &mut d), b"447");
        assert_eq!(decimal(u32::MAX, &mut d), b"4294967295");
    }

    fn insn(code: u16, k: u32) -> sock_filter {
        sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn slots(list: &[u32]) -> Vec<u8> {
        list.iter().flat_map(|i| i.to_le_bytes()).collect()
    }

    /// load arg0 (low word); jeq own pid; jeq SIGABRT; ret allow; ret kill.
    fn pinned() -> BpfProgram {
        vec![
            insn(0x20, 16),
            insn(JEQ_K, 0),
            insn(JEQ_K, 6),
            insn(0x06, 0x7fff_0000),
            insn(0x06, 0x8000_0000),
        ]
    }

    #[test]
    fn the_pid_goes_into_the_listed_slots_and_nowhere_else() {
        let mut p = pinned();
        patch_pid(&mut p, &slots(&[1]), 4242).unwrap();
        let mut want = pinned();
        want[1].k = 4242;
        assert_eq!(p, want);
        // No slots: nothing changes.
        let mut p = pinned();
        patch_pid(&mut p, &[], 4242).unwrap();
        assert_eq!(p, pinned());
        // The embedded form, through the byte decoders.
        let bytes: Vec<u8> = pinned()
            .iter()
            .flat_map(|i| {
                let mut b = i.code.to_le_bytes().to_vec();
                b.extend([i.jt, i.jf]);
                b.extend(i.k.to_le_bytes());
                b
            })
            .collect();
        let slot_bytes = slots(&[1]);
        assert_eq!(pid_slots(&slot_bytes).unwrap(), vec![1]);
        let mut p = program(&bytes).unwrap();
        patch_pid(&mut p, &slot_bytes, 77).unwrap();
        assert_eq!(p[1].k, 77);
        // Without a program, a listed slot is out of range.
        assert!(matches!(
            patch_pid(&mut BpfProgram::new(), &slot_bytes, 77),
            Err(SandboxError::SlotOutOfRange { index: 1, len: 0 })
        ));
    }

    #[test]
    fn a_slot_that_is_not_a_zero_jeq_is_refused() {
        let cases: [(&[u32], &str); 5] = [
            (&[0], "a load"),
            (&[2], "a JEQ with a constant already in it"),
            (&[3], "a return"),
            (&[1, 1], "the same slot twice"),
            (&[5], "past the end"),
        ];
        for (list, what) in cases {
            let mut p = pinned();
            let e = patch_pid(&mut p, &slots(list), 4242).unwrap_err();
            match (list, &e) {
                ([5], SandboxError::SlotOutOfRange { index: 5, len: 5 }) => {}
                ([5], _) => panic!("{what}: {e:?}"),
                (_, SandboxError::BadSlot { .. }) => {}
                _ => panic!("{what}: {e:?}"),
            }
            assert!(e.to_string().contains("slot"), "{e}");
        }
        let mut p = pinned();
        assert!(matches!(
            patch_pid(&mut p, &[1, 0, 0], 4242),
            Err(SandboxError::CorruptSlots { len: 3 })
        ));
        assert_eq!(p, pinned(), "a corrupt list patches nothing");
    }

    #[test]
    fn a_corrupt_program_is_refused() {
        assert!(matches!(
            program(&[1, 2, 3]),
            Err(SandboxError::Corrupt { .. })
        ));
        assert!(matches!(program(&[]), Err(SandboxError::Corrupt { .. })));
    }
}
