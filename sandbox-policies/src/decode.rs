//! Names for argument values, so that a review reads `PROT_EXEC` and
//! `FUTEX_WAIT_PRIVATE` instead of 4 and 128. The values are the x86_64
//! Linux UAPI constants.

/// How to name the values of one argument.
#[derive(Debug, Clone, Copy)]
pub enum Decoder {
    /// A bit set: each set bit has a name.
    Flags(&'static [(u64, &'static str)]),
    /// One of several values.
    Values(&'static [(u64, &'static str)]),
    /// A futex operation: a command plus the PRIVATE and CLOCK_REALTIME bits.
    FutexOp,
    /// A plain number.
    Number,
}

const PROT: &[(u64, &str)] = &[
    (0x1, "PROT_READ"),
    (0x2, "PROT_WRITE"),
    (0x4, "PROT_EXEC"),
    (0x8, "PROT_SEM"),
    (0x0100_0000, "PROT_GROWSDOWN"),
    (0x0200_0000, "PROT_GROWSUP"),
];
const MAP: &[(u64, &str)] = &[
    (0x1, "MAP_SHARED"),
    (0x2, "MAP_PRIVATE"),
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"),
    (0x80000, "MAP_SYNC"),
    (0x0010_0000, "MAP_FIXED_NOREPLACE"),
];
const MREMAP: &[(u64, &str)] = &[
    (0x1, "MREMAP_MAYMOVE"),
    (0x2, "MREMAP_FIXED"),
    (0x4, "MREMAP_DONTUNMAP"),
];
const MADV: &[(u64, &str)] = &[
    (0, "MADV_NORMAL"),
    (1, "MADV_RANDOM"),
    (2, "MADV_SEQUENTIAL"),
    (3, "MADV_WILLNEED"),
    (4, "MADV_DONTNEED"),
    (8, "MADV_FREE"),
    (9, "MADV_REMOVE"),
    (10, "MADV_DONTFORK"),
    (11, "MADV_DOFORK"),
    (12, "MADV_MERGEABLE"),
    (13, "MADV_UNMERGEABLE"),
    (14, "MADV_HUGEPAGE"),
    (15, "MADV_NOHUGEPAGE"),
    (16, "MADV_DONTDUMP"),
    (17, "MADV_DODUMP"),
    (18, "MADV_WIPEONFORK"),
    (19, "MADV_KEEPONFORK"),
    (20, "MADV_COLD"),
    (21, "MADV_PAGEOUT"),
];
const GRND: &[(u64, &str)] = &[
    (0x1, "GRND_NONBLOCK"),
    (0x2, "GRND_RANDOM"),
    (0x4, "GRND_INSECURE"),
];
const FD: &[(u64, &str)] = &[
    (0, "stdin"),
    (1, "stdout"),
    (2, "stderr"),
    (3, "fd 3 (the ring)"),
];
/// Signal numbers (x86_64).
pub const SIGNALS: &[(u64, &str)] = &[
    (0, "0 (existence check)"),
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (11, "SIGSEGV"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
    (17, "SIGCHLD"),
    (18, "SIGCONT"),
    (19, "SIGSTOP"),
    (20, "SIGTSTP"),
    (31, "SIGSYS"),
];
const SIGPROCMASK_HOW: &[(u64, &str)] = &[(0, "SIG_BLOCK"), (1, "SIG_UNBLOCK"), (2, "SIG_SETMASK")];
const IOCTL: &[(u64, &str)] = &[
    (0x5401, "TCGETS"),
    (0x5402, "TCSETS"),
    (0x5403, "TCSETSW"),
    (0x5404, "TCSETSF"),
    (0x540F, "TIOCGPGRP"),
    (0x5413, "TIOCGWINSZ"),
    (0x541B, "FIONREAD"),
    (0x5421, "FIONBIO"),
];
const WAIT: &[(u64, &str)] = &[
    (0x1, "WNOHANG"),
    (0x2, "WUNTRACED"),
    (0x8, "WCONTINUED"),
    (0x0100_0000, "WNOWAIT"),
    (0x4000_0000, "__WALL"),
    (0x8000_0000, "__WCLONE"),
];
const CLONE: &[(u64, &str)] = &[
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x0010_0000, "CLONE_PARENT_SETTID"),
    (0x0020_0000, "CLONE_CHILD_CLEARTID"),
    (0x0040_0000, "CLONE_DETACHED"),
    (0x0080_0000, "CLONE_UNTRACED"),
    (0x0100_0000, "CLONE_CHILD_SETTID"),
    (0x0200_0000, "CLONE_NEWCGROUP"),
    (0x0400_0000, "CLONE_NEWUTS"),
    (0x0800_0000, "CLONE_NEWIPC"),
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
    (0x8000_0000, "CLONE_IO"),
];
const FUTEX_CMDS: &[(u64, &str)] = &[
    (0, "FUTEX_WAIT"),
    (1, "FUTEX_WAKE"),
    (2, "FUTEX_FD"),
    (3, "FUTEX_REQUEUE"),
    (4, "FUTEX_CMP_REQUEUE"),
    (5, "FUTEX_WAKE_OP"),
    (6, "FUTEX_LOCK_PI"),
    (7, "FUTEX_UNLOCK_PI"),
    (8, "FUTEX_TRYLOCK_PI"),
    (9, "FUTEX_WAIT_BITSET"),
    (10, "FUTEX_WAKE_BITSET"),
    (11, "FUTEX_WAIT_REQUEUE_PI"),
    (12, "FUTEX_CMP_REQUEUE_PI"),
    (13, "FUTEX_LOCK_PI2"),
];
const FUTEX_PRIVATE: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

/// The name and decoder of argument `index` of `syscall`.
pub fn argument(syscall: &str, index: u8) -> (&'static str, Decoder) {
    use Decoder::*;
    match (syscall, index) {
        ("mmap", 2) | ("mprotect", 2) | ("pkey_mprotect", 2) => ("prot", Flags(PROT)),
        ("mmap", 3) => ("flags", Flags(MAP)),
        ("mmap", 4) => ("fd", Number),
        ("mremap", 3) => ("flags", Flags(MREMAP)),
        ("madvise", 2) => ("advice", Values(MADV)),
        ("getrandom", 2) => ("flags", Flags(GRND)),
        ("futex", 1) => ("op", FutexOp),
        ("read" | "write" | "close" | "fcntl" | "ioctl" | "fstat" | "readv" | "writev", 0) => {
            ("fd", Values(FD))
        }
        ("ioctl", 1) => ("request", Values(IOCTL)),
        ("kill", 0) => ("pid", Number),
        ("tkill", 0) => ("tid", Number),
        ("tgkill" | "rt_sigqueueinfo" | "rt_tgsigqueueinfo", 0) => ("tgid", Number),
        ("tgkill" | "rt_tgsigqueueinfo", 1) => ("tid", Number),
        ("kill" | "tkill" | "rt_sigqueueinfo" | "pidfd_send_signal", 1) => ("sig", Values(SIGNALS)),
        ("tgkill" | "rt_tgsigqueueinfo", 2) => ("sig", Values(SIGNALS)),
        ("rt_sigqueueinfo", 2) | ("rt_tgsigqueueinfo", 3) => ("info", Number),
        ("pidfd_send_signal", 0) => ("pidfd", Number),
        ("pidfd_send_signal", 2) => ("info", Number),
        ("pidfd_send_signal", 3) => ("flags", Number),
        ("rt_sigaction", 0) => ("signum", Values(SIGNALS)),
        ("rt_sigprocmask", 0) => ("how", Values(SIGPROCMASK_HOW)),
        ("wait4", 2) => ("options", Flags(WAIT)),
        ("clone", 0) => ("flags", Flags(CLONE)),
        ("mlock" | "munlock" | "munmap", 1) | ("mmap" | "mprotect" | "madvise", 1) => {
            ("len", Number)
        }
        _ => ("", Number),
    }
}

/// Names `value` with `decoder`: `PROT_READ|PROT_WRITE (0x3)`.
pub fn name_value(decoder: Decoder, value: u64) -> String {
    match decoder {
        Decoder::Number => value.to_string(),
        Decoder::Values(table) => match table.iter().find(|(v, _)| *v == value) {
            Some((_, n)) => format!("{n} ({value})"),
            None => value.to_string(),
        },
        Decoder::Flags(table) => {
            if value == 0 {
                return "0".into();
            }
            let mut names = Vec::new();
            let mut rest = value;
            for (bit, n) in table {
                if value & bit == *bit {
                    names.push(*n);
                    rest &= !bit;
                }
            }
            if rest != 0 {
                names.push("unknown bits");
            }
            format!("{} ({value:#x})", names.join("|"))
        }
        Decoder::FutexOp => {
            let cmd = value & !(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME);
            let Some((_, base)) = FUTEX_CMDS.iter().find(|(v, _)| *v == cmd) else {
                return value.to_string();
            };
            let mut s = (*base).to_owned();
            if value & FUTEX_PRIVATE != 0 {
                s.push_str("_PRIVATE");
            }
            if value & FUTEX_CLOCK_REALTIME != 0 {
                s.push_str("|FUTEX_CLOCK_REALTIME");
            }
            format!("{s} ({value})")
        }
    }
}

/// Names only the bits of `mask` (for `masked_eq`): `PROT_EXEC`.
pub fn name_mask(decoder: Decoder, mask: u64) -> String {
    match decoder {
        Decoder::Flags(_) => {
            let full = name_value(decoder, mask);
            full.split(" (").next().unwrap_or(&full).to_owned()
        }
        _ => format!("{mask:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_named() {
        assert_eq!(
            name_value(argument("mmap", 2).1, 3),
            "PROT_READ|PROT_WRITE (0x3)"
        );
        assert_eq!(
            name_value(argument("futex", 1).1, 128),
            "FUTEX_WAIT_PRIVATE (128)"
        );
        assert_eq!(name_value(argument("futex", 1).1, 1), "FUTEX_WAKE (1)");
        assert_eq!(
            name_value(argument("futex", 1).1, 393),
            "FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME (393)"
        );
        assert_eq!(name_value(argument("madvise", 2).1, 4), "MADV_DONTNEED (4)");
        assert_eq!(name_value(argument("tgkill", 2).1, 6), "SIGABRT (6)");
        assert_eq!(argument("tgkill", 0).0, "tgid");
        assert_eq!(argument("pidfd_send_signal", 0).0, "pidfd");
        assert_eq!(
            name_value(argument("pidfd_send_signal", 1).1, 9),
            "SIGKILL (9)"
        );
        assert_eq!(argument("pidfd_send_signal", 2).0, "info");
        assert_eq!(argument("pidfd_send_signal", 3).0, "flags");
        assert_eq!(name_mask(argument("mprotect", 2).1, 4), "PROT_EXEC");
        assert_eq!(
            name_value(argument("clone", 0).1, 0x10000 | 0x100),
            "CLONE_VM|CLONE_THREAD (0x10100)"
        );
        assert_eq!(name_value(argument("nothing", 0).1, 7), "7");
    }
}
