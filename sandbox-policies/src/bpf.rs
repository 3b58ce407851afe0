//! Classic BPF as seccomp runs it: the instruction format, an interpreter
//! for the subset of instructions the kernel accepts in a seccomp filter,
//! evaluated over `struct seccomp_data`, and the rule by which the kernel
//! combines the results of several filters.
//!
//! Written from the kernel's definitions (`include/uapi/linux/filter.h`,
//! `bpf_common.h`, `seccomp.h`, and `seccomp_check_filter` and
//! `seccomp_run_filters` in `kernel/seccomp.c`), not from seccompiler:
//! `policy verify` uses it to evaluate the programs the kernel holds
//! without trusting the compiler that produced them.

use std::fmt;

/// One instruction, `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Bytes per instruction in the stored form (code u16, jt u8, jf u8, k u32,
/// little-endian: the layout of `struct sock_filter` on x86_64).
pub const INSN_LEN: usize = 8;

/// Decodes a stored program; `None` if the length is not a whole number of
/// instructions.
pub fn decode(bytes: &[u8]) -> Option<Vec<Insn>> {
    if bytes.len() % INSN_LEN != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(INSN_LEN)
            .map(|c| Insn {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// The stored form of `prog`: what the build embeds and what is hashed.
pub fn encode(prog: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * INSN_LEN);
    for i in prog {
        out.extend_from_slice(&i.code.to_le_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_le_bytes());
    }
    out
}

/// `AUDIT_ARCH_X86_64`: the architecture the policies are written for.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`: 32-bit x86 system calls (`int 0x80`) on an x86_64 kernel.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`: x32 system calls arrive as x86_64 with this bit set
/// in the number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `sizeof(struct seccomp_data)`.
pub const SECCOMP_DATA_LEN: u32 = 64;

/// `struct seccomp_data`: what a filter sees of a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeccompData {
    /// The system call number (an `int`; kept as its bits).
    pub nr: u32,
    /// `AUDIT_ARCH_*`.
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

impl SeccompData {
    /// An x86_64 call with the given number and arguments.
    pub fn x86_64(nr: u32, args: [u64; 6]) -> Self {
        Self {
            nr,
            arch: AUDIT_ARCH_X86_64,
            instruction_pointer: 0,
            args,
        }
    }

    /// The 32-bit word at byte offset `off`, as `BPF_LD|BPF_W|BPF_ABS`
    /// loads it on a little-endian machine: `nr` at 0, `arch` at 4, the
    /// instruction pointer at 8, argument i at 16 + 8i (low half first).
    pub fn word(&self, off: u32) -> Option<u32> {
        let lo = |v: u64| u32::try_from(v & 0xffff_ffff).unwrap_or(0);
        let hi = |v: u64| u32::try_from(v >> 32).unwrap_or(0);
        if off % 4 != 0 || off >= SECCOMP_DATA_LEN {
            return None;
        }
        Some(match off {
            0 => self.nr,
            4 => self.arch,
            8 => lo(self.instruction_pointer),
            12 => hi(self.instruction_pointer),
            _ => {
                let i = usize::try_from((off - 16) / 8).ok()?;
                if (off - 16) % 8 == 0 {
                    lo(self.args[i])
                } else {
                    hi(self.args[i])
                }
            }
        })
    }
}

/// Why the interpreter could not run a program to a return. The kernel
/// refuses such a program when it is installed, so a filter the kernel
/// holds should never cause one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An instruction outside the seccomp subset (or a malformed one: a
    /// load outside `seccomp_data`, a memory slot past 15, a shift by 32 or
    /// more, a division by a constant 0).
    Refused { pc: usize, code: u16, k: u32 },
    /// A jump past the end, or the end reached without a return.
    OutOfRange { pc: usize },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { pc, code, k } => write!(
                f,
                "instruction {pc} (code {code:#06x}, k {k:#x}) is not one seccomp accepts"
            ),
            Self::OutOfRange { pc } => write!(f, "the program runs past its end at {pc}"),
        }
    }
}

impl std::error::Error for Fault {}

// Instruction classes and fields (include/uapi/linux/bpf_common.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;

/// Scratch memory words (`BPF_MEMWORDS`).
const MEMWORDS: usize = 16;

/// Runs `prog` over `data` and returns its `SECCOMP_RET_*` value. Only what
/// `seccomp_check_filter` lets into a filter is executed: loads of
/// `seccomp_data` words (`ld [k]`), of its length and of constants, the
/// scratch memory, the ALU operations add, sub, mul, div, and, or, xor,
/// lsh, rsh and neg, the jumps ja, jeq, jgt, jge and jset, tax, txa and the
/// returns. Anything else is a [`Fault`].
pub fn run(prog: &[Insn], data: &SeccompData) -> Result<u32, Fault> {
    let mut a: u32 = 0;
    let mut x: u32 = 0;
    let mut mem = [0u32; MEMWORDS];
    let mut pc = 0usize;
    loop {
        let insn = *prog.get(pc).ok_or(Fault::OutOfRange { pc })?;
        let refused = Fault::Refused {
            pc,
            code: insn.code,
            k: insn.k,
        };
        let slot = || {
            usize::try_from(insn.k)
                .ok()
                .filter(|&i| i < MEMWORDS)
                .ok_or(refused.clone())
        };
        pc += 1;
        match insn.code & 0x07 {
            LD => match insn.code {
                // BPF_LD|BPF_W|BPF_ABS
                0x20 => a = data.word(insn.k).ok_or(refused.clone())?,
                // BPF_LD|BPF_W|BPF_LEN
                0x80 => a = SECCOMP_DATA_LEN,
                // BPF_LD|BPF_IMM
                0x00 => a = insn.k,
                // BPF_LD|BPF_MEM
                0x60 => a = mem[slot()?],
                _ => return Err(refused),
            },
            LDX => match insn.code {
                // BPF_LDX|BPF_W|BPF_LEN
                0x81 => x = SECCOMP_DATA_LEN,
                // BPF_LDX|BPF_IMM
                0x01 => x = insn.k,
                // BPF_LDX|BPF_MEM
                0x61 => x = mem[slot()?],
                _ => return Err(refused),
            },
            ST if insn.code == ST => mem[slot()?] = a,
            STX if insn.code == STX => mem[slot()?] = x,
            ALU => {
                let from_x = insn.code & 0x08 != 0;
                let src = if from_x { x } else { insn.k };
                a = match insn.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 if from_x && src == 0 => {
                        // A division by a zero X ends the program with 0
                        // (the kernel's classic-to-eBPF translation).
                        return Ok(0);
                    }
                    0x30 if src == 0 => return Err(refused),
                    0x30 => a / src,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 | 0x70 if !from_x && src >= 32 => return Err(refused),
                    0x60 => a.wrapping_shl(src),
                    0x70 => a.wrapping_shr(src),
                    0x80 if !from_x => a.wrapping_neg(),
                    0xa0 => a ^ src,
                    _ => return Err(refused),
                };
            }
            JMP => {
                let src = if insn.code & 0x08 != 0 { x } else { insn.k };
                let taken = match insn.code & 0xf0 {
                    0x00 if insn.code & 0x08 == 0 => {
                        let off = usize::try_from(insn.k).map_err(|_| refused.clone())?;
                        pc = pc.checked_add(off).ok_or(refused)?;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    _ => return Err(refused),
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            RET => match insn.code {
                // BPF_RET|BPF_K
                0x06 => return Ok(insn.k),
                // BPF_RET|BPF_A
                0x16 => return Ok(a),
                _ => return Err(refused),
            },
            MISC => match insn.code {
                // BPF_MISC|BPF_TAX
                0x07 => x = a,
                // BPF_MISC|BPF_TXA
                0x87 => a = x,
                _ => return Err(refused),
            },
            _ => return Err(refused),
        }
    }
}

// SECCOMP_RET_* (include/uapi/linux/seccomp.h).
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_ACTION_FULL`.
pub const RET_ACTION_FULL: u32 = 0xffff_0000;
/// `SECCOMP_RET_DATA`.
pub const RET_DATA: u32 = 0x0000_ffff;

/// `ACTION_ONLY()` of `kernel/seccomp.c`: the action bits as a signed
/// number; the lower, the more restrictive (kill_process is negative).
fn action_rank(ret: u32) -> i32 {
    i32::from_ne_bytes((ret & RET_ACTION_FULL).to_ne_bytes())
}

/// What the kernel does with the results of several filters
/// (`seccomp_run_filters`): it runs them from the newest to the oldest and
/// keeps a result only if its action is strictly more restrictive than the
/// one kept so far, starting from allow. So the most restrictive action
/// wins, and among equal actions the newest filter's data (an errno value).
pub fn combine(oldest_first: &[u32]) -> u32 {
    let mut ret = RET_ALLOW;
    for &cur in oldest_first.iter().rev() {
        if action_rank(cur) < action_rank(ret) {
            ret = cur;
        }
    }
    ret
}

/// Names of the errno values a policy may plausibly return (x86_64).
const ERRNO_NAMES: &[(u32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (22, "EINVAL"),
    (25, "ENOTTY"),
    (38, "ENOSYS"),
    (95, "EOPNOTSUPP"),
    (97, "EAFNOSUPPORT"),
];

/// An errno value by name and number: `ENOSYS (38)`.
pub fn errno_name(n: u32) -> String {
    match ERRNO_NAMES.iter().find(|(v, _)| *v == n) {
        Some((_, name)) => format!("{name} ({n})"),
        None => n.to_string(),
    }
}

/// A `SECCOMP_RET_*` value in words, in the JSON's vocabulary:
/// `allow`, `errno ENOSYS (38)`, `kill_process`.
pub fn describe(ret: u32) -> String {
    let data = ret & RET_DATA;
    match ret & RET_ACTION_FULL {
        RET_KILL_PROCESS if data == 0 => "kill_process".into(),
        RET_KILL_THREAD if data == 0 => "kill_thread".into(),
        RET_TRAP if data == 0 => "trap".into(),
        RET_TRAP => format!("trap (data {data})"),
        RET_ERRNO => format!("errno {}", errno_name(data)),
        RET_USER_NOTIF => "user_notif".into(),
        RET_TRACE => format!("trace {data}"),
        RET_LOG if data == 0 => "log".into(),
        RET_ALLOW if data == 0 => "allow".into(),
        _ => format!("{ret:#010x} (not an action of the JSON's; the kernel kills)"),
    }
}

/// Where the accumulator's value may come from at an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// A constant (the initial 0, `ld #k`, `ld len`).
    Constant,
    /// The `seccomp_data` word at this offset, unchanged.
    Word(u32),
    /// That word and'ed with a constant mask (`and #k`, how seccompiler
    /// tests masked_eq and "has no bit" conditions).
    Masked(u32, u32),
}

/// Every value worth trying at each word `prog` decides on: `(offset, v)`
/// for each conditional jump on a constant `k` where the accumulator may
/// hold the `seccomp_data` word at `offset` (on any path: classic BPF jumps
/// only forward, so one pass in order sees every path): `k` itself, and for
/// a masked word also `k` with each bit of the mask flipped and with every
/// bit outside the mask set. An evaluation that tries each such value (and
/// its neighbours) reaches every decision the program makes on one word.
///
/// Refused, with the reason: a program that computes on loaded data in any
/// other way (an ALU operation but `and #k`, the X register, scratch
/// memory, or returning the accumulator while it may hold data).
/// seccompiler's programs only load a word, mask it and compare it with
/// constants; anything else could hide a decision from a boundary-value
/// evaluation.
pub fn comparisons(prog: &[Insn]) -> Result<Vec<(u32, u32)>, String> {
    use std::collections::BTreeSet;
    let mut states: Vec<BTreeSet<Source>> = vec![BTreeSet::new(); prog.len() + 1];
    if let Some(first) = states.first_mut() {
        first.insert(Source::Constant);
    }
    let mut found = BTreeSet::new();
    for (pc, insn) in prog.iter().enumerate() {
        let here = std::mem::take(&mut states[pc]);
        if here.is_empty() {
            continue; // not reachable
        }
        let holds_data = here.iter().any(|s| !matches!(s, Source::Constant));
        let refuse = |what: &str| {
            Err(format!(
                "instruction {pc} (code {:#06x}) {what}: the check follows only loads of seccomp_data words compared with constants",
                insn.code
            ))
        };
        let mut flow = |to: usize, st: &BTreeSet<Source>| -> Result<(), String> {
            states
                .get_mut(to)
                .map(|s| s.extend(st.iter().copied()))
                .ok_or_else(|| format!("instruction {pc} jumps past the end"))
        };
        let next = |s: Source| BTreeSet::from([s]);
        match insn.code & 0x07 {
            LD => match insn.code {
                0x20 => flow(pc + 1, &next(Source::Word(insn.k)))?,
                0x00 | 0x80 => flow(pc + 1, &next(Source::Constant))?,
                _ => return refuse("loads from scratch memory"),
            },
            LDX | MISC if insn.code == 0x87 => return refuse("moves X into the accumulator"),
            LDX | MISC => {
                if holds_data && insn.code == 0x07 {
                    return refuse("moves loaded data into X");
                }
                flow(pc + 1, &here)?;
            }
            ST | STX => {
                if holds_data {
                    return refuse("stores loaded data in scratch memory");
                }
                flow(pc + 1, &here)?;
            }
            ALU if insn.code == 0x54 => {
                // and #k
                let masked = here
                    .iter()
                    .map(|s| match *s {
                        Source::Constant => Source::Constant,
                        Source::Word(off) => Source::Masked(off, insn.k),
                        Source::Masked(off, m) => Source::Masked(off, m & insn.k),
                    })
                    .collect();
                flow(pc + 1, &masked)?;
            }
            ALU => {
                if holds_data {
                    return refuse("computes on loaded data");
                }
                flow(pc + 1, &here)?;
            }
            JMP => {
                let op = insn.code & 0xf0;
                if op == 0x00 {
                    let to = usize::try_from(insn.k)
                        .ok()
                        .and_then(|k| (pc + 1).checked_add(k))
                        .ok_or_else(|| format!("instruction {pc} jumps past the end"))?;
                    flow(to, &here)?;
                    continue;
                }
                if insn.code & 0x08 != 0 && holds_data {
                    return refuse("compares loaded data with X");
                }
                for s in &here {
                    match *s {
                        Source::Constant => {}
                        Source::Word(off) => {
                            found.insert((off, insn.k));
                        }
                        Source::Masked(off, m) => {
                            found.insert((off, insn.k));
                            found.insert((off, insn.k | !m));
                            for bit in (0..32).map(|b| 1u32 << b).filter(|b| m & b != 0) {
                                found.insert((off, insn.k ^ bit));
                            }
                        }
                    }
                }
                flow(pc + 1 + usize::from(insn.jt), &here)?;
                flow(pc + 1 + usize::from(insn.jf), &here)?;
            }
            RET => {
                if insn.code != 0x06 && holds_data {
                    return refuse("returns loaded data as its result");
                }
            }
            _ => return refuse("is not one seccomp accepts"),
        }
    }
    Ok(found.into_iter().collect())
}

/// The SHA-256 of a stored program (8 bytes per instruction, little-endian,
/// as `PTRACE_SECCOMP_GET_FILTER` returns it), as 64 lowercase hex digits:
/// the form `REVIEW.md` publishes and `policy verify` prints.
pub fn sha256_hex(stored: &[u8]) -> String {
    openssl::sha::sha256(stored)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(code: u16, k: u32) -> Insn {
        Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// arch check; allow read (0), errno 38 for 435 when arg0's low word is
    /// 7, kill anything else.
    fn sample() -> Vec<Insn> {
        vec![
            stmt(0x20, 4),
            jump(0x15, AUDIT_ARCH_X86_64, 1, 0),
            stmt(0x06, RET_KILL_PROCESS),
            stmt(0x20, 0),
            jump(0x15, 0, 0, 1),
            stmt(0x06, RET_ALLOW),
            jump(0x15, 435, 0, 3),
            stmt(0x20, 16),
            jump(0x15, 7, 0, 1),
            stmt(0x06, RET_ERRNO | 38),
            stmt(0x06, RET_KILL_PROCESS),
        ]
    }

    #[test]
    fn loads_jumps_and_returns() {
        let p = sample();
        let call = |nr, arg0| run(&p, &SeccompData::x86_64(nr, [arg0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(call(0, 0), RET_ALLOW);
        assert_eq!(call(435, 7), RET_ERRNO | 38);
        // Only the low word is compared.
        assert_eq!(call(435, 0xffff_ffff_0000_0007), RET_ERRNO | 38);
        assert_eq!(call(435, 8), RET_KILL_PROCESS);
        assert_eq!(call(1, 0), RET_KILL_PROCESS);
        let i386 = SeccompData {
            arch: AUDIT_ARCH_I386,
            ..SeccompData::x86_64(0, [0; 6])
        };
        assert_eq!(run(&p, &i386), Ok(RET_KILL_PROCESS));
        assert_eq!(decode(&encode(&p)).unwrap(), p);
        assert!(decode(&[0; 7]).is_none());
    }

    #[test]
    fn the_layout_of_seccomp_data() {
        let d = SeccompData {
            nr: 1,
            arch: 2,
            instruction_pointer: 0x0000_0004_0000_0003,
            args: [0x0000_0006_0000_0005, 0, 0, 0, 0, 0x0000_0010_0000_000f],
        };
        let words: Vec<Option<u32>> = [0, 4, 8, 12, 16, 20, 56, 60].map(|o| d.word(o)).to_vec();
        assert_eq!(
            words,
            [1, 2, 3, 4, 5, 6, 15, 16].map(Some).to_vec(),
            "nr, arch, ip lo/hi, arg0 lo/hi, arg5 lo/hi"
        );
        assert_eq!(d.word(64), None);
        assert_eq!(d.word(2), None);
    }

    #[test]
    fn alu_memory_and_misc() {
        // A = nr; A += 1; M[3] = A; X = 2; A = A * X (TAX/TXA round trip);
        // A = M[3] << 4; jset 0x10 → ret A, else ret 0.
        let p = vec![
            stmt(0x20, 0),
            stmt(0x04, 1),
            stmt(0x02, 3),
            stmt(0x01, 2),
            stmt(0x2c, 0),
            stmt(0x07, 0),
            stmt(0x87, 0),
            stmt(0x60, 3),
            stmt(0x64, 4),
            jump(0x45, 0x10, 0, 1),
            stmt(0x16, 0),
            stmt(0x06, 0),
        ];
        // nr 0: M[3] = 1, 1 << 4 = 0x10, jset taken: ret A = 0x10.
        assert_eq!(run(&p, &SeccompData::x86_64(0, [0; 6])), Ok(0x10));
        // nr 1: M[3] = 2, 0x20: jset not taken.
        assert_eq!(run(&p, &SeccompData::x86_64(1, [0; 6])), Ok(0));
        // ja skips, len loads 64, div by a zero X returns 0.
        let p = vec![
            stmt(0x05, 1),
            stmt(0x06, 1),
            stmt(0x80, 0),
            stmt(0x01, 0),
            stmt(0x3c, 0),
            stmt(0x16, 0),
        ];
        assert_eq!(run(&p, &SeccompData::x86_64(0, [0; 6])), Ok(0));
    }

    #[test]
    fn what_seccomp_refuses_is_a_fault() {
        let d = SeccompData::x86_64(0, [0; 6]);
        for bad in [
            vec![stmt(0x20, 64), stmt(0x06, 0)], // load past seccomp_data
            vec![stmt(0x20, 2), stmt(0x06, 0)],  // unaligned load
            vec![stmt(0x28, 0), stmt(0x06, 0)],  // half-word load
            vec![stmt(0x60, 16), stmt(0x06, 0)], // memory slot 16
            vec![stmt(0x34, 0), stmt(0x06, 0)],  // div by constant 0
            vec![stmt(0x64, 32), stmt(0x06, 0)], // shift by 32
            vec![stmt(0x94, 3), stmt(0x06, 0)],  // mod: not in seccomp's subset
            vec![stmt(0x0e, 0)],                 // return X
        ] {
            assert!(
                matches!(run(&bad, &d), Err(Fault::Refused { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(run(&[stmt(0x00, 1)], &d), Err(Fault::OutOfRange { pc: 1 }));
        assert_eq!(
            run(&[jump(0x15, 0, 5, 5), stmt(0x06, 0)], &d),
            Err(Fault::OutOfRange { pc: 6 })
        );
    }

    #[test]
    fn the_most_restrictive_result_wins_and_the_newest_among_equals() {
        let errno = |n| RET_ERRNO | n;
        assert_eq!(combine(&[]), RET_ALLOW);
        assert_eq!(combine(&[errno(38), RET_ALLOW]), errno(38));
        assert_eq!(combine(&[RET_ALLOW, errno(38)]), errno(38));
        assert_eq!(combine(&[errno(38), RET_KILL_PROCESS]), RET_KILL_PROCESS);
        assert_eq!(
            combine(&[RET_KILL_THREAD, RET_KILL_PROCESS]),
            RET_KILL_PROCESS
        );
        assert_eq!(combine(&[RET_TRAP, errno(1)]), RET_TRAP);
        assert_eq!(combine(&[RET_LOG, RET_ALLOW]), RET_LOG);
        // Equal actions: the newest (last installed) filter's data.
        assert_eq!(combine(&[errno(1), errno(38)]), errno(38));
        assert_eq!(combine(&[errno(38), errno(1)]), errno(1));
    }

    #[test]
    fn the_hash_is_sha256_of_the_stored_bytes() {
        // FIPS 180-4 example "abc", and the empty message.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn results_read_as_the_json_writes_them() {
        assert_eq!(describe(RET_ALLOW), "allow");
        assert_eq!(describe(RET_ERRNO | 38), "errno ENOSYS (38)");
        assert_eq!(describe(RET_ERRNO | 1000), "errno 1000");
        assert_eq!(describe(RET_KILL_PROCESS), "kill_process");
        assert_eq!(describe(RET_TRAP), "trap");
        assert_eq!(describe(RET_LOG), "log");
        assert!(describe(0x0001_0000).contains("not an action"));
    }
}
