//! The example an application starts from (`broker/examples/embed.rs`),
//! run the ways the README ("Using the library") tells a user: installed
//! as `make install` lays programs out (it finds its vault in
//! `../libexec/privsep-vault/`), with the vault's path as its argument,
//! from where cargo puts it (`target/<profile>/examples/`) with a vault
//! installed by `sudo make install` in the fixed place under the prefix
//! baked in at build time (`broker::launch::installed_vault`), and from
//! there with no vault anywhere (the error names every place looked).
//!
//! The fixed place is a machine-wide path (`/usr/local/libexec/...` by
//! default): the suites never write it. They run the example in a mount
//! namespace of its own (`unshare --mount`) where a fixture directory of
//! the test's is bind-mounted over the prefix, so the example looks in the
//! very path it was built with, and finds there what the test put.
//!
//! `cargo test --workspace` builds the examples before any suite runs
//! (`make test` also builds them explicitly).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The password the example is given on its standard input.
const PASSWORD: &str = "correct horse battery staple";

/// The example as cargo built it.
fn example() -> PathBuf {
    let p = suites::bin_dir().join("examples").join("embed");
    assert!(
        p.is_file(),
        "{} not found: `cargo test --workspace` (or `cargo build -p broker --example embed`) builds it",
        p.display()
    );
    p
}

/// A fresh root-owned 0755 directory under the temp dir (which the trust
/// check accepts: /tmp is root-owned and sticky).
fn fixture_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("privsep-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Runs `program ARGS` with the password on its standard input, as `nobody`
/// through a shell of that uid when `as_nobody` (the way a user starts a
/// program: no capabilities left at the `execve`), else as root. Returns
/// the exit code, stdout and stderr.
fn run(program: &Path, args: &[&Path], as_nobody: bool) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec \"$0\" \"$@\"")
        .arg(program)
        .args(args);
    if as_nobody {
        cmd.uid(suites::NOBODY).gid(suites::NOBODY);
    }
    finish(cmd)
}

/// Runs `program ARGS` as root, with the password on its standard input,
/// in a mount namespace of its own where `over` is bind-mounted on
/// `broker::launch::INSTALL_PREFIX`: the machine's own prefix is neither
/// seen nor touched.
fn run_with_prefix(over: &Path, program: &Path, args: &[&Path]) -> (Option<i32>, String, String) {
    let prefix = Path::new(broker::launch::INSTALL_PREFIX);
    assert!(
        prefix.is_dir(),
        "the install prefix baked into this build, {}, is not a directory to mount over",
        prefix.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg("mount --bind \"$1\" \"$2\" || exit 97; shift 2; exec \"$@\"")
        .arg("sh")
        .arg(over)
        .arg(prefix)
        .arg(program)
        .args(args);
    let out = finish(cmd);
    assert_ne!(
        out.0,
        Some(97),
        "could not bind-mount {} over {}: {}",
        over.display(),
        prefix.display(),
        out.2
    );
    out
}

fn finish(mut cmd: Command) -> (Option<i32>, String, String) {
    // The example may exit before it reads (no vault found): a broken pipe
    // is its answer, not a failure here (run_with_input takes it so).
    suites::run_with_input(cmd.current_dir("/"), format!("{PASSWORD}\n").as_bytes())
}

/// What every successful run prints, whoever runs it from wherever.
fn assert_went_through_the_vault(out: &str, err: &str) {
    let len = PASSWORD.len();
    for line in [
        format!("embed: stored \"db-password\" ({len} bytes)"),
        format!("embed: with_secret lent {len} bytes to the closure"),
        "embed: vault exited cleanly".to_owned(),
    ] {
        assert!(out.contains(&line), "{line:?} missing:\n{out}\n{err}");
    }
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "the password was printed:\n{out}\n{err}"
    );
}

#[test]
fn installed_as_make_install_lays_it_out_the_example_finds_its_vault_and_is_protected_from_its_start(
) {
    let prefix = fixture_dir("embed-prefix");
    suites::install_bins(&prefix);
    // The application installed the same way: root-owned, execute-only.
    let program = prefix.join("bin/embed");
    suites::install_file(&example(), &program, 0o711);
    let (code, out, err) = run(&program, &[], true);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("embed: installed execute-only: non-dumpable from its first instruction"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "run from {}, installed execute-only",
            prefix.join("libexec/privsep-vault/vault").display()
        )),
        "{out}"
    );
    assert!(!err.contains("warning"), "{err}");
    assert_went_through_the_vault(&out, &err);
    let _ = std::fs::remove_dir_all(prefix);
}

#[test]
fn given_the_vault_path_the_example_runs_from_a_readable_copy_and_warns() {
    let dir = suites::copy_for_nobody(&["vault"]);
    let program = dir.join("embed");
    suites::install_file(&example(), &program, 0o755);
    let vault = dir.join("vault");
    let (code, out, err) = run(&program, &[&vault], true);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains(
            "embed: started from a readable file, re-executed from an execute-only sealed copy"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "run from an execute-only sealed copy (memfd, mode 0111) of {}",
            vault.display()
        )),
        "{out}"
    );
    assert!(
        err.contains("can be read by the user running it") && err.contains("execute-only"),
        "{err}"
    );
    assert_went_through_the_vault(&out, &err);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn from_where_cargo_puts_it_the_example_finds_the_vault_sudo_make_install_put_in_the_fixed_place() {
    let prefix = fixture_dir("embed-fixed");
    suites::install_bins(&prefix);
    let program = example();
    let (code, out, err) = run_with_prefix(&prefix, &program, &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("embed: running as root"), "{out}");
    // Root reads every file, so the vault runs from a sealed copy: of the
    // one in the fixed place.
    assert!(
        out.contains(&format!(
            "run from an execute-only sealed copy (memfd, mode 0111) of {}",
            broker::launch::installed_vault().display()
        )),
        "{out}"
    );
    assert_went_through_the_vault(&out, &err);
    let _ = std::fs::remove_dir_all(prefix);
}

#[test]
fn where_cargo_puts_the_example_with_no_vault_installed_the_error_names_every_place_looked() {
    // The prefix, empty: whatever this machine has installed is not seen.
    let empty = fixture_dir("embed-empty");
    let program = example();
    let (code, out, err) = run_with_prefix(&empty, &program, &[]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let dir = suites::bin_dir();
    let fixed = broker::launch::installed_vault();
    assert!(
        err.contains(&format!(
            "no vault binary found; looked for {}, {} and {}: ",
            dir.join("libexec/privsep-vault/vault").display(),
            dir.join("examples/vault").display(),
            fixed.display()
        )),
        "{err}"
    );
    // The fixes it gives work from here: the install puts the vault in
    // the fixed place (the test above), or the path is given (below).
    assert!(
        err.contains(&format!(
            "`sudo make install` in the privsep-vault checkout (it puts the vault in {})",
            fixed.display()
        )),
        "{err}"
    );
    assert!(err.contains("or give its path"), "{err}");
    assert!(out.is_empty(), "{out}");
    // Positive control: the same program, in the same namespace, given the
    // built vault, runs.
    let (code, out, err) = run_with_prefix(&empty, &program, &[&suites::binary("vault")]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("embed: running as root"), "{out}");
    assert_went_through_the_vault(&out, &err);
    let _ = std::fs::remove_dir_all(empty);
}
