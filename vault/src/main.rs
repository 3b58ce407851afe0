//! The vault: the sandboxed key holder, started only by the broker.
//!
//! Start-up order (each step fatal with a clear message):
//! 0. it must have been non-dumpable from its first instruction (the broker
//!    runs it from an execute-only copy; root is exempt) and untraced;
//! 1. non-dumpable, no core files (execve reset them), parent-death signal
//!    and parent check, close every fd but the ring and stdio, clear the
//!    environment, reset signals, drop every capability, no new privileges,
//!    open the ring (refused unless sealed);
//! 2. `CRYPTO_secure_malloc_init` with validated sizes, must return 1;
//! 3. initialise OpenSSL and seed its DRBG, then install the seccomp filter;
//! 4. generate the RSA key inside the sandbox and verify where it lives;
//! 5. serve requests until shutdown.

use std::error::Error;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use common::ring::{Channel, Role, MAX_FRAME};
use common::secret::SecretBuf;

use common::sandbox::Mode;
use vault::key::{self, KeyBits};
use vault::{heap, sandbox, say, serve, startup};

/// Exit status for a configuration the vault refuses (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Exit status for a failed start-up step.
const EXIT_STARTUP: u8 = 1;
/// Exit status for a failure while serving (EX_SOFTWARE).
const EXIT_SERVE: u8 = 70;

#[derive(Debug)]
struct Config {
    parent: i32,
    bits: KeyBits,
    heap_size: usize,
    heap_min: usize,
    mode: Mode,
    /// The rule check: `(filter, rule)` whose calls are trapped and named.
    name_rule: Option<(String, u32)>,
    selftest: Option<Selftest>,
    secret_ring: bool,
    /// Where the secure heap's arena goes: secret memory or not.
    secret_memory: vault::secret_arena::Setting,
    lanes: usize,
}

/// Deliberate failures, made inside the sandbox after key generation, for
/// the regression suite: they show how the vault ends under its filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selftest {
    /// Panic: must end by SIGABRT (the panic hook aborts), never SIGSYS.
    Panic,
    /// Make a system call the policy does not allow (getppid): killed by
    /// SIGSYS when enforcing, named and answered ENOSYS in trap mode.
    ForbiddenSyscall,
    /// Write far more than a pipe holds to standard error, with escape
    /// sequences and forged lines, then serve: the broker must keep
    /// draining (the vault must not block) and show none of it raw.
    FloodStderr,
    /// Once warmed up, take every free block of the arena, then serve: each
    /// decryption must fail for want of room (never fall back to ordinary
    /// memory) while the vault goes on answering and shuts down cleanly.
    FillArena,
    /// Force a reseed of OpenSSL's primary DRBG from the kernel, as it
    /// does on its own after an hour or 256 reseeds of the lanes' DRBGs
    /// (RAND_poll), then serve.
    Reseed,
    /// A real glibc fatal error (a double free caught by its tcache check):
    /// glibc writes its message and aborts.
    GlibcFatal,
    /// A real segmentation fault (a write to address 0): std's handler
    /// resets SIGSEGV to its default action and the fault ends the vault.
    Segv,
    /// A real bus error (a load from a page past the end of a file, mapped
    /// before the sandbox): std's handler resets SIGBUS to its default
    /// action and the fault ends the vault.
    Sigbus,
    /// The clone3 call glibc makes first when anything starts a thread, made
    /// directly (glibc makes it with every signal blocked, where a trap
    /// cannot be named): the overlay answers ENOSYS.
    Clone3,
    /// Lock contention, forced: lane 0 holds a glibc rwlock (the lock type
    /// behind OpenSSL's CRYPTO_THREAD locks: the secure heap's, the DRBG's,
    /// the blinding's) and a glibc mutex (the lock type of malloc's arenas)
    /// until the main thread is waiting for each.
    Contend,
    /// glibc's malloc made to grow its heaps and give the memory back, on
    /// lane 0 (a thread's arena) and on the main thread (the main heap),
    /// with a large block mapped, grown and unmapped on each
    /// ([`common::malloc::exercise`]).
    Heap,
}

const USAGE: &str = "usage: vault --parent-pid PID [--key-bits 2048|3072|4096] [--heap-size BYTES] [--heap-min BYTES]
             [--sandbox-mode enforce|trap|log] [--sandbox-name-rule FILTER:RULE] [--selftest NAME] [--secret-ring] [--lanes N]
             [--secret-memory auto|require|off]
Selftests (the suites' deliberate failures, inside the sandbox): panic, forbidden-syscall, flood-stderr,
fill-arena, reseed, glibc-fatal, segv, sigbus, clone3, contend, heap.
The vault is started by the broker, which passes the sealed rings of its N lanes at fds 3.. (and, with
--secret-ring, their data parts in memfd_secret memory after them); it is not meant to be run by hand.";

fn parse_args() -> Result<Config, String> {
    let mut parent = None;
    let mut bits = KeyBits::B2048;
    let mut heap_size = None;
    let mut heap_min = 16usize;
    let mut mode = Mode::Enforce;
    let mut name_rule = None;
    let mut selftest = None;
    let mut secret_ring = false;
    let mut secret_memory = vault::secret_arena::Setting::default();
    let mut lanes = 1usize;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_str().ok_or("arguments must be UTF-8")?.to_owned();
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.to_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("{name}: not a number: {v:?}"))
        };
        match arg.as_str() {
            "--parent-pid" => {
                parent = Some(
                    i32::try_from(value("--parent-pid")?)
                        .map_err(|_| "--parent-pid out of range")?,
                )
            }
            "--key-bits" => {
                let b = value("--key-bits")?;
                bits = u32::try_from(b)
                    .ok()
                    .and_then(KeyBits::from_bits)
                    .ok_or_else(|| {
                        format!("--key-bits {b} is not offered; use {}", KeyBits::VALID)
                    })?;
            }
            "--heap-size" => {
                heap_size = Some(
                    usize::try_from(value("--heap-size")?)
                        .map_err(|_| "--heap-size out of range")?,
                )
            }
            "--heap-min" => {
                heap_min =
                    usize::try_from(value("--heap-min")?).map_err(|_| "--heap-min out of range")?
            }
            "--sandbox-mode" => {
                let v = args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .unwrap_or_default();
                mode = Mode::parse(&v)
                    .ok_or_else(|| format!("--sandbox-mode {v:?}: use enforce, trap or log"))?;
            }
            "--sandbox-name-rule" => {
                let v = args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .unwrap_or_default();
                let (filter, rule) = common::sandbox::parse_rule(&v).ok_or_else(|| {
                    format!("--sandbox-name-rule {v:?}: use FILTER:RULE, e.g. vault:12")
                })?;
                name_rule = Some((filter.to_owned(), rule));
            }
            "--secret-ring" => secret_ring = true,
            "--secret-memory" => {
                let v = args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .unwrap_or_default();
                secret_memory = vault::secret_arena::Setting::parse(&v)
                    .ok_or_else(|| format!("--secret-memory {v:?}: use auto, require or off"))?;
            }
            "--lanes" => {
                lanes = usize::try_from(value("--lanes")?)
                    .ok()
                    .filter(|n| (1..=startup::MAX_LANES).contains(n))
                    .ok_or_else(|| format!("--lanes: use 1 to {}", startup::MAX_LANES))?;
            }
            "--selftest" => {
                let v = args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .unwrap_or_default();
                selftest = Some(match v.as_str() {
                    "panic" => Selftest::Panic,
                    "forbidden-syscall" => Selftest::ForbiddenSyscall,
                    "flood-stderr" => Selftest::FloodStderr,
                    "fill-arena" => Selftest::FillArena,
                    "reseed" => Selftest::Reseed,
                    "glibc-fatal" => Selftest::GlibcFatal,
                    "segv" => Selftest::Segv,
                    "sigbus" => Selftest::Sigbus,
                    "clone3" => Selftest::Clone3,
                    "contend" => Selftest::Contend,
                    "heap" => Selftest::Heap,
                    _ => {
                        return Err(format!(
                            "--selftest {v:?}: use panic, forbidden-syscall, flood-stderr, fill-arena, reseed, glibc-fatal, segv, sigbus, clone3, contend or heap"
                        ))
                    }
                });
            }
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let parent = parent.ok_or_else(|| format!("--parent-pid is required\n{USAGE}"))?;
    if name_rule.is_some() && mode.is_learning() {
        return Err(
            "--sandbox-name-rule checks one rule of the enforcing policy: not with a learning mode"
                .into(),
        );
    }
    Ok(Config {
        parent,
        bits,
        heap_size: heap_size.unwrap_or(common::budget::default_arena(lanes)),
        heap_min,
        mode,
        name_rule,
        selftest,
        secret_ring,
        secret_memory,
        lanes,
    })
}

fn report(step: &str, e: &dyn Error) {
    let mut msg = format!("vault: {step}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    say(&msg);
}

/// [`Selftest::GlibcFatal`]: the same block freed twice through glibc.
fn selftest_glibc_fatal() {
    // SAFETY: deliberately not safe: a double free, which glibc's tcache
    // check catches, reports and aborts on (it never returns here).
    unsafe {
        let p = libc::malloc(40);
        std::ptr::write_volatile(p.cast::<u8>(), 1);
        libc::free(p);
        libc::free(std::hint::black_box(p));
    }
    say("vault: selftest: glibc did not catch the double free");
}

/// [`Selftest::Contend`]: two threads of the vault, inside the sandbox,
/// made to wait for a glibc rwlock and a glibc mutex, deterministically:
/// the holder lets go of each lock only once the waiter has committed to
/// sleeping on it (glibc has marked the futex as having a waiter, which it
/// does just before the futex system call), so the wait is made on every
/// run, however the threads are scheduled.
mod contend {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Locks {
        rw: UnsafeCell<libc::pthread_rwlock_t>,
        mutex: UnsafeCell<libc::pthread_mutex_t>,
    }

    // SAFETY: the locks are only used through pthread calls, which are
    // made for sharing between threads.
    unsafe impl Sync for Locks {}

    static LOCKS: Locks = Locks {
        rw: UnsafeCell::new(libc::PTHREAD_RWLOCK_INITIALIZER),
        mutex: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
    };

    /// 0: nothing held; 1: both held by the holder; 2: the waiter is done.
    static STEP: AtomicU32 = AtomicU32::new(0);

    /// A u32 word of a glibc lock, read atomically (glibc's own atomics
    /// write it). Offsets from glibc's x86_64 layouts: the rwlock's
    /// `__wrphase_futex` is its third word, the mutex's `__lock` its first.
    fn word<T>(lock: &UnsafeCell<T>, index: usize) -> u32 {
        // SAFETY: `index` is inside the lock (both are at least 40 bytes);
        // the word is 4-aligned, and read with an atomic load.
        unsafe { (*lock.get().cast::<AtomicU32>().add(index)).load(Ordering::SeqCst) }
    }

    fn wait_until(done: impl Fn() -> bool) {
        while !done() {
            std::thread::yield_now();
        }
    }

    /// Lane 0: takes both locks, lets go of each once the main thread
    /// sleeps on it, and waits for it to finish.
    pub fn holder() {
        // SAFETY: static, initialised locks, taken and released once here.
        unsafe {
            libc::pthread_rwlock_wrlock(LOCKS.rw.get());
            libc::pthread_mutex_lock(LOCKS.mutex.get());
        }
        STEP.store(1, Ordering::SeqCst);
        // PTHREAD_RWLOCK_FUTEX_USED (2): a reader is about to sleep.
        wait_until(|| word(&LOCKS.rw, 2) & 2 != 0);
        // SAFETY: held above.
        unsafe { libc::pthread_rwlock_unlock(LOCKS.rw.get()) };
        // 2: locked, with waiters.
        wait_until(|| word(&LOCKS.mutex, 0) == 2);
        // SAFETY: held above.
        unsafe { libc::pthread_mutex_unlock(LOCKS.mutex.get()) };
        wait_until(|| STEP.load(Ordering::SeqCst) == 2);
        crate::say("vault: selftest: both locks were contended");
    }

    /// The main thread: waits for each lock while lane 0 holds it.
    pub fn waiter() {
        wait_until(|| STEP.load(Ordering::SeqCst) == 1);
        // SAFETY: static, initialised locks, taken and released once here.
        unsafe {
            libc::pthread_rwlock_rdlock(LOCKS.rw.get());
            libc::pthread_rwlock_unlock(LOCKS.rw.get());
            libc::pthread_mutex_lock(LOCKS.mutex.get());
            libc::pthread_mutex_unlock(LOCKS.mutex.get());
        }
        STEP.store(2, Ordering::SeqCst);
    }
}

/// The page [`Selftest::Sigbus`] loads from: a shared mapping of an empty
/// memfd, made before the sandbox (0: none).
static SIGBUS_PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Before the sandbox, for [`Selftest::Sigbus`]: maps one page of an empty
/// memfd; any access to it is past the end of the file.
fn prepare_sigbus_page() {
    if let Ok(p) = common::sys::past_the_end_page(c"vault-sigbus") {
        SIGBUS_PAGE.store(p, std::sync::atomic::Ordering::SeqCst);
    }
}

/// [`Selftest::Sigbus`]: a load from the page of [`prepare_sigbus_page`].
fn selftest_sigbus() {
    let page = SIGBUS_PAGE.load(std::sync::atomic::Ordering::SeqCst);
    if page != 0 {
        // SAFETY: deliberately not safe: the page is mapped but past the
        // end of its file, so the load raises SIGBUS (BUS_ADRERR).
        let v = unsafe { std::ptr::read_volatile(page as *const u8) };
        say(&format!(
            "vault: selftest: the load past the end returned {v}"
        ));
    } else {
        say("vault: selftest: no page to fault on");
    }
}

/// The flood of [`Selftest::FloodStderr`]: 1 MiB of lines made to abuse a
/// terminal (escape sequences that clear it, retitle it, move the cursor,
/// ring the bell, a forged broker line), then one line of 256 KiB with no
/// newline until its end.
fn flood_stderr() {
    let mut err = std::io::stderr().lock();
    let evil = "\x1b[2J\x1b[H\x1b]0;owned\x07\rbroker: all secrets verified \u{2713}\x1b[8m\u{202e}\x08\u{9b}0m\n";
    let mut written = 0usize;
    while written < (1 << 20) {
        if err.write_all(evil.as_bytes()).is_err() {
            return;
        }
        written += evil.len();
    }
    let long = vec![b'A'; 256 << 10];
    let _ = err.write_all(&long);
    let _ = writeln!(err);
    let _ = writeln!(
        err,
        "vault: selftest: flooded standard error with {} bytes",
        written + long.len() + 1
    );
}

macro_rules! step {
    ($what:expr, $e:expr, $code:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => {
                report($what, &err);
                return ExitCode::from($code);
            }
        }
    };
}

/// A panic in the key holder never unwinds through half-done state: the
/// message is printed, then the process aborts (SIGABRT), in every profile.
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));
}

common::libcrypto_only_init!();

fn main() -> ExitCode {
    // Step 0: how were we started? (Read before hardening changes it.)
    let dumpable_at_start = common::harden::is_dumpable().unwrap_or(true);
    // Before OpenSSL allocates anything: its allocator, which serves every
    // block from the secure heap once the arena exists.
    let allocator = vault::alloc::install();
    // Step 1: before anything else, since execve may have left us dumpable.
    step!("hardening", common::harden::harden_process(), EXIT_STARTUP);
    // Before any thread: malloc never trims a heap, a path that would open
    // a file inside the sandbox (common::malloc).
    step!(
        "settling malloc for the sandbox",
        common::malloc::settle_for_sandbox(),
        EXIT_STARTUP
    );
    step!(
        "checking how it was started",
        startup::check_start(dumpable_at_start),
        EXIT_STARTUP
    );
    step!(
        "installing OpenSSL's secure-heap allocator",
        allocator,
        EXIT_STARTUP
    );
    abort_on_panic();
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(msg) => {
            say(&format!("vault: {msg}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Everything this process will lock, against the limit it has (it drops
    // CAP_IPC_LOCK below, so the limit binds even when root started it):
    // refused now, with the figure, rather than failing half-way.
    step!(
        "checking the memory-lock budget",
        common::budget::plan_for(
            Some(cfg.lanes),
            cfg.lanes,
            Some(cfg.heap_size),
            common::budget::memlock_limit(),
            false
        ),
        EXIT_CONFIG
    );
    step!(
        "binding to the broker",
        startup::bind_to_parent(cfg.parent),
        EXIT_STARTUP
    );
    let lane_fds = step!(
        "closing inherited fds",
        startup::close_other_fds(cfg.lanes, cfg.secret_ring),
        EXIT_STARTUP
    );
    step!(
        "clearing the environment",
        startup::clear_environment(),
        EXIT_STARTUP
    );
    step!(
        "installing signal handlers",
        startup::install_signal_handlers(),
        EXIT_STARTUP
    );
    step!(
        "dropping capabilities",
        startup::drop_capabilities(),
        EXIT_STARTUP
    );
    step!(
        "setting no-new-privs",
        common::harden::no_new_privs(),
        EXIT_STARTUP
    );
    let mut chans = Vec::with_capacity(cfg.lanes);
    for (ring, data) in lane_fds {
        chans.push(step!(
            "opening the ring",
            Channel::open(ring, data, Role::Vault),
            EXIT_STARTUP
        ));
    }

    // Step 2: the secure heap, with sizes checked before OpenSSL sees them.
    step!(
        "checking the secure heap size",
        heap::validate(
            cfg.heap_size,
            cfg.heap_min,
            cfg.bits.bits(),
            common::budget::min_arena(cfg.lanes)
        ),
        EXIT_CONFIG
    );
    step!(
        "initialising the secure heap",
        heap::init(cfg.heap_size, cfg.heap_min),
        EXIT_STARTUP
    );
    let (arena_start, arena_end) = step!(
        "finding the secure heap's arena",
        vault::alloc::record_arena(cfg.heap_size),
        EXIT_STARTUP
    );
    // Still one thread, and nothing in the arena but OpenSSL's free list.
    match step!(
        "placing the arena in secret memory",
        vault::secret_arena::place(arena_start, arena_end, cfg.secret_memory),
        EXIT_STARTUP
    ) {
        vault::secret_arena::Placement::OrdinaryFallback(why) => eprintln!(
            "vault: secret memory: not used for the arena ({why}); it is in ordinary locked memory, which root can read"
        ),
        vault::secret_arena::Placement::Secret | vault::secret_arena::Placement::OrdinaryAsAsked => {}
    }

    // Step 3: OpenSSL reads its configuration and seeds its DRBG now, while
    // files and the first getrandom are still allowed; then the filter.
    common::openssl_init::without_error_strings();
    openssl::init();
    step!(
        "checking OpenSSL's allocator",
        vault::alloc::check_installed(),
        EXIT_STARTUP
    );
    let mut seed = [0u8; 32];
    step!(
        "seeding the random generator",
        openssl::rand::rand_bytes(&mut seed),
        EXIT_STARTUP
    );
    zeroize::Zeroize::zeroize(&mut seed);
    let mut requests = Vec::with_capacity(cfg.lanes);
    for _ in 0..cfg.lanes {
        requests.push(step!(
            "allocating the request buffers",
            SecretBuf::new(MAX_FRAME as usize),
            EXIT_STARTUP
        ));
    }
    // Every lane runs on a thread of its own whose stack is an arena block
    // (see `vault::arena_thread`: OpenSSL's fast path copies dp and dq onto
    // the stack), lane 0's thread generating the key first. They all exist
    // before the filter, which is then installed on every thread at once
    // (TSYNC): the policy needs no thread creation at all. They wait for the
    // key, which comes after the filter. This (main) thread never touches it.
    let handles: Vec<_> = chans.iter().map(Channel::handle).collect();
    let mut lanes: Vec<(Channel, SecretBuf)> = chans.into_iter().zip(requests).collect();
    let (first_chan, first_request) = lanes.remove(0);
    let mut workers = Vec::with_capacity(lanes.len());
    // Every thread reaches its own code (past glibc's and std's per-thread
    // set-up: rseq, robust list, signal stack) before the filter goes on.
    let started = Arc::new(std::sync::Barrier::new(lanes.len() + 2));
    let warmup = Arc::new(serve::Warmup::new(lanes.len() + 1));
    for (chan, request) in lanes {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<serve::Shared>>();
        let started = started.clone();
        let warmup = warmup.clone();
        let spawned = vault::arena_thread::spawn(move || {
            started.wait();
            match rx.recv() {
                Ok(shared) => {
                    if !warmup.lane(&shared) {
                        // Start-up failed (lane 0 reports it).
                        return Ok(serve::Exit::Shutdown);
                    }
                    let mut server = serve::Server::new(chan, shared, request);
                    let outcome = server.run();
                    server.finish();
                    outcome
                }
                // No key came: start-up failed; nothing to serve.
                Err(_) => Ok(serve::Exit::Shutdown),
            }
        });
        let handle = step!("starting the lane threads", spawned, EXIT_STARTUP);
        workers.push((tx, handle));
    }
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let lane0_started = started.clone();
    let mode = cfg.mode;
    let name_rule = cfg.name_rule.clone();
    let sigbus = cfg.selftest == Some(Selftest::Sigbus);
    let contend_partner = cfg.selftest == Some(Selftest::Contend);
    let heap_main = cfg.selftest == Some(Selftest::Heap);
    let first = vault::arena_thread::spawn(move || -> ExitCode {
        lane0_started.wait();
        if go_rx.recv().is_err() {
            // The filter could not be installed: the main thread reports it.
            return ExitCode::from(EXIT_STARTUP);
        }
        first_lane(cfg, handles, first_chan, first_request, workers, &warmup)
    });
    let first = step!("starting the lane threads", first, EXIT_STARTUP);
    started.wait();
    if mode.is_learning() {
        say(&format!(
            "vault: SANDBOX LEARNING MODE ({}): forbidden system calls are {}, not killed. Never use this for real secrets.",
            mode.as_str(),
            match mode {
                Mode::Trap => "named here and answered ENOSYS",
                _ => "logged by the kernel (dmesg, audit type 1326) and allowed",
            }
        ));
    }
    if sigbus {
        prepare_sigbus_page();
    }
    if let Some((filter, rule)) = &name_rule {
        say(&format!(
            "vault: RULE CHECK: the policy enforcing, with {filter} rule {rule} ({}) taken away: its calls are named here and answered ENOSYS. Policy work only.",
            sandbox::POLICY
                .namers
                .iter()
                .find(|n| n.filter == filter && n.rule == *rule)
                .map_or("no such rule", |n| n.syscall)
        ));
    }
    step!(
        "installing the seccomp filter",
        match &name_rule {
            Some((filter, rule)) => sandbox::install_naming(filter, *rule),
            None => sandbox::install(mode),
        },
        EXIT_STARTUP
    );
    let _ = go_tx.send(());
    if contend_partner {
        contend::waiter();
    }
    if heap_main {
        say(&format!(
            "vault: main thread: {}",
            common::malloc::exercise()
        ));
    }
    first.join().unwrap_or(ExitCode::from(EXIT_SERVE))
}

type Worker = (
    std::sync::mpsc::Sender<Arc<serve::Shared>>,
    vault::arena_thread::ArenaThread<Result<serve::Exit, serve::ServeError>>,
);

/// Lane 0's thread, inside the sandbox: generates the key, hands it to the
/// other lanes, warms every lane up, serves lane 0, and ends them all.
fn first_lane(
    cfg: Config,
    handles: Vec<common::ring::RingHandle>,
    first_chan: Channel,
    first_request: SecretBuf,
    workers: Vec<Worker>,
    warmup: &serve::Warmup,
) -> ExitCode {
    // Step 4: the key, generated inside the sandbox.
    let key = step!(
        "generating the key",
        key::Key::generate(cfg.bits, cfg.heap_size, cfg.heap_min),
        EXIT_STARTUP
    );

    match cfg.selftest {
        Some(Selftest::Panic) => panic!("selftest: a deliberate panic inside the sandbox"),
        Some(Selftest::ForbiddenSyscall) => {
            // SAFETY: getppid has no arguments and no memory effects; the
            // point is that the policy does not allow it.
            let r = unsafe { libc::syscall(libc::SYS_getppid) };
            say(&format!(
                "vault: selftest: the forbidden getppid returned {r}"
            ));
        }
        Some(Selftest::FloodStderr) => flood_stderr(),
        Some(Selftest::Reseed) => {
            extern "C" {
                fn RAND_poll() -> std::ffi::c_int;
            }
            // SAFETY: RAND_poll takes nothing and reseeds the primary DRBG.
            let r = unsafe { RAND_poll() };
            say(&format!("vault: selftest: RAND_poll returned {r}"));
        }
        Some(Selftest::GlibcFatal) => selftest_glibc_fatal(),
        Some(Selftest::Segv) => {
            // SAFETY: deliberately not safe: a write to address 0, a real
            // segmentation fault for the suite.
            unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
        }
        Some(Selftest::Sigbus) => selftest_sigbus(),
        Some(Selftest::Clone3) => {
            // SAFETY: clone3 with no arguments structure and size 0: if the
            // kernel ever ran it, it would refuse the size (EINVAL).
            let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
            say(&format!(
                "vault: selftest: clone3 returned {r} ({})",
                std::io::Error::last_os_error()
            ));
        }
        Some(Selftest::Contend) => contend::holder(),
        Some(Selftest::Heap) => say(&format!("vault: lane 0: {}", common::malloc::exercise())),
        Some(Selftest::FillArena) | None => {}
    }

    // Step 5: serve, one lane per thread; this thread serves the first.
    let shared = Arc::new(step!(
        "preparing to serve",
        serve::Shared::new(key, handles),
        EXIT_STARTUP
    ));
    let mut joins = Vec::with_capacity(workers.len());
    for (tx, handle) in workers {
        // A worker that is gone already cannot take the key: nothing to do.
        let _ = tx.send(shared.clone());
        joins.push(handle);
    }
    // Every lane's first private operation (the Montgomery caches, the
    // blinding, each thread's DRBG: all in the arena), then the baseline.
    step!("warming up the lanes", warmup.main(&shared), EXIT_STARTUP);
    // Held until the vault ends (the selftest's blocks).
    let _filled = (cfg.selftest == Some(Selftest::FillArena)).then(vault::heap::fill);
    let mut server = serve::Server::new(first_chan, shared.clone(), first_request);
    let mut outcome = server.run();
    server.finish();
    // However this lane ended, every lane ends, and the key goes with the
    // last of them.
    shared.stop_all();
    for j in joins {
        if let Some(Err(e)) = j.join() {
            if outcome.is_ok() {
                outcome = Err(e);
            }
        }
    }
    drop(shared);
    match outcome {
        Ok(serve::Exit::Shutdown) | Ok(serve::Exit::Signal(_)) => ExitCode::SUCCESS,
        Err(e) => {
            report("serving", &e);
            ExitCode::from(EXIT_SERVE)
        }
    }
}
