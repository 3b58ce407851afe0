//! OpenSSL set up with libcrypto alone: the vault, the `broker` program and
//! an application that follows the README's advice for one that uses no
//! TLS (`broker::libcrypto_only_init!`, here `lean-driver`) never map
//! libssl, and still work. The positive control is the same application
//! set up as the `openssl` crate does by itself (`residue-driver`): it maps
//! libssl, so the check below sees the library when it is there.

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

/// Starts `program`, stores and reads a secret, and returns what the
/// application and its vault map, each tagged with whether it maps libcrypto
/// (the check would be blind without it) and libssl.
fn application(program: &str) -> [(bool, bool); 2] {
    let mut d = Driver::start_program(program, None, &[], None);
    d.store(b"0123456789abcdef");
    assert_eq!(
        d.ask("read"),
        "read 16",
        "{program}: a read through the vault"
    );
    let seen = [d.pid(), d.vault].map(|pid| {
        let libs = libraries(pid);
        (
            libs.iter().any(|l| l.starts_with("libcrypto.so")),
            maps_libssl(pid),
        )
    });
    assert_eq!(d.ask("shutdown"), "shutdown exited cleanly");
    seen
}

#[test]
fn an_application_set_up_for_libcrypto_alone_and_its_vault_map_no_libssl() {
    let [app, vault] = application("lean-driver");
    assert_eq!(app, (true, false), "lean-driver: (libcrypto, libssl)");
    assert_eq!(vault, (true, false), "its vault: (libcrypto, libssl)");
}

#[test]
fn positive_control_the_same_application_as_the_openssl_crate_sets_it_up_maps_libssl() {
    let [app, vault] = application("residue-driver");
    assert_eq!(app, (true, true), "residue-driver: (libcrypto, libssl)");
    assert_eq!(vault, (true, false), "its vault: (libcrypto, libssl)");
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
