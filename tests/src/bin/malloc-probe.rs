//! The malloc suite's probe: glibc's heap exercised under one of the
//! project's filters, with trimming as the programs leave it or as glibc's
//! default has it.
//!
//! ```text
//! malloc-probe vault|broker settled|trim-on
//! ```
//!
//! Starts a thread and waits until it runs (before the filter, which allows
//! neither a new thread nor what std's start of one calls), settles malloc
//! with `common::malloc::settle_for_sandbox` (`settled`, as both programs
//! do) or not (`trim-on`), installs the filter through the same code path
//! as the program it belongs to, then has the thread run
//! `common::malloc::exercise` (a thread's arena grown by 48 MiB and given
//! back) and prints what it says on stderr (the only output the vault's
//! filter allows) before the process exits, the thread still waiting (its
//! end would need calls the vault's filter does not allow). A call the
//! filter refuses kills the probe with SIGSYS: with trimming on, glibc's
//! first trim of a thread's heap opens `/proc/sys/vm/overcommit_memory`.

use std::process::ExitCode;
use std::sync::mpsc::channel;

use common::sandbox::Mode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [filter, trim] = args.as_slice() else {
        eprintln!("usage: malloc-probe vault|broker settled|trim-on");
        return ExitCode::from(2);
    };
    let (go, go_rx) = channel::<()>();
    let (ready_tx, ready) = channel::<()>();
    let (said_tx, said) = channel::<String>();
    // The sender is never dropped (not even when `main` returns and drops
    // its locals before the process exits), so the thread never ends.
    let (never, never_rx) = channel::<()>();
    std::mem::forget(never);
    let spawned = std::thread::Builder::new()
        .name("malloc-probe".into())
        .spawn(move || {
            // Running (std's start of a thread makes calls no filter here
            // allows), and with its arena (its first allocation), as every
            // thread of both programs is before their filter.
            let _ = ready_tx.send(());
            if go_rx.recv().is_ok() {
                let _ = said_tx.send(common::malloc::exercise());
            }
            // Never returns: a thread's end is not what is probed.
            let _ = never_rx.recv();
        });
    if let Err(e) = spawned {
        eprintln!("malloc-probe: cannot start its thread: {e}");
        return ExitCode::from(2);
    }
    if ready.recv().is_err() {
        return ExitCode::from(2);
    }
    match trim.as_str() {
        "settled" => {
            if let Err(e) = common::malloc::settle_for_sandbox() {
                eprintln!("malloc-probe: {e}");
                return ExitCode::from(2);
            }
        }
        "trim-on" => {}
        other => {
            eprintln!("malloc-probe: {other:?}: use settled or trim-on");
            return ExitCode::from(2);
        }
    }
    let installed = match filter.as_str() {
        "vault" => vault::sandbox::install(Mode::Enforce),
        "broker" => broker::sandbox::install(Mode::Enforce),
        other => {
            eprintln!("malloc-probe: unknown filter {other:?}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = installed {
        eprintln!("malloc-probe: cannot install the {filter} filter: {e}");
        return ExitCode::from(2);
    }
    if go.send(()).is_err() {
        return ExitCode::from(2);
    }
    match said.recv() {
        Ok(line) => {
            eprintln!("malloc-probe: {line}");
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::from(2),
    }
}
