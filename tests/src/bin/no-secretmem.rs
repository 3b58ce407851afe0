//! Runs a program on a "kernel without secret memory": `memfd_secret`
//! (system call 447 on x86_64) answers ENOSYS, as on a kernel built without
//! `CONFIG_SECRETMEM`, for this process and everything it starts (a seccomp
//! filter is inherited across fork and exec, and stacks under the
//! programs' own). Every other call is allowed.
//!
//! ```text
//! no-secretmem PROGRAM [ARGS...]
//! ```

use std::os::unix::process::CommandExt;

/// `AUDIT_ARCH_X86_64`.
const ARCH_X86_64: u32 = 0xC000_003E;
/// `memfd_secret` on x86_64.
const MEMFD_SECRET: u32 = 447;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: no-secretmem PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let code = |c: u32| u16::try_from(c).expect("a BPF opcode fits 16 bits");
    let ld = code(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS);
    let jeq = code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K);
    let ret = code(libc::BPF_RET | libc::BPF_K);
    let mut filter = [
        // seccomp_data.arch: another architecture is let through untouched.
        insn(ld, 0, 0, 4),
        insn(jeq, 0, 3, ARCH_X86_64),
        // seccomp_data.nr
        insn(ld, 0, 0, 0),
        insn(jeq, 0, 1, MEMFD_SECRET),
        insn(
            ret,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS.unsigned_abs(),
        ),
        insn(ret, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).expect("six instructions"),
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with plain integer arguments, then with a pointer to
    // `prog`, which points to `filter`; both live across the calls, and the
    // kernel copies the program.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            eprintln!(
                "no-secretmem: cannot install the filter: {}",
                std::io::Error::last_os_error()
            );
            std::process::exit(2);
        }
    }
    let e = std::process::Command::new(program).args(rest).exec();
    eprintln!("no-secretmem: cannot run {program}: {e}");
    std::process::exit(2);
}
