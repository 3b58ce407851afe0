//! glibc's malloc inside the sandbox: both programs turn heap trimming off
//! before their filter (`common::malloc::settle_for_sandbox`), because
//! glibc's first trim of a thread's heap opens
//! `/proc/sys/vm/overcommit_memory`, which neither filter allows: the first
//! `free` that gave a thread's memory back would kill the process.
//!
//! Each test runs `malloc-probe`, which installs the real filter and has a
//! thread grow its arena by 48 MiB and give it all back. Settled, the probe
//! lives; the positive control leaves trimming on and must be killed by
//! SIGSYS, proving that the exercise reaches the path the setting closes.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

fn probe(filter: &str, trim: &str) -> Output {
    Command::new(suites::binary("malloc-probe"))
        .args([filter, trim])
        .output()
        .expect("malloc-probe")
}

fn says(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn settled_lives(filter: &str) {
    let out = probe(filter, "settled");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{filter}: {:?}\n{}",
        out.status,
        says(&out)
    );
    assert!(
        says(&out).contains(
            "heap grown and given back on a thread's arena: every allocation succeeded: true"
        ),
        "{filter}: the exercise did not run on a thread's arena:\n{}",
        says(&out)
    );
}

fn trim_on_is_killed(filter: &str) {
    let out = probe(filter, "trim-on");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSYS),
        "{filter}: with trimming on, giving the heap back should have opened a file and been killed: {:?}\n{}",
        out.status,
        says(&out)
    );
}

#[test]
fn a_thread_heap_given_back_under_the_vault_filter_is_fine_once_settled() {
    settled_lives("vault");
}

#[test]
fn a_thread_heap_given_back_under_the_broker_filter_is_fine_once_settled() {
    settled_lives("broker");
}

#[test]
fn positive_control_with_trimming_on_the_vault_filter_kills_the_trim() {
    trim_on_is_killed("vault");
}

#[test]
fn positive_control_with_trimming_on_the_broker_filter_kills_the_trim() {
    trim_on_is_killed("broker");
}
