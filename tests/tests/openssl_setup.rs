//! What OpenSSL costs an application that embeds the broker library, and
//! its vault. The library calls libcrypto alone, and keeps OpenSSL's error
//! strings unloaded unless told otherwise (`Config::openssl_error_strings`),
//! so an application that does nothing about OpenSSL (`residue-driver`)
//! never maps libssl and builds no error strings; its vault neither. An
//! application that uses the `openssl` crate for itself and follows the
//! README's advice for one that uses no TLS (`broker::libcrypto_only_init!`
//! and `broker::openssl_without_error_strings`, here `lean-driver`) does
//! not either. The positive controls: the same application with the
//! `openssl` crate's own set-up (`openssl-app-driver`) maps libssl and has
//! the strings, and the plain one asked for the strings has them, so both
//! checks see what they look for when it is there.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use suites::driver::Driver;

/// The shared objects mapped by process `pid`, by file name.
fn libraries(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut libs: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains(".so"))
        .filter_map(|p| p.rsplit('/').next().map(str::to_owned))
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

fn maps_libssl(pid: u32) -> bool {
    libraries(pid).iter().any(|l| l.starts_with("libssl.so"))
}

/// What one process has of OpenSSL.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// It maps libcrypto (the libssl check would be blind without it).
    libcrypto: bool,
    libssl: bool,
}

/// Starts `program` with `args`, stores and reads a secret, and returns what
/// the application and its vault map, and whether the application has
/// OpenSSL's error strings.
fn application(program: &str, args: &[&str]) -> (Seen, Seen, String) {
    let mut d = Driver::start_program(program, None, args, None);
    d.store(b"0123456789abcdef");
    assert_eq!(
        d.ask("read"),
        "read 16",
        "{program}: a read through the vault"
    );
    let [app, vault] = [d.pid(), d.vault].map(|pid| Seen {
        libcrypto: libraries(pid).iter().any(|l| l.starts_with("libcrypto.so")),
        libssl: maps_libssl(pid),
    });
    let strings = d.ask("openssl-strings");
    assert_eq!(d.ask("shutdown"), "shutdown exited cleanly");
    (app, vault, strings)
}

const LIBCRYPTO_ALONE: Seen = Seen {
    libcrypto: true,
    libssl: false,
};

/// `program` and its vault map libcrypto and not libssl, and the program
/// has no error strings.
fn libcrypto_alone_without_strings(program: &str) {
    let (app, vault, strings) = application(program, &[]);
    assert_eq!(app, LIBCRYPTO_ALONE, "{program}");
    assert_eq!(vault, LIBCRYPTO_ALONE, "its vault");
    assert_eq!(strings, "openssl-strings unloaded", "{program}");
}

#[test]
fn an_application_that_does_nothing_about_openssl_maps_no_libssl_and_has_no_error_strings() {
    libcrypto_alone_without_strings("residue-driver");
}

#[test]
fn positive_control_asked_for_them_the_application_has_the_error_strings() {
    let (app, _, strings) = application("residue-driver", &["--openssl-error-strings", "yes"]);
    assert_eq!(app, LIBCRYPTO_ALONE, "residue-driver");
    assert_eq!(strings, "openssl-strings loaded");
}

#[test]
fn an_application_using_the_openssl_crate_set_up_for_libcrypto_alone_maps_no_libssl() {
    libcrypto_alone_without_strings("lean-driver");
}

#[test]
fn positive_control_the_openssl_crates_own_set_up_maps_libssl_and_loads_the_strings() {
    let (app, vault, strings) = application("openssl-app-driver", &[]);
    assert_eq!(
        app,
        Seen {
            libcrypto: true,
            libssl: true
        },
        "openssl-app-driver"
    );
    assert_eq!(vault, LIBCRYPTO_ALONE, "its vault");
    assert_eq!(strings, "openssl-strings loaded");
}

#[test]
fn the_broker_program_maps_no_libssl() {
    let mut demo = Command::new(suites::binary("broker"))
        .args([
            "demo",
            "--password-stdin",
            "--iterations",
            "2",
            "--interval-ms",
            "86400000",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker demo");
    demo.stdin
        .take()
        .expect("stdin")
        .write_all(b"pw\n")
        .expect("password");
    let mut out = BufReader::new(demo.stdout.take().expect("stdout"));
    let mut line = String::new();
    // The first read is done: the broker has used OpenSSL for all it does.
    while !line.contains("#1 ") {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("demo output") > 0,
            "the demo ended before its first read"
        );
    }
    let libs = libraries(demo.id());
    suites::rulecheck::signal(demo.id(), libc::SIGTERM);
    let status = demo.wait().expect("wait");
    assert!(
        libs.iter().any(|l| l.starts_with("libcrypto.so")),
        "broker: {libs:?}"
    );
    assert!(
        !libs.iter().any(|l| l.starts_with("libssl.so")),
        "broker maps libssl: {libs:?}"
    );
    assert_eq!(status.code(), Some(0), "the demo ends well on SIGTERM");
}
