//! The soak run (`make soak`, not part of `make test`): a million reads
//! through the real processes; resident memory of both and the vault's
//! secure-heap usage must come back to their baselines: nothing grows.

use suites::driver::{canary, Driver};

fn rss_kib(pid: u32) -> u64 {
    suites::proc_status_field(pid, "VmRSS")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn heap_used(d: &mut Driver) -> u64 {
    let s = d.ask("status");
    s.split(' ')
        .nth(4)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("status: {s}"))
}

#[test]
#[ignore = "long: run with `make soak`"]
fn a_million_reads_leave_memory_where_it_was() {
    let total: u64 = std::env::var("SOAK_READS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut d = Driver::start(None, &[], None);
    d.store(&canary("SOAK-"));
    // Warm up: allocators settle, pools fill.
    assert!(d.ask("reads 2000").starts_with("reads 2000 "));
    let (app0, vault0, heap0) = (rss_kib(d.pid()), rss_kib(d.vault), heap_used(&mut d));
    println!(
        "{:>10} {:>12} {:>12} {:>14}",
        "reads", "app RSS KiB", "vault RSS KiB", "secure heap B"
    );
    println!("{:>10} {app0:>12} {vault0:>12} {heap0:>14}", 0);
    let step = (total / 10).max(1);
    let mut done = 0;
    let start = std::time::Instant::now();
    while done < total {
        let n = step.min(total - done);
        assert!(d
            .ask(&format!("reads {n}"))
            .starts_with(&format!("reads {n} ")));
        done += n;
        println!(
            "{done:>10} {:>12} {:>12} {:>14}",
            rss_kib(d.pid()),
            rss_kib(d.vault),
            heap_used(&mut d)
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{done} reads in {secs:.1} s ({:.0} reads/s)",
        done as f64 / secs
    );
    let (app1, vault1, heap1) = (rss_kib(d.pid()), rss_kib(d.vault), heap_used(&mut d));
    // OpenSSL's blinding may widen a number once when it refreshes (see
    // common::protocol::SETTLE_SLACK); a leak would be far past that.
    assert!(
        heap1 >= heap0 && heap1 - heap0 <= common::protocol::SETTLE_SLACK,
        "the secure heap grew from {heap0} to {heap1} bytes"
    );
    // Page-granular noise is allowed; a leak of even a few bytes per read
    // would be megabytes here.
    assert!(
        app1 <= app0 + 512,
        "the application grew from {app0} to {app1} KiB"
    );
    assert!(
        vault1 <= vault0 + 512,
        "the vault grew from {vault0} to {vault1} KiB"
    );
    let status = d.ask("status");
    let decrypts: u64 = status.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(decrypts, total + 2000);
}
