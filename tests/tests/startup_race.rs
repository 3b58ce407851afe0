//! The start-up window, attacked the way a process of the user's own uid
//! would: no process of the same unprivileged uid can read or control the
//! broker or its vault at any instant, including the first instructions
//! after `execve`, before the program could call `PR_SET_DUMPABLE`.
//!
//! Each start is launched as a user would: as `nobody` (`Command::uid`
//! from root drops every capability, so the kernel's read check on the
//! program file applies at `execve`), a shell blocked in `read` then
//! `exec`s the program in place, once `startup-attacker` (also `nobody`)
//! says it is armed. The attacks (see that program's documentation):
//!
//! - files: stop the program at its exec event and open its
//!   `/proc/PID/mem`, `maps` and `fd/N`, and stop its vault the moment it
//!   exists and do the same; read through all of it once the program is up
//!   and the password went through the vault;
//! - ptrace on the broker: seize the launcher, stay attached through the
//!   exec, and try to read the registers and memory of the running program;
//! - ptrace on the vault: seize the vault as early as it can be seized.
//!
//! "Caught" is defined in the attacker: the broker target is stopped at its
//! exec event (every start, by construction); the vault is stopped while
//! `/proc/V/status` shows `Seccomp: 0`. Unless most starts
//! ([`MIN_CAUGHT`] of [`STARTS`]; for another uid's attacker, which cannot
//! stop its target, [`OTHER_UID_MIN_CAUGHT`] of [`OTHER_UID_STARTS`]) were
//! caught for every attacked target, a
//! combination proves nothing and fails as inconclusive.
//!
//! Required of the real broker (installed execute-only, and started from a
//! readable copy), in every start: nothing read (no byte of memory or maps
//! through a descriptor opened early, no ring descriptor, no canary) and
//! nothing controlled (neither `PTRACE_GETREGSET` nor `PTRACE_PEEKDATA` on
//! a live target); under ptrace the broker refuses to run (`is being
//! traced`, non-zero exit, no read-back line).
//!
//! Positive controls, each required in most starts:
//! - broker role: the files and ptrace attacks on `residue-driver`, an
//!   application that hardens itself at the top of `main` only (started
//!   from a readable copy): the files attack must read its planted canary
//!   through the early mem descriptor, the ptrace attack the registers of
//!   the running driver. (Its vault is the real one, started by the broker
//!   library: what the attacks get from it is reported, not required.)
//! - vault role: the same attacks on `late-vault`, started by `late-app`
//!   with a plain `execve` of its readable file and hardening itself only
//!   once its work is done (dumpable through the whole start, in every
//!   start, however busy the machine): the files attack must find the secret both in its
//!   memory and through its ring's `/proc/V/fd/N`, the ptrace attack must
//!   read its registers. Every test that attacks the real vault runs this
//!   control first (once per test process) and fails as inconclusive unless
//!   it succeeded.
//!
//! Another uid: an attacker of an unused uid against `late-app` and
//! `late-vault` started by `nobody` must read and control nothing; it is
//! refused by the uid check while the targets are dumpable (see
//! `startup-attacker` for how it tells), and the vault-role controls (the
//! same attacker, of the targets' uid) show the attacks would work.
//!
//! The combinations run one at a time: each start races the clock on few
//! CPUs.
//!
//! The suite waits for lines and /proc states, never for time; each step
//! has a generous deadline. The launcher and the attacker get no
//! descriptor but 0-2 (whatever the suite's own environment leaked to it is
//! not the program's to protect), and fds 0-2 are never counted.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use suites::driver::{canary, hex};
use suites::NOBODY;

/// Starts per combination.
const STARTS: usize = 10;
/// Starts per combination for an attacker of another uid, and how many of
/// them must be caught: it cannot stop its target (no signal crosses uids),
/// so whether it finds a target inside its window is the scheduler's
/// choice alone, and a busy machine lowers the rate (measured: 6 of 10 in
/// one run of 3). More starts, and "most" of them (over half), keep the
/// judgement steady without a weaker requirement on what was read.
const OTHER_UID_STARTS: usize = 20;
const OTHER_UID_MIN_CAUGHT: usize = OTHER_UID_STARTS / 2 + 1;
/// Starts in which every attacked target must have been caught.
const MIN_CAUGHT: usize = 8;
/// Deadline for any one step of a start (generous: CPUs may be busy).
const STEP: Duration = Duration::from_secs(20);

/// What is launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    /// `broker demo`, the real program.
    Broker,
    /// `residue-driver`: hardens itself late; the positive control of the
    /// attacks on the broker role (its vault is the real one).
    Control,
    /// `late-app` and its `late-vault`, both hardening themselves late, the
    /// vault started by a plain `execve` of a readable file: the positive
    /// control of the attacks on the vault role, and the other-uid target.
    LatePair,
}

/// Where the binaries come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Install {
    /// `make install-bins`: root-owned, execute-only (0711).
    Installed,
    /// Readable copies (0755) of the build.
    FromBuild,
}

/// What the attacker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Broker files + vault files, in the same start.
    Files,
    /// ptrace on the broker (the vault is not attacked).
    PtraceBroker,
    /// ptrace on the vault (the broker is left alone).
    PtraceVault,
    /// ptrace on both.
    PtraceBoth,
}

impl Attack {
    fn modes(self) -> (&'static str, &'static str) {
        match self {
            Attack::Files => ("files", "files"),
            Attack::PtraceBroker => ("ptrace", "none"),
            Attack::PtraceVault => ("none", "ptrace"),
            Attack::PtraceBoth => ("ptrace", "ptrace"),
        }
    }
}

/// The binaries of one combination, in directories `nobody` can reach.
struct Layout {
    program: PathBuf,
    args: Vec<String>,
    attacker: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Drop for Layout {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The demo with ordinary memory (`--secret-memory off`): the attacker
/// reads memory and descriptors, and secret memory would blind it where the
/// start-up protection is what the test is about.
fn broker_args() -> Vec<String> {
    [
        "demo",
        "--password-stdin",
        "--iterations",
        "2",
        "--interval-ms",
        "600000",
        "--secret-memory",
        "off",
    ]
    .map(String::from)
    .to_vec()
}

fn layout(program: Program, install: Install) -> Layout {
    match (program, install) {
        (Program::Broker, Install::Installed) => {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let prefix = std::env::temp_dir()
                .join(format!("privsep-startup-prefix-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&prefix);
            std::fs::create_dir_all(&prefix).expect("prefix dir");
            std::fs::set_permissions(&prefix, std::fs::Permissions::from_mode(0o755))
                .expect("chmod prefix");
            suites::install_bins(&prefix);
            let program = prefix.join("bin/broker");
            let vault = prefix.join("libexec/privsep-vault/vault");
            for p in [&program, &vault] {
                let mode = std::fs::metadata(p)
                    .expect("installed")
                    .permissions()
                    .mode();
                assert_eq!(
                    mode & 0o7777,
                    0o711,
                    "{} is not installed 0711",
                    p.display()
                );
            }
            // No --vault: the installed broker finds its vault in
            // ../libexec/privsep-vault/, as a user's would.
            let args = broker_args();
            let attacker_dir = suites::copy_for_nobody(&["startup-attacker"]);
            Layout {
                program,
                args,
                attacker: attacker_dir.join("startup-attacker"),
                dirs: vec![prefix, attacker_dir],
            }
        }
        (Program::Broker, Install::FromBuild) => {
            let dir = suites::copy_for_nobody(&["broker", "vault", "startup-attacker"]);
            Layout {
                program: dir.join("broker"),
                args: broker_args(),
                attacker: dir.join("startup-attacker"),
                dirs: vec![dir],
            }
        }
        (Program::Control, _) => {
            let dir = suites::copy_for_nobody(&["residue-driver", "vault", "startup-attacker"]);
            Layout {
                program: dir.join("residue-driver"),
                // Ordinary memory, as for the demo above.
                args: vec!["--secret-memory".into(), "off".into()],
                attacker: dir.join("startup-attacker"),
                dirs: vec![dir],
            }
        }
        (Program::LatePair, _) => {
            let dir = suites::copy_for_nobody(&["late-app", "late-vault", "startup-attacker"]);
            Layout {
                program: dir.join("late-app"),
                args: Vec::new(),
                attacker: dir.join("startup-attacker"),
                dirs: vec![dir],
            }
        }
    }
}

/// Lines of a child's output, read by a thread, waited for with deadlines.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

enum Next {
    Line(String),
    Eof,
    Timeout,
}

impl Lines {
    fn new(r: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The next line that satisfies `want`.
    fn until(&mut self, want: impl Fn(&str) -> bool) -> Next {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if want(&l) {
                        return Next::Line(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Next::Timeout,
                Err(RecvTimeoutError::Disconnected) => return Next::Eof,
            }
        }
    }
}

/// Everything read by a thread, handed over when the writers are gone.
fn collect(mut r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = r.read_to_end(&mut b);
        let _ = tx.send(String::from_utf8_lossy(&b).into_owned());
    });
    rx
}

/// One target's `result` line from the attacker.
#[derive(Debug, Clone, Default)]
struct Report {
    caught: bool,
    how: String,
    mem: u64,
    maps: u64,
    fds: u64,
    fdbytes: u64,
    canary: bool,
    /// Where the canary was found: `no`, `mem`, `fd3`, `mem+fd3,fd4`...
    canary_where: String,
    regs: String,
    peek: String,
}

impl Report {
    fn parse(line: &str) -> Self {
        let mut r = Report::default();
        for kv in line.split_whitespace() {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let n = || v.parse::<u64>().unwrap_or(u64::MAX);
            match k {
                "caught" => r.caught = v == "yes",
                "how" => r.how = v.to_owned(),
                "mem" => r.mem = n(),
                "maps" => r.maps = n(),
                "fds" => r.fds = n(),
                "fdbytes" => r.fdbytes = n(),
                "canary" => {
                    r.canary = v != "no";
                    r.canary_where = v.to_owned();
                }
                "regs" => r.regs = v.to_owned(),
                "peek" => r.peek = v.to_owned(),
                _ => {}
            }
        }
        r
    }

    /// Anything of the target's state obtained after start-up.
    fn read(&self) -> bool {
        self.mem > 0 || self.maps > 0 || self.fds > 0 || self.fdbytes > 0 || self.canary
    }

    /// The running target's registers or memory through ptrace.
    fn controlled(&self) -> bool {
        self.regs == "ok" || self.peek == "ok"
    }
}

/// What one start showed.
#[derive(Debug, Default)]
struct Outcome {
    broker: Option<Report>,
    vault: Option<Report>,
    /// The program printed its first read-back line (`#1 `) or, for the
    /// control, answered every command.
    up: bool,
    exit: Option<ExitStatus>,
    stderr: String,
    transcript: Vec<String>,
    error: Option<String>,
}

/// Kills what is still running when a start ends early.
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

fn write_line(to: &mut ChildStdin, line: &str) -> Result<(), String> {
    to.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| to.flush())
        .map_err(|e| format!("writing {line:?}: {e}"))
}

fn expect(lines: &mut Lines, who: &str, want: impl Fn(&str) -> bool) -> Result<String, String> {
    match lines.until(want) {
        Next::Line(l) => Ok(l),
        Next::Eof => Err(format!("{who} ended early; said {:?}", lines.seen)),
        Next::Timeout => Err(format!(
            "{who} said nothing expected within {STEP:?}; said {:?}",
            lines.seen
        )),
    }
}

/// Waits (polling, with a deadline) for `child` to exit.
fn wait_exit(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + STEP;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// Fields of `/proc/PID/stat` after the command name.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

fn start_time(pid: i32) -> Option<String> {
    stat_fields(pid)?.get(19).cloned()
}

/// The child processes of `pid`, with their start times.
fn children(pid: u32) -> Vec<(i32, String)> {
    let parent = pid.to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|p| {
                    let f = stat_fields(p)?;
                    if f.get(1)? != &parent {
                        return None;
                    }
                    Some((p, f.get(19)?.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `cmd` as `uid` (and the same gid) started from a login-like state: no
/// capability (the setuid from root drops them all before `execve`), a
/// minimal environment, and no descriptor but 0-2 (whatever the suite's own
/// environment leaked to it is not the program's to protect).
fn as_user(mut cmd: Command, uid: u32) -> Command {
    let cloexec = i32::try_from(libc::CLOSE_RANGE_CLOEXEC).expect("flag");
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .uid(uid)
        .gid(uid);
    // SAFETY: the closure runs in the forked child before exec and makes
    // one async-signal-safe system call; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::close_range(3, u32::MAX, cloexec) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn start_once(
    l: &Layout,
    program: Program,
    attack: Attack,
    attacker_uid: u32,
    o: &mut Outcome,
) -> Result<(), String> {
    let mut launcher = as_user(Command::new("/bin/sh"), NOBODY)
        .arg("-c")
        .arg(r#"read _go && exec "$0" "$@""#)
        .arg(&l.program)
        .args(&l.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the launcher: {e}"))?;
    let pid = launcher.id();
    let mut to_program = launcher.stdin.take().expect("stdin");
    let mut out = Lines::new(launcher.stdout.take().expect("stdout"));
    let err = collect(launcher.stderr.take().expect("stderr"));
    let (broker_mode, vault_mode) = attack.modes();
    let mut attacker = as_user(Command::new(&l.attacker), attacker_uid)
        .args(["--broker", broker_mode, "--vault", vault_mode])
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the attacker: {e}"))?;
    let mut to_attacker = attacker.stdin.take().expect("stdin");
    let mut said = Lines::new(attacker.stdout.take().expect("stdout"));
    // The attacker goes first when both are dropped.
    let mut reap = Reap(vec![attacker, launcher]);
    let result = (|| {
        expect(&mut said, "the attacker", |s| s == "armed")?;
        write_line(&mut to_program, "go")?;
        let secret = canary("STARTUP-");
        let secret_text = String::from_utf8(secret.clone()).expect("printable canary");
        match program {
            Program::Broker => {
                write_line(&mut to_program, &secret_text)?;
                o.up = match out.until(|s| s.contains("#1 ")) {
                    Next::Line(_) => true,
                    // It ended without reading the password back.
                    Next::Eof => false,
                    Next::Timeout => {
                        return Err(format!(
                            "the broker neither read the password back nor ended within \
                             {STEP:?}; said {:?}",
                            out.seen
                        ))
                    }
                };
            }
            Program::Control | Program::LatePair => {
                expect(&mut out, "the driver", |s| s.starts_with("ready "))?;
                write_line(&mut to_program, "store")?;
                expect(&mut out, "the driver", |s| s == "send-secret")?;
                write_line(&mut to_program, &secret_text)?;
                expect(&mut out, "the driver", |s| s == "stored")?;
                write_line(&mut to_program, "read")?;
                expect(&mut out, "the driver", |s| s.starts_with("read "))?;
                write_line(&mut to_program, &format!("plant {}", hex(&secret)))?;
                expect(&mut out, "the driver", |s| s == "planted")?;
                o.up = true;
            }
        }
        write_line(&mut to_attacker, &format!("go {}", hex(&secret)))?;
        expect(&mut said, "the attacker", |s| s == "done")?;
        for line in &said.seen {
            if let Some(rest) = line.strip_prefix("result ") {
                let r = Some(Report::parse(rest));
                if rest.starts_with("broker ") {
                    o.broker = r;
                } else if rest.starts_with("vault ") {
                    o.vault = r;
                }
            }
        }
        Ok(())
    })();
    let [attacker, launcher] = &mut reap.0[..] else {
        unreachable!()
    };
    // The attacker exits after `done`; a tracee is only then released.
    if wait_exit(attacker).is_none() {
        let _ = attacker.kill();
    }
    // Its vault, killed below should it outlive the program (one left
    // stopped would hold the program's stderr open).
    let kids = children(pid);
    if matches!(launcher.try_wait(), Ok(None)) {
        match program {
            Program::Broker => {
                // SAFETY: signalling our own child, which has not been reaped.
                unsafe { libc::kill(i32::try_from(pid).expect("pid"), libc::SIGTERM) };
            }
            Program::Control | Program::LatePair => {
                let _ = write_line(&mut to_program, "exit");
            }
        }
    }
    drop(to_program);
    o.exit = wait_exit(launcher);
    for (kid, started) in kids {
        if start_time(kid).as_ref() == Some(&started) {
            // SAFETY: kill takes integers; the start time shows the pid
            // still names the program's child.
            unsafe { libc::kill(kid, libc::SIGKILL) };
        }
    }
    o.stderr = err.recv_timeout(STEP).unwrap_or_default();
    o.transcript = said.seen.clone();
    o.transcript
        .extend(out.seen.iter().map(|l| format!("program: {l}")));
    result
}

fn start(l: &Layout, program: Program, attack: Attack, attacker_uid: u32) -> Outcome {
    let mut o = Outcome::default();
    if let Err(e) = start_once(l, program, attack, attacker_uid, &mut o) {
        o.error = Some(e);
    }
    o
}

fn count(outcomes: &[Outcome], f: impl Fn(&Outcome) -> bool) -> usize {
    outcomes.iter().filter(|o| f(o)).count()
}

fn describe(r: Option<&Report>) -> String {
    r.map_or("-".into(), |r| {
        format!(
            "caught {} ({}) mem {} maps {} fds {} ({} B) canary {} regs {} peek {}",
            if r.caught { "yes" } else { "NO" },
            r.how,
            r.mem,
            r.maps,
            r.fds,
            r.fdbytes,
            r.canary_where,
            r.regs,
            r.peek
        )
    })
}

/// Who attacks: a process of the target's own uid, or of another
/// unprivileged uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attacker {
    SameUid,
    OtherUid,
}

impl Attacker {
    fn uid(self) -> u32 {
        match self {
            Attacker::SameUid => NOBODY,
            Attacker::OtherUid => other_uid(),
        }
    }
}

/// An unprivileged uid other than [`NOBODY`] that no account names and no
/// process runs as (chosen once per run), for the other-uid attacker.
fn other_uid() -> u32 {
    static UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UID.get_or_init(|| {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let named = |uid: u32| {
            passwd
                .lines()
                .any(|l| l.split(':').nth(2) == Some(uid.to_string().as_str()))
        };
        let running = |uid: u32| {
            std::fs::read_dir("/proc").is_ok_and(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .any(|p| {
                        suites::proc_status_field(p, "Uid")
                            .and_then(|u| u.split_whitespace().next().map(str::to_owned))
                            == Some(uid.to_string())
                    })
            })
        };
        (64_000..65_000)
            .find(|u| *u != NOBODY && !named(*u) && !running(*u))
            .expect("an unused uid in 64000..65000")
    })
}

/// Whether the positive control's attack worked in one start: the same
/// attack that must fail against the real programs got what it was after.
fn control_worked(program: Program, attack: Attack, o: &Outcome) -> bool {
    let got_mem = |r: &Option<Report>| {
        r.as_ref()
            .is_some_and(|r| r.mem > 0 && r.canary_where.contains("mem"))
    };
    // The secret read through a descriptor of the target's ring (fd/N).
    let got_ring = |r: &Option<Report>| {
        r.as_ref()
            .is_some_and(|r| r.fdbytes > 0 && r.canary_where.contains("fd"))
    };
    let regs = |r: &Option<Report>| r.as_ref().is_some_and(|r| r.regs == "ok");
    match (program, attack) {
        (Program::Control, Attack::Files) => got_mem(&o.broker),
        (Program::Control, _) => regs(&o.broker),
        (Program::LatePair, Attack::Files) => {
            got_mem(&o.broker) && got_mem(&o.vault) && got_ring(&o.vault)
        }
        (Program::LatePair, Attack::PtraceBroker) => regs(&o.broker),
        (Program::LatePair, Attack::PtraceVault) => regs(&o.vault),
        (Program::LatePair, Attack::PtraceBoth) => regs(&o.broker) && regs(&o.vault),
        (Program::Broker, _) => false,
    }
}

/// The positive control for `attack` on the vault role (and, for the
/// other-uid suite, on the application role): the late-hardening pair
/// attacked by its own uid. Run once per test process and attack; an error
/// says how it failed.
fn late_pair_control(attack: Attack) -> Result<(), String> {
    type Cached = std::sync::OnceLock<Result<(), String>>;
    static FILES: Cached = Cached::new();
    static PTRACE_VAULT: Cached = Cached::new();
    static PTRACE_BOTH: Cached = Cached::new();
    let cell = match attack {
        Attack::Files => &FILES,
        Attack::PtraceVault => &PTRACE_VAULT,
        Attack::PtraceBoth => &PTRACE_BOTH,
        Attack::PtraceBroker => unreachable!("the broker role's control is residue-driver"),
    };
    cell.get_or_init(|| {
        evaluate(
            Program::LatePair,
            Install::FromBuild,
            attack,
            Attacker::SameUid,
        )
    })
    .clone()
}

/// Fails the calling test as inconclusive unless the late-hardening pair's
/// control for `attack` succeeded.
fn require_late_pair_control(attack: Attack) {
    if let Err(e) = late_pair_control(attack) {
        panic!(
            "INCONCLUSIVE: the positive control (the same attack on a vault that hardens \
             itself late, by its own uid) did not succeed, so a failed attack here would \
             prove nothing:\n{e}"
        );
    }
}

fn combination(program: Program, install: Install, attack: Attack) {
    if program == Program::Broker && attack != Attack::PtraceBroker {
        require_late_pair_control(attack);
    }
    if let Err(e) = evaluate(program, install, attack, Attacker::SameUid) {
        panic!("{e}");
    }
}

/// Runs [`STARTS`] starts of `program` under `attack` ([`OTHER_UID_STARTS`]
/// for another uid's attacker) and judges them; an
/// error is the failure, summary included.
fn evaluate(
    program: Program,
    install: Install,
    attack: Attack,
    attacker: Attacker,
) -> Result<(), String> {
    let (starts, min_caught) = if attacker == Attacker::OtherUid {
        (OTHER_UID_STARTS, OTHER_UID_MIN_CAUGHT)
    } else {
        (STARTS, MIN_CAUGHT)
    };
    // One combination at a time: each start is a race against the clock on
    // few CPUs, and starts of other tests running meanwhile would judge the
    // attacker's speed, not the program's protection.
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let name = format!("{program:?}/{install:?}/{attack:?}/{attacker:?}");
    let l = layout(program, install);
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(starts);
    // A start that cannot run to its end is reported at once.
    while outcomes.len() < starts && outcomes.iter().all(|o| o.error.is_none()) {
        outcomes.push(start(&l, program, attack, attacker.uid()));
    }

    let who = if program == Program::Broker {
        "broker"
    } else {
        "application"
    };
    // The summary first, so that any failure below explains itself.
    let mut summary = format!("startup race {name}: {} starts\n", outcomes.len());
    for (i, o) in outcomes.iter().enumerate() {
        summary.push_str(&format!(
            "  #{i}: {who} [{}] vault [{}] up {} exit {:?}{}\n",
            describe(o.broker.as_ref()),
            describe(o.vault.as_ref()),
            o.up,
            o.exit,
            o.error
                .as_ref()
                .map_or(String::new(), |e| format!(" ERROR {e}"))
        ));
    }
    let attacks_broker = attack != Attack::PtraceVault;
    let attacks_vault = attack != Attack::PtraceBroker;
    let caught = |r: &Option<Report>| r.as_ref().is_some_and(|r| r.caught);
    let read = |r: &Option<Report>| r.as_ref().is_some_and(Report::read);
    let controlled = |r: &Option<Report>| r.as_ref().is_some_and(Report::controlled);
    let canary_found = |r: &Option<Report>| r.as_ref().is_some_and(|r| r.canary);
    let caught_all = count(&outcomes, |o| {
        (!attacks_broker || caught(&o.broker)) && (!attacks_vault || caught(&o.vault))
    });
    for (attacked, role, get) in [
        (
            attacks_broker,
            who,
            (|o: &Outcome| o.broker.clone()) as fn(&Outcome) -> Option<Report>,
        ),
        (attacks_vault, "vault", |o: &Outcome| o.vault.clone()),
    ] {
        if !attacked {
            continue;
        }
        summary.push_str(&format!(
            "  {role}: caught {}/{starts}; read in {} (canary found in {}); controlled in {}\n",
            count(&outcomes, |o| caught(&get(o))),
            count(&outcomes, |o| read(&get(o))),
            count(&outcomes, |o| canary_found(&get(o))),
            count(&outcomes, |o| controlled(&get(o))),
        ));
    }
    summary.push_str(&format!(
        "  every attacked target caught in {caught_all}/{starts}; program up in {}; \
         refused as traced in {}\n",
        count(&outcomes, |o| o.up),
        count(&outcomes, |o| o.stderr.contains("is being traced")),
    ));
    eprintln!("{summary}");

    let first = |f: &dyn Fn(&Outcome) -> bool| {
        outcomes.iter().find(|o| f(o)).map_or(String::new(), |o| {
            format!(
                "\nfirst such start: attacker and program said:\n  {}\nprogram stderr:\n{}",
                o.transcript.join("\n  "),
                o.stderr
            )
        })
    };
    let errors = count(&outcomes, |o| o.error.is_some());
    if errors > 0 {
        return Err(format!(
            "{name}: {errors} start(s) did not run to the end\n{summary}{}",
            first(&|o: &Outcome| o.error.is_some())
        ));
    }
    if caught_all < min_caught {
        return Err(format!(
            "{name}: INCONCLUSIVE: the attacker caught every target it attacked in only \
             {caught_all} of {starts} starts (at least {min_caught} needed)\n{summary}"
        ));
    }
    // The late pair attacked by another uid must be as safe as the real
    // programs are against their own: nothing read, nothing controlled.
    let must_resist = program == Program::Broker || attacker == Attacker::OtherUid;
    if !must_resist {
        let worked = count(&outcomes, |o| control_worked(program, attack, o));
        if worked < min_caught {
            return Err(format!(
                "{name}: POSITIVE CONTROL FAILED: the attack on a program that hardens \
                 late worked in only {worked} of {starts} starts (at least {min_caught} \
                 needed): the attacker would not notice\n{summary}{}",
                first(&|o: &Outcome| !control_worked(program, attack, o))
            ));
        }
        return Ok(());
    }
    let bad = |o: &Outcome| {
        read(&o.broker) || read(&o.vault) || controlled(&o.broker) || controlled(&o.vault)
    };
    let n = count(&outcomes, bad);
    if n > 0 {
        return Err(format!(
            "{name}: the attacker read or controlled the {who} or its vault in {n} of \
             {starts} starts\n{summary}{}",
            first(&bad)
        ));
    }
    let refused_tracer = program == Program::Broker && attack == Attack::PtraceBroker;
    if refused_tracer {
        let ran = |o: &Outcome| {
            o.up || o.exit.is_none_or(|s| s.success()) || !o.stderr.contains("is being traced")
        };
        let n = count(&outcomes, ran);
        if n > 0 {
            return Err(format!(
                "{name}: the traced broker did not refuse to run (non-zero exit, \
                 `is being traced` on stderr, no read-back) in {n} of {starts} starts\n{summary}{}",
                first(&ran)
            ));
        }
    } else {
        let unclean = |o: &Outcome| !o.up || !o.exit.is_some_and(|s| s.success());
        let n = count(&outcomes, unclean);
        if n > 0 {
            return Err(format!(
                "{name}: the {who} did not run to a clean exit in {n} starts\n{summary}{}",
                first(&unclean)
            ));
        }
    }
    Ok(())
}

#[test]
fn installed_broker_files_attack_reads_nothing() {
    combination(Program::Broker, Install::Installed, Attack::Files);
}

#[test]
fn installed_broker_refuses_a_tracer_attached_before_exec() {
    combination(Program::Broker, Install::Installed, Attack::PtraceBroker);
}

#[test]
fn installed_vault_cannot_be_seized_at_start() {
    combination(Program::Broker, Install::Installed, Attack::PtraceVault);
}

#[test]
fn broker_from_a_readable_build_files_attack_reads_nothing() {
    combination(Program::Broker, Install::FromBuild, Attack::Files);
}

#[test]
fn broker_from_a_readable_build_refuses_a_tracer_attached_before_exec() {
    combination(Program::Broker, Install::FromBuild, Attack::PtraceBroker);
}

#[test]
fn vault_of_a_readable_build_cannot_be_seized_at_start() {
    combination(Program::Broker, Install::FromBuild, Attack::PtraceVault);
}

#[test]
fn positive_control_files_attack_reads_a_late_hardening_application() {
    combination(Program::Control, Install::FromBuild, Attack::Files);
}

#[test]
fn positive_control_ptrace_controls_a_late_hardening_application() {
    combination(Program::Control, Install::FromBuild, Attack::PtraceBroker);
}

#[test]
fn positive_control_files_attack_reads_a_late_hardening_vault_and_its_ring() {
    if let Err(e) = late_pair_control(Attack::Files) {
        panic!("{e}");
    }
}

#[test]
fn positive_control_ptrace_controls_a_late_hardening_vault() {
    if let Err(e) = late_pair_control(Attack::PtraceVault) {
        panic!("{e}");
    }
}

/// The other-uid suite: an attacker of one unprivileged uid against the
/// late-hardening pair of another (the strongest case: the same attacker of
/// the pair's own uid, the positive control, gets in).
fn attacked_by_another_uid(attack: Attack) {
    require_late_pair_control(attack);
    if let Err(e) = evaluate(
        Program::LatePair,
        Install::FromBuild,
        attack,
        Attacker::OtherUid,
    ) {
        panic!("{e}");
    }
}

#[test]
fn another_uid_files_attack_reads_nothing_even_of_late_hardening_programs() {
    attacked_by_another_uid(Attack::Files);
}

#[test]
fn another_uid_cannot_ptrace_even_late_hardening_programs() {
    attacked_by_another_uid(Attack::PtraceBoth);
}
