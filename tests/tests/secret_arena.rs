//! Secret memory (`--secret-memory auto|require|off`).
//!
//! The vault's secure-heap arena on `memfd_secret` memory (`require`):
//! root cannot read it passively. Read as root through `/proc/PID/mem` it
//! gives EIO, through `process_vm_readv` EFAULT, through ptrace PEEKDATA
//! EIO; and the vault works as before, its lanes contending for OpenSSL's
//! locks (which stay in ordinary memory: the kernel's futex cannot reach
//! secret memory, and glibc aborts on that). Positive control: the same
//! vault with `off` (its arena in ordinary locked memory): each of the
//! three reads succeeds and finds bytes the vault wrote there, so the test
//! would see an arena left readable.
//!
//! The password lent to a `with_secret` closure is readable by root in
//! neither process, during the call or after it (`require`); with `off`
//! root reads it in the application's buffer during the call (positive
//! control).
//!
//! On a kernel that gives no secret memory (simulated: `no-secretmem` makes
//! `memfd_secret` answer ENOSYS for the demo and its vault), `require`
//! refuses before anything starts and `auto` falls back and says so; on
//! this kernel both use it for all three (the arena, the rings, the
//! broker's buffers), as the demo reports.

use suites::driver::Driver;
use suites::scan::{regions, Region};

/// The arena's readable parts: the run of adjacent never-dumped (`dd`)
/// anonymous or `/secretmem` mappings that spans exactly the arena's size
/// (the vault's status says it), split where the lanes' stacks have their
/// guard pages.
fn arena(d: &mut Driver) -> Vec<Region> {
    let status = d.ask("status");
    let size: u64 = status
        .split(' ')
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("status {status:?}"));
    let candidates: Vec<Region> = regions(d.vault)
        .expect("the vault's smaps")
        .into_iter()
        .filter(|r| {
            r.flags.iter().any(|f| f == "dd")
                && (r.path.is_empty() || r.path.starts_with("/secretmem"))
        })
        .collect();
    let mut runs: Vec<Vec<Region>> = Vec::new();
    for r in candidates {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|l| l.end == r.start) => run.push(r),
            _ => runs.push(vec![r]),
        }
    }
    let run = runs
        .into_iter()
        .find(|run| run.last().map_or(0, |l| l.end) - run[0].start == size)
        .unwrap_or_else(|| panic!("no run of mappings spans the arena's {size} bytes"));
    run.into_iter()
        .filter(|r| r.perms.starts_with('r'))
        .collect()
}

/// What reading `len` bytes at `addr` of `pid` gives, three ways: `Ok` with
/// the number of non-zero bytes, or the error number.
fn reads(pid: u32, addr: u64, len: usize) -> [Result<usize, i32>; 3] {
    use std::os::unix::fs::FileExt;
    let nonzero = |b: &[u8]| b.iter().filter(|&&x| x != 0).count();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut buf = vec![0u8; len];
    let proc_mem = mem
        .read_exact_at(&mut buf, addr)
        .map(|()| nonzero(&buf))
        .map_err(|e| e.raw_os_error().unwrap_or(-1));

    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    let pid_t = i32::try_from(pid).expect("pid");
    // SAFETY: reads into our own live buffer, described by `local`.
    let n = unsafe { libc::process_vm_readv(pid_t, &local, 1, &remote, 1, 0) };
    let vm_readv = if usize::try_from(n).is_ok_and(|n| n == len) {
        Ok(nonzero(&buf))
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    };

    let peek = peek_words(pid_t, addr, len / 8);
    [proc_mem, vm_readv, peek]
}

/// Reads `words` words at `addr` with ptrace PEEKDATA, attached (as root)
/// to the vault's main thread for the time of the reads.
fn peek_words(pid: i32, addr: u64, words: usize) -> Result<usize, i32> {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
    // SAFETY: ptrace requests on a process of the test; the tracee is
    // stopped by PTRACE_INTERRUPT and waited for before PEEKDATA, and
    // detached afterwards (it goes on running).
    unsafe {
        if libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) != 0 {
            panic!(
                "PTRACE_SEIZE of the vault: {}",
                std::io::Error::last_os_error()
            );
        }
        libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0);
        let mut status = 0;
        libc::waitpid(pid, &mut status, libc::__WALL);
        let mut result = Ok(0);
        for i in 0..words {
            *libc::__errno_location() = 0;
            let w = libc::ptrace(libc::PTRACE_PEEKDATA, pid, addr + 8 * i as u64, 0);
            if w == -1 && errno() != 0 {
                result = Err(errno());
                break;
            }
            if let Ok(n) = &mut result {
                *n += w.to_ne_bytes().iter().filter(|&&b| b != 0).count();
            }
        }
        libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
        result
    }
}

/// A driver and its vault with `--secret-memory setting`, having stored a
/// secret and read it on two threads at once (both lanes, OpenSSL's locks
/// contended).
fn driver(setting: &str) -> Driver {
    let mut d = Driver::start(None, &["--lanes", "2", "--secret-memory", setting], None);
    d.store(b"0123456789abcdef");
    assert_eq!(d.ask("preads 2 300"), "preads 2 300 9600");
    d
}

#[test]
fn root_cannot_read_an_arena_on_secret_memory_and_the_vault_works() {
    let mut d = driver("require");
    let parts = arena(&mut d);
    assert!(!parts.is_empty(), "no arena found");
    for r in &parts {
        assert!(
            r.path.starts_with("/secretmem"),
            "a part of the arena is not secret memory: {r:?}"
        );
        let got = reads(d.vault, r.start, 4096);
        assert_eq!(
            got,
            [Err(libc::EIO), Err(libc::EFAULT), Err(libc::EIO)],
            "{r:?}: /proc/PID/mem, process_vm_readv, PEEKDATA"
        );
    }
    // Still serving after the reads and the ptrace stop.
    assert_eq!(d.ask("read"), "read 16");
    assert_eq!(d.ask("shutdown"), "shutdown exited cleanly");
}

#[test]
fn positive_control_root_reads_an_arena_in_ordinary_memory() {
    let mut d = driver("off");
    let parts = arena(&mut d);
    assert!(!parts.is_empty(), "no arena found");
    let mut nonzero = [0usize; 3];
    for r in &parts {
        assert!(!r.path.starts_with("/secretmem"), "{r:?}");
        let len = usize::try_from(r.len().min(64 * 1024)).expect("length");
        for (i, got) in reads(d.vault, r.start, len).into_iter().enumerate() {
            nonzero[i] += got.unwrap_or_else(|e| panic!("{r:?}: read {i} failed: errno {e}"));
        }
    }
    assert!(
        nonzero.iter().all(|&n| n > 0),
        "each way should find bytes the vault wrote: {nonzero:?}"
    );
    assert_eq!(d.ask("shutdown"), "shutdown exited cleanly");
}

/// `broker demo --secret-memory SETTING` for one read, on this kernel or,
/// `without`, on one whose `memfd_secret` answers ENOSYS (`no-secretmem`).
/// Its exit status, standard output and standard error.
fn demo(without: bool, setting: &str) -> (Option<i32>, String, String) {
    use std::process::Command;
    let broker = suites::binary("broker");
    let mut args = suites::DEMO_ONE_READ.to_vec();
    args.extend(["--secret-memory", setting]);
    let mut cmd = if without {
        let mut c = Command::new(suites::binary("no-secretmem"));
        c.arg(&broker);
        c
    } else {
        Command::new(&broker)
    };
    suites::run_with_input(cmd.args(args), b"pw\n")
}

const ALL_SECRET: &str = "the vault's arena (the key): memfd_secret ✓; the rings: memfd_secret ✓; the broker's plaintext buffers: memfd_secret ✓";

#[test]
fn require_without_secret_memory_refuses_before_anything_starts() {
    let (code, out, err) = demo(true, "require");
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains(
            "secret memory was required, and the kernel gives none: memfd_secret is not available"
        ),
        "{err}"
    );
    assert!(!out.contains("vault pid"), "a vault was started:\n{out}");
}

#[test]
fn auto_without_secret_memory_falls_back_and_says_so() {
    let (code, out, err) = demo(true, "auto");
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("secret memory (auto): the vault's arena (the key): ordinary locked memory; the rings: ordinary locked memory; the broker's plaintext buffers: ordinary locked memory"),
        "{out}"
    );
    assert!(
        out.contains("NOT all secret memory (memfd_secret is not available"),
        "{out}"
    );
    assert!(
        err.contains("]: secret memory: not used for the arena (the kernel gives no secret memory"),
        "the vault says why for the arena:\n{err}"
    );
}

#[test]
fn positive_control_require_and_auto_on_this_kernel_use_secret_memory_for_all_three() {
    for setting in ["require", "auto"] {
        let (code, out, err) = demo(false, setting);
        assert_eq!(code, Some(0), "{setting}: {out}\n{err}");
        assert!(
            out.contains(&format!("secret memory ({setting}): {ALL_SECRET}")),
            "{setting}: {out}"
        );
    }
}

/// Where libc is mapped in `pid` (its mapping at file offset 0), and its
/// path.
fn libc_base(pid: u32) -> (u64, String) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    maps.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f.get(5)?;
            (path.contains("/libc.so") && f[2] == "00000000").then(|| {
                let start = f[0].split('-').next().unwrap_or("0");
                (
                    u64::from_str_radix(start, 16).unwrap_or(0),
                    (*path).to_owned(),
                )
            })
        })
        .unwrap_or_else(|| panic!("no libc in {pid}'s maps"))
}

/// Runs gdb on `pid` in batch mode with `commands`; its output.
fn gdb(pid: u32, commands: &[String]) -> String {
    let mut cmd = std::process::Command::new("gdb");
    cmd.args(["-q", "-nx", "-batch", "-p", &pid.to_string()]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = cmd
        .output()
        .expect("gdb (apt-get install gdb; .ci/run does)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A core of `pid` written by gdb's `gcore` with the mappings a core leaves
/// out (`MADV_DONTDUMP`, the arena's) forced in.
fn full_core(pid: u32, name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("privsep-{name}-{}.core", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let said = gdb(
        pid,
        &[
            "set dump-excluded-mappings on".into(),
            format!("gcore {}", path.display()),
        ],
    );
    assert!(path.is_file(), "gcore wrote no core:\n{said}");
    path
}

/// What root that may ptrace still does: gdb makes the vault itself copy
/// each readable part of its arena into a block of its ordinary heap
/// (`malloc`, `memcpy`: the vault can read its own secret memory), and
/// reads the copy. The addresses of the two functions are this process's,
/// moved to where the vault maps the same libc.
fn copied_out_by_the_vault(vault: u32, parts: &[Region]) -> Vec<Vec<u8>> {
    let (own_base, own_path) = libc_base(std::process::id());
    let (vault_base, vault_path) = libc_base(vault);
    assert_eq!(own_path, vault_path, "the same libc in both");
    let at = |f: usize| vault_base + (f as u64 - own_base);
    let malloc = at(libc::malloc as *const () as usize);
    let memcpy = at(libc::memcpy as *const () as usize);
    parts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let file = std::env::temp_dir().join(format!(
                "privsep-arena-{}-{i}.bin",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&file);
            let len = r.len();
            let said = gdb(
                vault,
                &[
                    format!("set $b = ((void*(*)(unsigned long)){malloc:#x})({len})"),
                    format!(
                        "call ((void*(*)(void*,void*,unsigned long)){memcpy:#x})($b, (void*){:#x}, {len})",
                        r.start
                    ),
                    format!("dump binary memory {} $b $b+{len}", file.display()),
                ],
            );
            let bytes = std::fs::read(&file)
                .unwrap_or_else(|e| panic!("no copy of {r:?}: {e}\n{said}"));
            let _ = std::fs::remove_file(&file);
            bytes
        })
        .collect()
}

fn memory_of(bytes: Vec<Vec<u8>>) -> suites::scan::Memory {
    suites::scan::Memory {
        pid: 0,
        regions: Vec::new(),
        bytes,
        failed: Vec::new(),
    }
}

/// How many times the numbers occur in `mem` and in `core`, big- and
/// little-endian, by name (those found only).
fn occurrences(
    private: &suites::keys::Private,
    mem: &suites::scan::Memory,
    core: &std::path::Path,
) -> Vec<String> {
    let mut found = Vec::new();
    for (name, v) in &private.numbers {
        let be = v.to_vec();
        let le = suites::keys::le(&be);
        let in_mem = mem.find(&be).len() + mem.find(&le).len();
        let in_core = suites::scan::find_in_file(core, &be).unwrap()
            + suites::scan::find_in_file(core, &le).unwrap();
        if in_mem + in_core > 0 {
            found.push(format!(
                "{name}: {in_mem} in readable memory, {in_core} in the core"
            ));
        }
    }
    found
}

#[test]
fn on_secret_memory_no_number_of_the_key_is_readable_nor_in_a_full_core_but_ptrace_takes_it() {
    let mut d = driver("require");
    let der = d.public_key();
    let rsa = openssl::rsa::Rsa::public_key_from_der(&der).unwrap();
    let half = usize::try_from(rsa.size()).unwrap() / 2;
    let parts = arena(&mut d);
    // Passive reads first: everything readable, and a core with the
    // excluded mappings forced in (gdb cannot read the arena, says so, and
    // writes the rest).
    let readable = suites::scan::read(d.vault).unwrap();
    assert!(
        suites::keys::factors(&readable, rsa.n(), half).is_empty(),
        "a prime of the key is in the vault's readable memory"
    );
    let core = full_core(d.vault, "vault-secret");
    // Then what no filter or secret memory stops: root that drives the
    // vault with ptrace. It is also how this test learns the key, to look
    // for every number of it where a passive read reaches.
    let copied = memory_of(copied_out_by_the_vault(d.vault, &parts));
    let primes = suites::keys::factors(&copied, rsa.n(), half);
    assert!(
        primes.len() >= 2,
        "the vault's own copy of its arena holds both primes"
    );
    let private = suites::keys::derive(rsa.n(), rsa.e(), &primes[0], &primes[1]);
    let found = occurrences(&private, &readable, &core);
    let _ = std::fs::remove_file(&core);
    assert!(
        found.is_empty(),
        "numbers of the key outside secret memory: {found:?}"
    );
    assert_eq!(d.ask("read"), "read 16", "the vault still serves");
}

#[test]
fn positive_control_off_a_full_core_and_readable_memory_hold_the_key() {
    let mut d = driver("off");
    let der = d.public_key();
    let rsa = openssl::rsa::Rsa::public_key_from_der(&der).unwrap();
    let half = usize::try_from(rsa.size()).unwrap() / 2;
    let readable = suites::scan::read(d.vault).unwrap();
    let primes = suites::keys::factors(&readable, rsa.n(), half);
    assert!(primes.len() >= 2, "both primes, read by root in the arena");
    let private = suites::keys::derive(rsa.n(), rsa.e(), &primes[0], &primes[1]);
    let core = full_core(d.vault, "vault-off");
    let in_core: usize = private
        .numbers
        .iter()
        .map(|(_, v)| {
            let be = v.to_vec();
            suites::scan::find_in_file(&core, &be).unwrap()
                + suites::scan::find_in_file(&core, &suites::keys::le(&be)).unwrap()
        })
        .sum();
    let _ = std::fs::remove_file(&core);
    assert!(
        in_core > 0,
        "a full core of an ordinary arena holds the key"
    );
    assert_eq!(d.ask("shutdown"), "shutdown exited cleanly");
}

/// How many times `secret` is found in all of the application's and the
/// vault's readable memory, during a `with_secret` call and after it.
fn password_found(setting: &str) -> [(usize, usize); 2] {
    let secret = suites::driver::canary("LENT-SECRET-");
    let mut d = Driver::start(None, &["--secret-memory", setting], None);
    d.store(&secret);
    let count = |d: &Driver| {
        let app = suites::scan::read(d.pid()).unwrap().find(&secret).len();
        let vault = suites::scan::read(d.vault).unwrap().find(&secret).len();
        (app, vault)
    };
    d.send("hold");
    assert_eq!(d.answer(), format!("holding {}", secret.len()));
    let during = count(&d);
    d.send("release");
    assert_eq!(d.answer(), format!("released {}", secret.len()));
    let after = count(&d);
    assert_eq!(d.ask("shutdown"), "shutdown exited cleanly");
    [during, after]
}

#[test]
fn on_secret_memory_the_password_is_readable_in_neither_process_during_with_secret_or_after() {
    let [during, after] = password_found("require");
    assert_eq!(during, (0, 0), "during with_secret: (application, vault)");
    assert_eq!(after, (0, 0), "after with_secret: (application, vault)");
}

#[test]
fn positive_control_off_root_reads_the_password_lent_in_the_application() {
    let [during, after] = password_found("off");
    assert!(
        during.0 > 0,
        "with ordinary memory the lent plaintext is in the application's buffer: {during:?}"
    );
    assert_eq!(after, (0, 0), "and wiped after: (application, vault)");
}

/// The move checks that what it moves is exactly the arena OpenSSL reports:
/// a range a page off at either end is refused before anything changes (a
/// different OpenSSL fails loudly instead of corrupting its heap), `auto`
/// falls back on the same refusal, and the arena still works; the exact
/// range then moves, and works on secret memory (the positive control).
/// In `arena-move-probe`, single-threaded as the vault is when it moves it.
#[test]
fn the_arena_move_refuses_a_range_other_than_the_arena_and_moves_the_arena() {
    let out = std::process::Command::new(suites::binary("arena-move-probe"))
        .output()
        .expect("arena-move-probe");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = said.lines().collect();
    let wrong: Vec<&&str> = lines.iter().filter(|l| l.starts_with("wrong ")).collect();
    assert_eq!(wrong.len(), 4, "{said}");
    for l in wrong {
        assert!(
            l.contains("refused: the arena cannot move onto secret memory: OpenSSL's range check disagrees"),
            "{l}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("auto on a wrong range: fell back: ")),
        "{said}"
    );
    assert_eq!(
        lines.iter().filter(|l| **l == "arena works: true").count(),
        2,
        "before and after the move: {said}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("arena ") && l.ends_with(": Secret")),
        "{said}"
    );
}
