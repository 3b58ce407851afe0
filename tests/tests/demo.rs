//! The `broker demo` program, run for real: scripted with --password-stdin,
//! interactive on a pseudo-terminal, and stopped by signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use suites::pty::{openpty, termios_of};

fn broker() -> Command {
    let mut c = Command::new(suites::binary("broker"));
    c.arg("demo");
    c
}

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    suites::run_with_input(broker().args(args), stdin)
}

#[test]
fn scripted_demo_runs_the_whole_lifecycle() {
    let pem = std::env::temp_dir().join(format!("demo-pk-{}.pem", std::process::id()));
    let (code, out, err) = run_with_stdin(
        &[
            "--password-stdin",
            "--iterations",
            "3",
            "--interval-ms",
            "10",
            "--public-key-out",
            pem.to_str().unwrap(),
        ],
        b"Tr0ub4dor&3\n",
    );
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    for needle in [
        ", 16) = 1, initialized: yes",
        "d ✓  p ✓  q ✓  dp ✓  dq ✓  qinv ✓",
        "Seccomp 2 ✓  NoNewPrivs 1 ✓",
        "CapBnd 0000000000000000 ✓",
        "F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW",
        "SHA-256 fingerprint",
        "11 bytes read into a locked buffer",
        "#3 ",
        "vault exited cleanly",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(!out.contains('✗'), "a check failed:\n{out}");
    assert!(
        !out.contains("Tr0ub4dor") && !err.contains("Tr0ub4dor"),
        "the password was printed"
    );
    let pem = std::fs::read_to_string(&pem).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    // The fingerprint shown is the SHA-256 of the DER key written out.
    let der = openssl::rsa::Rsa::public_key_from_pem(pem.as_bytes())
        .unwrap()
        .public_key_to_der()
        .unwrap();
    let fp: Vec<String> = openssl::sha::sha256(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(out.contains(&fp.join(":")), "fingerprint mismatch:\n{out}");
}

/// The demo's exit statuses (`broker/src/main.rs`, `exit`), as a script
/// sees them.
const SUCCESS: i32 = 0;
const VAULT_FAILED: i32 = 1;
const USAGE: i32 = 2;
const CANCELLED: i32 = 3;
const PASSWORD_REFUSED: i32 = 4;

/// The broker program with `args` (no `demo` added), stdin closed.
fn run_top(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(suites::binary("broker"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_passwords_are_refused_with_a_clear_message() {
    let cases: [(&[u8], &str); 4] = [
        (b"\n", "the password is empty"),
        (b"\r\nsecond line\n", "the password is empty"),
        (&[b'x'; 3000], "longer than the limit of 1024 bytes"),
        (&[b'y'; 1025], "longer than the limit of 1024 bytes"),
    ];
    for (input, words) in cases {
        let (code, out, err) = run_with_stdin(&["--password-stdin", "--iterations", "1"], input);
        assert_eq!(code, Some(PASSWORD_REFUSED), "{words}: {out}{err}");
        assert!(err.contains(words), "expected {words:?}, got:\n{err}");
        assert!(!out.contains("#1"), "{out}");
        assert!(out.contains("vault pid"), "refused after the prompt: {out}");
    }
}

#[test]
fn a_password_without_a_newline_is_taken_as_it_is() {
    // `printf %s pw | broker demo --password-stdin`.
    let (code, out, err) = run_with_stdin(&["--password-stdin", "--iterations", "1"], b"pw");
    assert_eq!(code, Some(SUCCESS), "{out}{err}");
    assert!(out.contains("  2 bytes read into a locked buffer"), "{out}");
    assert!(out.contains("with_secret lent 2 bytes"), "{out}");
    // Only one line ending is removed, and only a whole one.
    for (input, len) in [(&b"pw\r\n"[..], 2), (b"pw\r", 3), (b"pw\n\n", 2)] {
        let (code, out, err) = run_with_stdin(&["--password-stdin", "--iterations", "1"], input);
        assert_eq!(code, Some(SUCCESS), "{input:?}: {out}{err}");
        assert!(
            out.contains(&format!("with_secret lent {len} bytes")),
            "{input:?}: {out}"
        );
    }
}

#[test]
fn passwords_up_to_1024_bytes_go_into_an_envelope_and_read_back_whole() {
    // 1024 bytes, over the 190 one RSA-OAEP block holds at 2048 bits, with
    // and without a newline; 191 bytes, the first that needs the envelope.
    let long: Vec<u8> = (0..1024u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[usize::try_from(i % 36).unwrap()])
        .collect();
    let mut with_newline = long.clone();
    with_newline.push(b'\n');
    for (input, len) in [
        (&long[..], 1024),
        (&with_newline[..], 1024),
        (&long[..191], 191),
    ] {
        let (code, out, err) = run_with_stdin(
            &[
                "--password-stdin",
                "--iterations",
                "3",
                "--interval-ms",
                "0",
            ],
            input,
        );
        assert_eq!(code, Some(SUCCESS), "{len}: {out}{err}");
        assert!(
            out.contains(&format!("  {len} bytes read into a locked buffer")),
            "{out}"
        );
        assert!(out.contains("sealed in an AES-256-GCM envelope"), "{out}");
        // The vault opened the envelope (its GCM tag checks every byte) and
        // lent all of it, three times.
        assert_eq!(
            out.matches(&format!("with_secret lent {len} bytes"))
                .count(),
            3,
            "{out}"
        );
        assert!(!out.contains('✗'), "{out}");
    }
    // Positive control: 190 bytes still go directly.
    let (code, out, err) = run_with_stdin(&["--password-stdin", "--iterations", "1"], &long[..190]);
    assert_eq!(code, Some(SUCCESS), "{out}{err}");
    assert!(
        out.contains("encrypted with RSA-OAEP-SHA256 (256 bytes"),
        "{out}"
    );
    assert!(!out.contains("envelope"), "{out}");
}

#[test]
fn the_end_of_the_input_at_the_prompt_cancels_with_its_own_status() {
    let (code, out, err) = run_with_stdin(&["--password-stdin", "--iterations", "1"], b"");
    assert_eq!(code, Some(CANCELLED), "{out}{err}");
    assert!(
        out.contains("the input ended at the password prompt; nothing was kept"),
        "{out}"
    );
    assert!(out.contains("vault exited cleanly"), "{out}");
    assert!(!out.contains("#1"), "{out}");
}

#[test]
fn a_pipe_without_password_stdin_is_refused_before_the_vault_starts() {
    let (code, out, err) = run_with_stdin(&["--iterations", "1"], b"pw\n");
    assert_eq!(code, Some(USAGE), "{err}");
    assert!(err.contains("--password-stdin"), "{err}");
    assert!(!out.contains("[1/4]"), "a key was generated first: {out}");
}

#[test]
fn help_is_printed_however_it_is_asked_for() {
    let mut first: Option<String> = None;
    for args in [
        &["demo", "--help"][..],
        &["demo", "-h"],
        &["help"],
        &["help", "demo"],
        &["--help"],
        &["-h"],
        &["demo", "--iterations", "3", "--help"],
    ] {
        let (code, out, err) = run_top(args);
        assert_eq!(code, Some(SUCCESS), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
        assert!(
            out.starts_with("usage: broker demo [OPTIONS]\n"),
            "{args:?}: {out}"
        );
        assert!(out.contains("exit status:"), "{args:?}: {out}");
        match &first {
            None => first = Some(out),
            Some(f) => assert_eq!(&out, f, "{args:?}: another text"),
        }
    }
}

#[test]
fn usage_errors_are_one_line_naming_the_problem_and_the_help() {
    for (args, problem, help) in [
        (&[][..], "no command given", "broker --help"),
        (&["frob"], "unknown command \"frob\"", "broker --help"),
        (&["--frob"], "unknown option \"--frob\"", "broker --help"),
        (&["help", "frob"], "no help on \"frob\"", "broker --help"),
        (
            &["demo", "--frob"],
            "unknown option \"--frob\"",
            "broker demo --help",
        ),
        (
            &["demo", "stray"],
            "unexpected argument \"stray\"",
            "broker demo --help",
        ),
        (
            &["demo", "--iterations"],
            "--iterations needs a value",
            "broker demo --help",
        ),
        (
            &["demo", "--password-stdin=yes"],
            "--password-stdin takes no value",
            "broker demo --help",
        ),
        (
            &["demo", "--key-bits", "1024"],
            "use 2048, 3072 or 4096",
            "broker demo --help",
        ),
        (
            &["demo", "--iterations", "-1"],
            "--iterations \"-1\" is not a whole number from 1 to 18446744073709551615",
            "broker demo --help",
        ),
        (
            &["demo", "--iterations=0"],
            "--iterations \"0\" is not a whole number from 1 to",
            "broker demo --help",
        ),
        (
            &["demo", "--interval-ms", "-5"],
            "--interval-ms \"-5\" is not a whole number from 0 to 86400000",
            "broker demo --help",
        ),
        (
            &["demo", "--heap-size", "1000"],
            "--heap-size \"1000\" is not accepted: use a power of two from",
            "broker demo --help",
        ),
        (
            &["demo", "--iterations", "1", "--iterations=2"],
            "--iterations is given twice; give it once",
            "broker demo --help",
        ),
        (
            &["demo", "--password-stdin", "--password-stdin"],
            "--password-stdin is given twice; give it once",
            "broker demo --help",
        ),
    ] {
        let (code, out, err) = run_top(args);
        assert_eq!(code, Some(USAGE), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line:\n{err}");
        assert!(err.starts_with("broker: "), "{args:?}: {err}");
        assert!(
            err.contains(problem),
            "{args:?}: expected {problem:?} in {err}"
        );
        assert!(
            err.trim_end().ends_with(&format!("; see '{help}'")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_rule_check_of_a_rule_the_policy_lacks_is_refused_with_the_range_before_a_key_exists() {
    // The accepted form, from the policy file itself (the filters of
    // broker.json, each numbered from 1 as REVIEW.md numbers them).
    let policy = suites::rulecheck::policy("broker.json");
    let accepted = policy
        .iter()
        .map(|f| format!("{}:1..={}", f.name, f.rules.len()))
        .collect::<Vec<_>>()
        .join(" or ");
    let last = policy
        .iter()
        .find(|f| f.name == "broker")
        .expect("a broker filter")
        .rules
        .len();
    for bad in [
        format!("broker:{}", last + 1),
        "broker:999".to_owned(),
        "foo:1".to_owned(),
        "broker:0".to_owned(),
        "broker".to_owned(),
    ] {
        let (code, out, err) =
            run_with_stdin(&["--password-stdin", "--sandbox-name-rule", &bad], b"pw\n");
        assert_eq!(code, Some(USAGE), "{bad}: {out}{err}");
        // Refused with the other options: no vault started, no key made.
        assert!(out.is_empty(), "{bad}: {out}");
        assert_eq!(err.lines().count(), 1, "{bad}: not one line:\n{err}");
        assert!(
            err.contains(&format!("--sandbox-name-rule {bad:?}"))
                && err.contains(&format!("use FILTER:RULE, {accepted} ")),
            "{bad}: expected the form and {accepted:?} in {err}"
        );
    }
    // Positive control: a rule the policy has, one no scenario reaches (so
    // the run is the plain one), is accepted and the demo runs through it.
    let (rule, _, _) = suites::rulecheck::rules("broker.json")
        .into_iter()
        .rfind(|(r, _, unreached)| *unreached && r.filter == "broker")
        .expect("an unreached rule in broker.json");
    let (code, out, err) = run_with_stdin(
        &[
            "--password-stdin",
            "--iterations",
            "1",
            "--interval-ms",
            "0",
            "--sandbox-name-rule",
            &rule.arg(),
        ],
        b"pw\n",
    );
    assert_eq!(code, Some(SUCCESS), "{}: {out}{err}", rule.arg());
    assert!(
        out.contains(&format!(
            "RULE CHECK: the broker's own filter enforces, with broker rule {} ({})",
            rule.rule, rule.syscall
        )) && out.contains(&format!("RULE CHECK: broker rule {} taken away", rule.rule)),
        "{out}"
    );
    // One read is said as such.
    assert!(
        out.contains("reading the password through the vault once"),
        "{out}"
    );
    assert!(!out.contains(" 1 times"), "{out}");
}

/// The accepted range a `--heap-size` refusal names: (least, most).
fn heap_range(err: &str) -> (usize, usize) {
    let rest = err
        .split("use a power of two from ")
        .nth(1)
        .unwrap_or_else(|| panic!("no range in {err}"));
    let numbers: Vec<usize> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // "from MIN (what the vault needs with N lanes) to MAX"
    (numbers[0], numbers[numbers.len() - 1])
}

#[test]
fn heap_sizes_are_checked_with_the_range_the_vault_really_accepts() {
    // 65536 was the example the help once suggested; the vault refuses it.
    let (code, out, err) = run_with_stdin(&["--heap-size", "65536"], b"");
    assert_eq!(code, Some(USAGE), "{out}{err}");
    assert!(!out.contains("[1/4]"), "nothing may start: {out}");
    let (min, max) = heap_range(&err);
    assert_eq!(max, vault::heap::MAX_ARENA, "{err}");
    assert!(min >= common::budget::min_arena(1), "{err}");
    assert!(min.is_power_of_two(), "{err}");
    for refused in [min / 2, max * 2, min + 1] {
        let (code, out, err) = run_with_stdin(&["--heap-size", &refused.to_string()], b"");
        assert_eq!(code, Some(USAGE), "{refused}: {out}{err}");
        assert_eq!(heap_range(&err), (min, max), "{err}");
    }
    // Both ends of the range named are accepted by the vault itself.
    for accepted in [min, max] {
        let (code, out, err) = run_with_stdin(
            &[
                "--password-stdin",
                "--iterations",
                "1",
                "--heap-size",
                &accepted.to_string(),
            ],
            b"pw\n",
        );
        assert_eq!(code, Some(SUCCESS), "{accepted}: {out}{err}");
        assert!(
            out.contains(&format!("CRYPTO_secure_malloc_init({accepted}, 16) = 1")),
            "{out}"
        );
    }
}

#[test]
fn a_vault_path_that_is_a_directory_is_named_as_one() {
    let dir = std::env::temp_dir().join(format!("demo-vault-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (code, out, err) = run_with_stdin(
        &["--password-stdin", "--vault", dir.to_str().unwrap()],
        b"pw\n",
    );
    assert_eq!(code, Some(VAULT_FAILED), "{out}{err}");
    assert!(err.contains("is a directory, not a regular file"), "{err}");
    assert!(!err.contains("not found"), "{err}");
    assert!(!out.contains("[1/4]"), "{out}");
    // Positive control: a path that does not exist is "not found".
    let missing = dir.join("missing");
    let (code, _, err) = run_with_stdin(
        &["--password-stdin", "--vault", missing.to_str().unwrap()],
        b"pw\n",
    );
    assert_eq!(code, Some(VAULT_FAILED), "{err}");
    assert!(err.contains("not found"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_public_key_path_that_cannot_be_written_is_refused_before_a_key_is_generated() {
    let dir = std::env::temp_dir().join(format!("demo-pk-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for path in [dir.clone(), dir.join("no-such-dir").join("key.pem")] {
        let (code, out, err) = run_with_stdin(
            &[
                "--password-stdin",
                "--public-key-out",
                path.to_str().unwrap(),
            ],
            b"pw\n",
        );
        assert_eq!(code, Some(USAGE), "{path:?}: {out}{err}");
        assert!(err.contains("cannot open it for writing"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!out.contains("[1/4]"), "a key was generated first: {out}");
    }
    // A file the run created is removed when the vault then fails to start.
    let pem = dir.join("key.pem");
    let (code, out, err) = run_with_stdin(
        &[
            "--password-stdin",
            "--public-key-out",
            pem.to_str().unwrap(),
            "--vault-arg",
            "--selftest",
            "--vault-arg",
            "panic",
        ],
        b"pw\n",
    );
    assert_eq!(code, Some(VAULT_FAILED), "{out}{err}");
    assert!(!pem.exists(), "an empty key file was left behind");
    // Positive control: the same path is written when the run goes on.
    let (code, out, err) = run_with_stdin(
        &[
            "--password-stdin",
            "--iterations",
            "1",
            "--public-key-out",
            pem.to_str().unwrap(),
        ],
        b"pw\n",
    );
    assert_eq!(code, Some(SUCCESS), "{out}{err}");
    assert!(std::fs::read_to_string(&pem)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_readme_shows_the_help_and_the_exit_statuses_as_the_program_prints_them() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("\n## Command line\n")
        .nth(1)
        .expect("a \"## Command line\" section in the README");
    let section = section.split("\n## ").next().unwrap();
    let block = section
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the help in a ```text block");
    let (code, help, _) = run_top(&["--help"]);
    assert_eq!(code, Some(SUCCESS));
    assert_eq!(
        block,
        help.trim_end_matches('\n'),
        "the README's help differs"
    );
    // Each exit status of the help, one row of the README's table.
    let statuses = help.split("exit status:\n").nth(1).unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();
    for line in statuses.lines() {
        match line.strip_prefix("  ").and_then(|l| l.split_once("  ")) {
            Some((code, meaning))
                if !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()) =>
            {
                rows.push((code.to_owned(), meaning.to_owned()))
            }
            _ => {
                let last = rows.last_mut().expect("a status line first");
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        }
    }
    assert_eq!(rows.len(), 6, "{statuses}");
    for (code, meaning) in rows {
        let row = format!("| {code} | {meaning} |");
        assert!(section.contains(&row), "the README lacks the row\n{row}");
    }
}

/// A running demo whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// The demo with `--password-stdin`, `extra`, and `--interval-ms 20`
    /// unless `extra` gives another (an option is given once).
    fn start(extra: &[&str]) -> Self {
        let interval: &[&str] = if extra.contains(&"--interval-ms") {
            &[]
        } else {
            &["--interval-ms", "20"]
        };
        let mut child = broker()
            .arg("--password-stdin")
            .args(interval)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"pw-for-signals\n")
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; seen:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn vault_pid(&mut self) -> u32 {
        let line = self.wait_for("vault pid ");
        line.split_whitespace()
            .nth(2)
            .and_then(|p| p.parse().ok())
            .expect("pid in the line")
    }

    fn rest(&mut self) -> String {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: signalling our own child; kill has no memory preconditions.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0);
    }
}

fn gone(pid: u32) -> bool {
    // A zombie still has a /proc entry; look at its state too.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

#[test]
fn while_the_demo_runs_the_vault_is_sandboxed_and_the_ring_sealed() {
    let mut run = Running::start(&[]);
    let pid = run.vault_pid();
    run.wait_for("#2 ");
    suites::assert_sandboxed(pid);
    // The ring as the vault holds it: open its fd 3 through /proc (we are
    // root) and read the seals of the same memfd.
    let ring = std::fs::File::open(format!("/proc/{pid}/fd/3"))
        .expect("open the vault's ring through /proc");
    let seals = common::seal::seals(ring.as_fd()).unwrap();
    for (bit, name) in [
        (libc::F_SEAL_SHRINK, "SHRINK"),
        (libc::F_SEAL_GROW, "GROW"),
        (libc::F_SEAL_SEAL, "SEAL"),
    ] {
        assert!(seals & bit != 0, "the ring lacks F_SEAL_{name}: {seals:#x}");
    }
    let link = std::fs::read_link(format!("/proc/{pid}/fd/3")).unwrap();
    assert!(
        link.to_string_lossy()
            .starts_with("/memfd:privsep-vault-ring"),
        "{link:?}"
    );
    // Only stdio and the ring are open in the vault.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut fds: Vec<u32> = fds.iter().map(|f| f.parse().unwrap()).collect();
    fds.sort_unstable();
    // Stdio, then one ring per lane, and with secret memory (the default,
    // where the kernel offers it) one data part per lane after them; each
    // lane has its own thread, beside the main one (which only waits).
    let lanes = u32::try_from(suites::threads(pid).len()).unwrap() - 1;
    assert!(lanes >= 1);
    let secret = fds
        .iter()
        .filter(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .is_ok_and(|l| l.to_string_lossy().starts_with("/secretmem"))
        })
        .count();
    let secret = u32::try_from(secret).unwrap();
    assert!(
        secret == 0 || secret == lanes,
        "{secret} secret memory fds, {lanes} lanes"
    );
    assert_eq!(fds, (0..3 + lanes + secret).collect::<Vec<_>>());
    // The broker program hardened itself too: no core files.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", run.child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_owned();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    run.signal(libc::SIGTERM);
    let status = run.child.wait().unwrap();
    let out = run.rest();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        out.contains("SIGTERM received") && out.contains("vault exited cleanly"),
        "{out}"
    );
    assert!(gone(pid), "the vault outlived the broker");
}

#[test]
fn sigint_sighup_and_sigterm_shut_both_processes_down_gracefully() {
    for (sig, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGTERM, "SIGTERM"),
    ] {
        let mut run = Running::start(&[]);
        let pid = run.vault_pid();
        run.wait_for("#1 ");
        run.signal(sig);
        let status = run.child.wait().unwrap();
        let out = run.rest();
        assert_eq!(status.code(), Some(0), "{name}: {out}");
        assert!(out.contains(&format!("{name} received")), "{name}: {out}");
        assert!(out.contains("vault exited cleanly"), "{name}: {out}");
        assert!(gone(pid), "{name}: the vault outlived the broker");
    }
}

#[test]
fn under_its_filter_the_broker_escalates_to_a_stuck_vault_through_its_pidfd() {
    // The broker program's filter lets it signal only through a pidfd: the
    // shutdown escalation (SIGTERM after the grace period, then SIGKILL) of
    // a vault that does not answer must go that way, not die by SIGSYS.
    let mut r = Running::start(&["--interval-ms", "600000"]);
    let vault = r.vault_pid();
    r.wait_for("broker.json installed (enforcing)");
    r.wait_for("#1 ");
    let vault_pid = i32::try_from(vault).unwrap();
    // SAFETY: stopping the vault this test's broker spawned.
    let stopped = unsafe { libc::kill(vault_pid, libc::SIGSTOP) };
    assert_eq!(stopped, 0);
    suites::wait_for_state(vault, 'T');
    r.signal(libc::SIGTERM);
    let out = r.child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGSYS),
        "the broker was killed by its own filter: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("vault killed (SIGKILL)"), "{err}");
    assert!(gone(vault), "the vault outlived the broker");
}

#[test]
fn a_killed_broker_takes_the_vault_with_it() {
    let mut run = Running::start(&[]);
    let pid = run.vault_pid();
    run.wait_for("#1 ");
    run.signal(libc::SIGKILL);
    run.child.wait().unwrap();
    let start = Instant::now();
    while !gone(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the vault still runs a second after its broker died"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the demo on a pseudo-terminal, types `keys` at the prompt, and
/// returns (exit code, everything the terminal showed, slave termios after).
fn demo_on_a_terminal(
    keys: &[u8],
    args: &[&str],
) -> (Option<i32>, String, libc::termios, libc::termios) {
    let (master, slave) = openpty();
    let before = termios_of(&slave);
    let mut child = broker()
        .args(args)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    let mut m = std::fs::File::from(master);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut reader = m.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&shown).contains("password (not echoed)") {
        let chunk = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no prompt");
        shown.extend(chunk);
    }
    // Wait until echo is really off before typing.
    while termios_of(&slave).c_lflag & libc::ECHO != 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    m.write_all(keys).unwrap();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            Instant::now() < deadline,
            "demo hung:\n{}",
            String::from_utf8_lossy(&shown)
        );
        while let Ok(c) = rx.try_recv() {
            shown.extend(c);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let after = termios_of(&slave);
    // Everything the demo wrote is in the terminal before it exits; the
    // vault never had the terminal (/dev/null and a pipe). With the last
    // slave descriptor closed, the master reads what is left, then EIO:
    // the reader ends, and the channel with it.
    drop(slave);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(c) => shown.extend(c),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "the terminal was not closed after the demo exited:\n{}",
                String::from_utf8_lossy(&shown)
            ),
        }
    }
    (
        code,
        String::from_utf8_lossy(&shown).into_owned(),
        before,
        after,
    )
}

#[test]
fn the_terminal_prompt_does_not_echo_handles_backspace_and_is_restored() {
    // "s3cre" + "X" erased with DEL + "é" (two bytes) erased with one DEL +
    // "t!": the password is "s3cret!" (7 bytes).
    let (code, shown, before, after) = demo_on_a_terminal(
        "s3creX\x7fé\x7ft!\r".as_bytes(),
        &["--iterations", "2", "--interval-ms", "10"],
    );
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("7 bytes read into a locked buffer"),
        "{shown}"
    );
    assert!(shown.contains("#2 "), "{shown}");
    assert!(
        !shown.contains("s3cre") && !shown.contains("t!"),
        "the password was echoed:\n{shown}"
    );
    assert_eq!(
        after.c_lflag, before.c_lflag,
        "terminal local modes not restored"
    );
    assert!(after.c_lflag & libc::ECHO != 0);
}

#[test]
fn ctrl_c_at_the_prompt_cancels_cleanly_and_restores_the_terminal() {
    // Cancelled: nothing was stored, so not a success (3), though both
    // processes shut down cleanly.
    let (code, shown, before, after) =
        demo_on_a_terminal(b"half-typed\x03", &["--iterations", "2"]);
    assert_eq!(code, Some(CANCELLED), "{shown}");
    assert!(
        shown.contains("interrupted by Ctrl-C at the password prompt"),
        "{shown}"
    );
    assert!(shown.contains("vault exited cleanly"), "{shown}");
    assert!(!shown.contains("half-typed"), "{shown}");
    assert!(!shown.contains("#1"), "{shown}");
    assert_eq!(
        after.c_lflag, before.c_lflag,
        "terminal local modes not restored"
    );
    // Ctrl-D on an empty entry: the end of the input, cancelled too.
    let (code, shown, before, after) = demo_on_a_terminal(b"ab\x15\x04", &["--iterations", "2"]);
    assert_eq!(code, Some(CANCELLED), "{shown}");
    assert!(
        shown.contains("interrupted by Ctrl-D at the password prompt"),
        "{shown}"
    );
    assert!(shown.contains("vault exited cleanly"), "{shown}");
    assert_eq!(after.c_lflag, before.c_lflag);
}

#[test]
fn the_demo_runs_for_an_unprivileged_user() {
    use std::os::unix::process::CommandExt;
    let dir = suites::binaries_for_nobody();
    let mut child = Command::new(dir.join("broker"))
        .args([
            "demo",
            "--password-stdin",
            "--iterations",
            "3",
            "--interval-ms",
            "10",
        ])
        .uid(suites::NOBODY)
        .gid(suites::NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"unprivileged pw\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "Seccomp 2 ✓  NoNewPrivs 1 ✓  CapEff 0000000000000000 ✓  CapPrm 0000000000000000 ✓"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("#3 ") && stdout.contains("vault exited cleanly"),
        "{stdout}"
    );
    assert!(!stdout.contains('✗'), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_signal_while_reads_run_back_to_back_still_shuts_down_cleanly() {
    // No pause between reads: the signal lands while a read is in flight
    // (or between two); it waits in the signalfd until the read completes.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut run = Running::start(&["--interval-ms", "0"]);
        let pid = run.vault_pid();
        run.wait_for("#20 ");
        run.signal(sig);
        let status = run.child.wait().unwrap();
        let out = run.rest();
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(
            out.contains("received") && out.contains("vault exited cleanly"),
            "{out}"
        );
        assert!(gone(pid));
    }
}

/// Bytes typed on the terminal that the program has not read yet.
fn unread(slave: &OwnedFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into the live local; `slave` is open.
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0);
    n
}

#[test]
fn sigterm_or_sighup_at_the_password_prompt_restores_the_terminal_and_cancels() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let (master, slave) = openpty();
        let before = termios_of(&slave);
        let mut child = broker()
            .args(["--iterations", "1"])
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()))
            .spawn()
            .unwrap();
        let mut m = std::fs::File::from(master);
        let mut shown = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&shown).contains("password (not echoed)") {
            assert!(Instant::now() < deadline, "no prompt");
            let n = m.read(&mut buf).unwrap();
            shown.extend_from_slice(&buf[..n]);
        }
        while termios_of(&slave).c_lflag & libc::ECHO != 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        m.write_all(b"half").unwrap();
        // The signal lands mid-entry: once the program has read what was typed.
        while unread(&slave) != 0 {
            assert!(Instant::now() < deadline, "the typed bytes were never read");
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: signalling our own child.
        let r = unsafe { libc::kill(i32::try_from(child.id()).unwrap(), sig) };
        assert_eq!(r, 0);
        let status = child.wait().unwrap();
        let after = termios_of(&slave);
        drop(slave);
        while let Ok(n) = m.read(&mut buf) {
            if n == 0 {
                break;
            }
            shown.extend_from_slice(&buf[..n]);
        }
        let shown = String::from_utf8_lossy(&shown);
        assert_eq!(status.code(), Some(CANCELLED), "{name}: {shown}");
        assert!(
            shown.contains(&format!("interrupted by {name} at the password prompt")),
            "{shown}"
        );
        assert!(shown.contains("vault exited cleanly"), "{name}: {shown}");
        assert_eq!(
            after.c_lflag, before.c_lflag,
            "{name}: terminal not restored"
        );
    }
}
