//! `make bench`: what the ring, the sandbox and the wipes cost on top of the
//! RSA operation. Prints a table and writes the same figures as JSON to
//! `target/bench.json`. Everything is measured in one run, so that ratios
//! hold on a noisy machine; nothing is asserted.
//!
//! Roles (the same binary re-executed as the echo peer of a transport):
//! `bench` (default), `bench --echo ring|pipe|socket` (fd 3 or stdin/stdout).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Config};
use common::ring::{Channel, Role, MAX_FRAME};
use common::secret::SecretBuf;

const SIZES: [usize; 3] = [32, 256, 4096];

#[derive(Default)]
struct Stats {
    p50: f64,
    p99: f64,
    per_sec: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let n = samples.len();
    let total: f64 = samples.iter().map(|d| d.as_secs_f64()).sum();
    Stats {
        p50: us(samples[n / 2]),
        p99: us(samples[(n * 99 / 100).min(n - 1)]),
        per_sec: n as f64 / total,
    }
}

/// The JSON written at the end, built by hand (no serde next to a key).
struct Json(Vec<String>);

impl Json {
    fn num(&mut self, key: &str, v: f64) {
        self.0.push(format!("  \"{key}\": {v:.3}"));
    }
    fn get(&self, key: &str) -> Option<f64> {
        let prefix = format!("  \"{key}\": ");
        self.0
            .iter()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
    }
    fn write(&self, path: &str) {
        let _ = std::fs::write(path, format!("{{\n{}\n}}\n", self.0.join(",\n")));
    }
}

fn spawn_echo(kind: &str, fd: Option<BorrowedFd<'_>>, stdio: bool) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.args(["--echo", kind]);
    if let Some(fd) = fd {
        let raw = fd.as_raw_fd();
        // SAFETY: only fcntl/dup2 between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let h = libc::fcntl(raw, libc::F_DUPFD, 10);
                if h == -1 || libc::dup2(h, 3) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    if stdio {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    }
    cmd.spawn().expect("spawn echo peer")
}

/// The echo peer: answers each frame with the same bytes.
fn echo(kind: &str) {
    match kind {
        "ring" => {
            // SAFETY: the parent placed the ring at fd 3 and keeps it open.
            let fd = unsafe { BorrowedFd::borrow_raw(3) };
            let mut chan = Channel::open(fd, None, Role::Vault).expect("ring");
            let mut buf = SecretBuf::new(MAX_FRAME as usize).expect("buf");
            while chan.rx.recv_into(&mut buf, None, &mut || Ok(())).is_ok() {
                let sent = buf.expose(|b| chan.tx.send(&[b], None, &mut || Ok(())));
                if sent.is_err() || buf.expose(|b| b.first() == Some(&0xFF)) {
                    break;
                }
            }
        }
        "pipe" | "socket" => {
            let (mut input, mut output): (Box<dyn Read>, Box<dyn Write>) = if kind == "pipe" {
                (Box::new(std::io::stdin()), Box::new(std::io::stdout()))
            } else {
                // SAFETY: the parent placed the socket at fd 3; we own it now.
                let s = unsafe { UnixStream::from_raw_fd(3) };
                (Box::new(s.try_clone().expect("clone")), Box::new(s))
            };
            let mut len = [0u8; 4];
            let mut buf = vec![0u8; 1 << 20];
            while input.read_exact(&mut len).is_ok() {
                let n = usize::try_from(u32::from_le_bytes(len)).unwrap_or(0);
                if n == 0 || input.read_exact(&mut buf[..n]).is_err() {
                    break;
                }
                if output
                    .write_all(&len)
                    .and_then(|()| output.write_all(&buf[..n]))
                    .and_then(|()| output.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
        _ => {}
    }
}

fn ring_round_trips(size: usize, n: usize) -> Stats {
    let (fds, mut chan) = Channel::create().expect("ring");
    let mut child = spawn_echo("ring", Some(fds.control.as_fd()), false);
    drop(fds);
    let payload = vec![0x5Au8; size];
    let mut buf = SecretBuf::new(MAX_FRAME as usize).expect("buf");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        chan.tx
            .send(&[&payload], None, &mut || Ok(()))
            .expect("send");
        chan.rx
            .recv_into(&mut buf, None, &mut || Ok(()))
            .expect("recv");
        if i >= n / 10 {
            samples.push(t.elapsed());
        }
    }
    let _ = chan.tx.send(&[&[0xFF]], None, &mut || Ok(()));
    let _ = child.wait();
    stats(samples)
}

fn stream_round_trips(kind: &str, size: usize, n: usize) -> Stats {
    let payload = vec![0x5Au8; size];
    let len = u32::try_from(size).unwrap_or(0).to_le_bytes();
    let mut back = vec![0u8; size];
    let mut samples = Vec::with_capacity(n);
    let mut run = |w: &mut dyn Write, r: &mut dyn Read| {
        for i in 0..n + n / 10 {
            let t = Instant::now();
            w.write_all(&len)
                .and_then(|()| w.write_all(&payload))
                .and_then(|()| w.flush())
                .expect("write");
            let mut l = [0u8; 4];
            r.read_exact(&mut l)
                .and_then(|()| r.read_exact(&mut back))
                .expect("read");
            if i >= n / 10 {
                samples.push(t.elapsed());
            }
        }
    };
    if kind == "pipe" {
        let mut child = spawn_echo("pipe", None, true);
        let mut w = child.stdin.take().expect("stdin");
        let mut r = child.stdout.take().expect("stdout");
        run(&mut w, &mut r);
        drop(w);
        let _ = child.wait();
    } else {
        let (mine, theirs) = UnixStream::pair().expect("socketpair");
        let theirs: OwnedFd = theirs.into();
        let mut child = spawn_echo("socket", Some(theirs.as_fd()), false);
        drop(theirs);
        let mut r = mine.try_clone().expect("clone");
        let mut w = mine;
        run(&mut w, &mut r);
        drop(w);
        drop(r);
        let _ = child.wait();
    }
    stats(samples)
}

fn secret(bytes: &[u8]) -> SecretBuf {
    let mut s = SecretBuf::new(bytes.len()).expect("buf");
    s.fill(|b| {
        b[..bytes.len()].copy_from_slice(bytes);
        Ok::<_, ()>(bytes.len())
    })
    .expect("fill");
    s
}

fn read_samples(b: &Broker, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        b.with_secret("pw", |p| std::hint::black_box(p.len()))
            .expect("read");
        samples.push(t.elapsed());
    }
    samples
}

/// A decryption configuration measured in a process of its own: OpenSSL's
/// allocator is chosen once per process, before it allocates anything, and
/// a secure-heap arena can be made only once. The child generates its key,
/// then answers `run N` with N decryption times (microseconds) on one line.
struct Child {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Child {
    fn start(kind: &str, bits: u32) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args(["--child", kind, &bits.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn a measuring child");
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut c = Child { child, out };
        let ready = c.line();
        assert_eq!(ready, "ready", "{kind}: {ready}");
        c
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut l).expect("child output");
        l.trim().to_owned()
    }

    fn samples(&mut self, n: usize) -> Vec<Duration> {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "run {n}").expect("to child");
        stdin.flush().expect("flush");
        self.line()
            .split_whitespace()
            .map(|v| Duration::from_secs_f64(v.parse::<f64>().expect("sample") / 1e6))
            .collect()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The measuring child (`bench --child vault|evp BITS`): `vault` is the
/// vault's own method in the vault's own setting (its allocator installed
/// first, every OpenSSL allocation in the arena, the key generated there,
/// warmed up); `evp` is what an application without a vault would do:
/// `EVP_PKEY_decrypt` with OpenSSL's defaults, ordinary heap.
fn child_main(kind: &str, bits: u32) {
    let kb = vault::key::KeyBits::from_bits(bits).expect("bits");
    let mut decrypt: Box<dyn FnMut() -> Duration> = match kind {
        "vault" | "vault-secret" => {
            vault::alloc::install().expect("the vault's allocator, first thing");
            let arena = common::budget::default_arena(1);
            vault::heap::init(arena, 16).expect("secure heap");
            let (start, end) = vault::alloc::record_arena(arena).expect("arena");
            if kind == "vault-secret" {
                let placed =
                    vault::secret_arena::place(start, end, common::secretmem::Setting::Require)
                        .expect("the arena on secret memory");
                assert_eq!(placed, vault::secret_arena::Placement::Secret);
            }
            let key = vault::key::Key::generate(kb, arena, 16).expect("keygen");
            key.warm_up().expect("warm-up");
            let public = openssl::rsa::Rsa::public_key_from_der(&key.public_der().expect("der"))
                .expect("pub");
            let ct = oaep_encrypt(&public, b"0123456789abcdef0123456789abcdef");
            Box::new(move || {
                let t = Instant::now();
                let (mut out, len) = key.decrypt(&ct).expect("decrypt");
                std::hint::black_box(len);
                out.wipe_and_verify();
                drop(out);
                t.elapsed()
            })
        }
        _ => {
            let rsa = openssl::rsa::Rsa::generate(bits).expect("keygen");
            let public = openssl::rsa::Rsa::from_public_components(
                rsa.n().to_owned().unwrap(),
                rsa.e().to_owned().unwrap(),
            )
            .unwrap();
            let ct = oaep_encrypt(&public, b"0123456789abcdef0123456789abcdef");
            let pkey = openssl::pkey::PKey::from_rsa(rsa).expect("pkey");
            let mut out = vec![0u8; 1024];
            Box::new(move || {
                let t = Instant::now();
                let mut d = openssl::encrypt::Decrypter::new(&pkey).expect("dec");
                d.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
                    .expect("pad");
                d.set_rsa_oaep_md(openssl::hash::MessageDigest::sha256())
                    .expect("md");
                d.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
                    .expect("mgf");
                std::hint::black_box(d.decrypt(&ct, &mut out).expect("decrypt"));
                t.elapsed()
            })
        }
    };
    for _ in 0..50 {
        decrypt();
    }
    println!("ready");
    let mut line = String::new();
    while {
        line.clear();
        std::io::stdin().read_line(&mut line).unwrap_or(0) > 0
    } {
        let n: usize = line
            .trim()
            .strip_prefix("run ")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let v: Vec<String> = (0..n)
            .map(|_| format!("{:.2}", decrypt().as_secs_f64() * 1e6))
            .collect();
        println!("{}", v.join(" "));
    }
}

/// Key generation alone, in a process set up as the vault is.
fn keygen_samples(bits: u32, n: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for _ in 0..n {
        let o = Command::new(std::env::current_exe().expect("exe"))
            .args(["--child", "keygen", &bits.to_string()])
            .output()
            .expect("keygen child");
        let us: f64 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("keygen time");
        out.push(Duration::from_secs_f64(us / 1e6));
    }
    out
}

fn keygen_child(bits: u32) {
    vault::alloc::install().expect("allocator");
    let arena = common::budget::default_arena(1);
    vault::heap::init(arena, 16).expect("secure heap");
    let kb = vault::key::KeyBits::from_bits(bits).expect("bits");
    let t = Instant::now();
    drop(vault::key::Key::generate(kb, arena, 16).expect("keygen"));
    println!("{:.1}", t.elapsed().as_secs_f64() * 1e6);
}

/// The original (the Node.js proof of concept, reconstructed in
/// `../shared/seed/node-original/`), measured in this run: its reads per
/// second, if node and the reconstruction are here.
fn original_reads_per_s() -> Option<f64> {
    let script = std::env::var_os("ORIGINAL_BENCH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/seed/node-original/bench.js")
        });
    if !script.is_file() {
        return None;
    }
    let out = Command::new("node")
        .arg(&script)
        .arg("3000")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("\"gets_per_s\":").nth(1)?;
    v.split([',', '}']).next()?.trim().parse().ok()
}

/// Time per read of the real `broker demo` loop: (time of 3000 iterations
/// minus time of 300) / 2700, so that start-up and key generation drop out;
/// the median of `pairs` pairs of runs.
fn demo_per_read_us(pairs: usize) -> Option<f64> {
    let broker = suites::bin_dir().join("broker");
    let run = |n: u32| -> Option<f64> {
        let t = Instant::now();
        let mut c = match Command::new(&broker)
            .args(["demo", "--password-stdin", "--interval-ms", "0"])
            .arg("--iterations")
            .arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("broker demo: cannot start {}: {e}", broker.display());
                return None;
            }
        };
        if let Some(mut stdin) = c.stdin.take() {
            if let Err(e) = stdin.write_all(b"demo-password\n") {
                eprintln!("broker demo: cannot write its password: {e}");
            }
        }
        match c.wait_with_output() {
            Ok(out) if out.status.success() => Some(t.elapsed().as_secs_f64()),
            Ok(out) => {
                eprintln!(
                    "broker demo failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("broker demo: {e}");
                None
            }
        }
    };
    let mut per: Vec<f64> = Vec::new();
    for _ in 0..pairs {
        let long = run(3000)?;
        let short = run(300)?;
        per.push((long - short) / 2700.0 * 1e6);
    }
    per.sort_by(f64::total_cmp);
    Some(per[per.len() / 2])
}

/// Runs the demo until its read number `reads`, stops the broker there,
/// and measures the broker and its vault (see [`distinct_pages`]).
fn demo_distinct_pages(reads: u64) -> Option<(u64, std::collections::BTreeMap<&'static str, u64>)> {
    use std::io::BufRead;
    let mut c = Command::new(suites::bin_dir().join("broker"))
        .args([
            "demo",
            "--password-stdin",
            "--interval-ms",
            "0",
            "--iterations",
        ])
        .arg((reads + 1000).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    c.stdin.take()?.write_all(b"demo-password\n").ok()?;
    let mut out = std::io::BufReader::new(c.stdout.take()?);
    let mut vault = None;
    let mut line = String::new();
    let mark = format!("#{reads} ");
    while out.read_line(&mut line).ok()? > 0 {
        if let Some(rest) = line.trim_start().strip_prefix("vault pid ") {
            vault = rest
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok());
        }
        if line.contains(&mark) {
            break;
        }
        line.clear();
    }
    let pid = i32::try_from(c.id()).ok()?;
    // SAFETY: stopping our own child; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let measured = vault.map(|v| distinct_pages(&[c.id(), v], 4 << 20));
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        libc::kill(pid, libc::SIGCONT);
    }
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    });
    let _ = c.wait();
    measured
}

/// What a mapping of a process is, for the memory breakdown.
fn kind_of(path: &str, flags: &str, len: u64, arena: u64) -> &'static str {
    if path.contains("privsep-vault-ring") {
        "rings"
    } else if path.starts_with("/secretmem") {
        "secret memory (arena, rings' data, plaintext buffers)"
    } else if path.contains(".so") {
        "libraries"
    } else if path.starts_with('/') || path.starts_with("/memfd:") {
        "programs"
    } else if path == "[stack]" {
        "stacks"
    } else if path == "[heap]" {
        "heap"
    } else if path.is_empty() && flags.contains("lo") && flags.contains("dd") && len <= arena {
        "arena and locked buffers"
    } else {
        "other anonymous (heap arenas, thread stacks)"
    }
}

/// The resident pages of several processes with every physical page
/// counted once (the union of their page frame numbers, from
/// `/proc/PID/pagemap`, which shows them to root), in KiB, by kind.
fn distinct_pages(
    pids: &[u32],
    arena: u64,
) -> (u64, std::collections::BTreeMap<&'static str, u64>) {
    use std::os::unix::fs::FileExt;
    let page = 4096u64;
    let mut seen = std::collections::HashSet::new();
    let mut by_kind: std::collections::BTreeMap<&'static str, u64> = Default::default();
    for &pid in pids {
        let Ok(maps) = suites::scan::regions(pid) else {
            continue;
        };
        let Ok(pm) = std::fs::File::open(format!("/proc/{pid}/pagemap")) else {
            continue;
        };
        for r in maps {
            if r.path == "[vsyscall]" {
                continue;
            }
            let kind = kind_of(&r.path, &r.flags.join(" "), r.len(), arena);
            let pages = usize::try_from(r.len() / page).unwrap_or(0);
            let mut buf = vec![0u8; pages * 8];
            if pm.read_exact_at(&mut buf, r.start / page * 8).is_err() {
                continue;
            }
            for e in buf.chunks_exact(8) {
                let v = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
                let present = v >> 63 == 1;
                let pfn = v & ((1 << 55) - 1);
                if present && pfn != 0 && seen.insert(pfn) {
                    *by_kind.entry(kind).or_default() += page / 1024;
                }
            }
        }
    }
    (seen.len() as u64 * page / 1024, by_kind)
}

fn oaep_encrypt(public: &openssl::rsa::Rsa<openssl::pkey::Public>, plain: &[u8]) -> Vec<u8> {
    let pkey = openssl::pkey::PKey::from_rsa(public.clone()).expect("pkey");
    let mut e = openssl::encrypt::Encrypter::new(&pkey).expect("enc");
    e.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .expect("pad");
    e.set_rsa_oaep_md(openssl::hash::MessageDigest::sha256())
        .expect("md");
    e.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
        .expect("mgf");
    let mut out = vec![0u8; e.encrypt_len(plain).expect("len")];
    let n = e.encrypt(plain, &mut out).expect("encrypt");
    out.truncate(n);
    out
}

/// Per mapping (by path, anonymous ones by address) of a process: private
/// and shared resident KiB, and proportional set size.
fn smaps(pid: u32) -> Vec<(String, u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out: Vec<(String, u64, u64, u64)> = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let first = w.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let path = line
                .split_whitespace()
                .nth(5)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("[anon {first}]"));
            out.push((path, 0, 0, 0));
            continue;
        }
        let kib: u64 = w.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        if let Some(m) = out.last_mut() {
            match first {
                "Private_Clean:" | "Private_Dirty:" => m.1 += kib,
                "Shared_Clean:" | "Shared_Dirty:" => m.2 += kib,
                "Pss:" => m.3 += kib,
                _ => {}
            }
        }
    }
    out
}

/// Resident memory of several processes together, with the pages they
/// share (libraries, the ring) counted once: private pages of each, plus for
/// each shared mapping the largest resident size any of them has. And the
/// sum of their proportional set sizes.
fn together_kib(pids: &[u32]) -> (u64, u64) {
    let mut private = 0;
    let mut pss = 0;
    let mut shared: std::collections::BTreeMap<String, u64> = Default::default();
    for &pid in pids {
        for (path, p, sh, ps) in smaps(pid) {
            private += p;
            pss += ps;
            let e = shared.entry(path).or_default();
            *e = (*e).max(sh);
        }
    }
    (private + shared.values().sum::<u64>(), pss)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
        })
        .unwrap_or(0)
}

fn scaling(b: &Arc<Broker>, threads: usize, per_thread: usize) -> f64 {
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    b.with_secret("pw", |p| std::hint::black_box(p.len()))
                        .expect("read");
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("thread");
    }
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let bits = args.get(3).and_then(|b| b.parse().ok()).unwrap_or(2048);
        match args.get(2).map(String::as_str) {
            Some("keygen") => keygen_child(bits),
            Some(kind) => child_main(kind, bits),
            None => {}
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some("--echo") {
        echo(args.get(2).map(String::as_str).unwrap_or(""));
        return;
    }
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let scale = |n: usize| if quick { (n / 10).max(20) } else { n };
    let mut json = Json(Vec::new());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "privsep-vault benchmark ({cpus} CPUs; {})",
        if quick { "quick" } else { "full" }
    );

    // BENCH_ONLY=reads,demo (say) runs those sections alone, for work on
    // one figure; the full run is what `make bench` reports.
    let only = std::env::var("BENCH_ONLY").ok();
    let section = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|s| s == name))
    };
    if section("round-trip") {
        println!("\nRound trip between two processes, without cryptography (microseconds)");
        println!(
            "{:>8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10}",
            "payload",
            "ring p50",
            "ring p99",
            "pipe p50",
            "pipe p99",
            "socket p50",
            "socket p99",
            "ring/pipe"
        );
        for size in SIZES {
            let n = scale(20_000);
            let ring = ring_round_trips(size, n);
            let pipe = stream_round_trips("pipe", size, n);
            let sock = stream_round_trips("socket", size, n);
            let ratio = ring.p50 / pipe.p50;
            println!(
                "{size:>8} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {ratio:>10.2}",
                ring.p50, ring.p99, pipe.p50, pipe.p99, sock.p50, sock.p99
            );
            for (name, s) in [("ring", &ring), ("pipe", &pipe), ("socket", &sock)] {
                json.num(&format!("round_trip_{name}_{size}_p50_us"), s.p50);
                json.num(&format!("round_trip_{name}_{size}_p99_us"), s.p99);
            }
            json.num(&format!("round_trip_ring_over_pipe_{size}"), ratio);
        }
    }

    if section("reads") {
        println!("\nSecret read (with_secret, end to end through both processes) vs the same decryption in process (microseconds)");
        println!("(the vault's method and OpenSSL's EVP each measured in a process of its own, in alternating rounds)");
        println!(
            "{:>6} {:>10} {:>10} {:>10} {:>16} {:>16} {:>10} {:>14}",
            "bits",
            "read p50",
            "read p99",
            "reads/s",
            "vault method p50",
            "openssl EVP p50",
            "overhead",
            "method/EVP"
        );
        for bits in [2048u32, 3072, 4096] {
            let n = scale(match bits {
                2048 => 3000,
                3072 => 1000,
                _ => 500,
            });
            let b = Broker::spawn(Config {
                key_bits: bits,
                ..Config::default()
            })
            .expect("spawn");
            b.store("pw", secret(b"0123456789abcdef0123456789abcdef"))
                .expect("store");
            read_samples(&b, n / 10);
            let mut method = Child::start("vault", bits);
            let mut evp = Child::start("evp", bits);
            // Alternating rounds, so that a change in the machine's load hits
            // all three alike; the overhead is the median of the rounds' ratios.
            let (mut r, mut m, mut e) = (Vec::new(), Vec::new(), Vec::new());
            let mut ratios = Vec::new();
            // Each batch drops its first fifth: the warm-up after switching
            // between the two (caches, the scheduler's placement of the threads).
            let steady = |mut v: Vec<Duration>| v.split_off(v.len() / 5);
            for _ in 0..7 {
                let rr = steady(read_samples(&b, n / 5));
                let mm = steady(method.samples(n / 5));
                ratios.push(stats(rr.clone()).p50 / stats(mm.clone()).p50);
                r.extend(rr);
                m.extend(mm);
                e.extend(steady(evp.samples(n / 5)));
            }
            drop(b);
            ratios.sort_by(f64::total_cmp);
            let (read, method, evp) = (stats(r), stats(m), stats(e));
            let overhead = ratios[ratios.len() / 2] - 1.0;
            let (lo, hi) = (ratios[0] - 1.0, ratios[ratios.len() - 1] - 1.0);
            println!(
                "{bits:>6} {:>10.1} {:>10.1} {:>10.0} {:>16.1} {:>16.1} {:>9.1}% {:>13.3}x",
                read.p50,
                read.p99,
                read.per_sec,
                method.p50,
                evp.p50,
                overhead * 100.0,
                method.p50 / evp.p50
            );
            json.num(
                &format!("vault_method_over_evp_{bits}"),
                method.p50 / evp.p50,
            );
            json.num(&format!("read_{bits}_p50_us"), read.p50);
            json.num(&format!("read_{bits}_p99_us"), read.p99);
            json.num(&format!("read_{bits}_per_s"), read.per_sec);
            json.num(
                &format!("in_process_vault_method_{bits}_p50_us"),
                method.p50,
            );
            json.num(&format!("in_process_openssl_evp_{bits}_p50_us"), evp.p50);
            json.num(&format!("read_{bits}_overhead_vs_same_method"), overhead);
            json.num(&format!("read_{bits}_overhead_min"), lo);
            json.num(&format!("read_{bits}_overhead_max"), hi);
            println!(
                "{:>6} overhead per round: median {:.1}%, from {:.1}% to {:.1}%",
                "",
                overhead * 100.0,
                lo * 100.0,
                hi * 100.0
            );
        }
    }
    if section("secret") {
        println!("\nSecret memory: the vault's decryption with its arena in memfd_secret memory and in ordinary locked memory");
        println!("(each in a process of its own, in alternating rounds; end to end: a broker and vault with --secret-memory require and off)");
        println!(
            "{:>6} {:>14} {:>14} {:>10} {:>14} {:>14} {:>10}",
            "bits", "secret p50", "ordinary p50", "ratio", "read secret", "read ordinary", "ratio"
        );
        for bits in [2048u32, 4096] {
            let n = scale(if bits == 2048 { 3000 } else { 500 });
            let mut secret_child = Child::start("vault-secret", bits);
            let mut ordinary_child = Child::start("vault", bits);
            let spawn = |setting| {
                let b = Broker::spawn(Config {
                    key_bits: bits,
                    secret_memory: setting,
                    ..Config::default()
                })
                .expect("spawn");
                b.store("pw", secret(b"0123456789abcdef0123456789abcdef"))
                    .expect("store");
                read_samples(&b, n / 10);
                b
            };
            let secret_broker = spawn(broker::SecretMemory::Require);
            let ordinary_broker = spawn(broker::SecretMemory::Off);
            let steady = |mut v: Vec<Duration>| v.split_off(v.len() / 5);
            let (mut ms, mut mo, mut rs, mut ro) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..7 {
                ms.extend(steady(secret_child.samples(n / 5)));
                mo.extend(steady(ordinary_child.samples(n / 5)));
                rs.extend(steady(read_samples(&secret_broker, n / 5)));
                ro.extend(steady(read_samples(&ordinary_broker, n / 5)));
            }
            let (ms, mo, rs, ro) = (stats(ms), stats(mo), stats(rs), stats(ro));
            println!(
                "{bits:>6} {:>14.1} {:>14.1} {:>9.3}x {:>14.1} {:>14.1} {:>9.3}x",
                ms.p50,
                mo.p50,
                ms.p50 / mo.p50,
                rs.p50,
                ro.p50,
                rs.p50 / ro.p50
            );
            json.num(
                &format!("in_process_vault_method_secret_{bits}_p50_us"),
                ms.p50,
            );
            json.num(
                &format!("in_process_vault_method_ordinary_{bits}_p50_us"),
                mo.p50,
            );
            json.num(
                &format!("secret_over_ordinary_method_{bits}"),
                ms.p50 / mo.p50,
            );
            json.num(&format!("read_secret_{bits}_p50_us"), rs.p50);
            json.num(&format!("read_ordinary_{bits}_p50_us"), ro.p50);
            json.num(
                &format!("secret_over_ordinary_read_{bits}"),
                rs.p50 / ro.p50,
            );
        }
        // What each setting locks (VmLck, which counts secret memory too),
        // in an application and its vault with the default lanes.
        for setting in ["require", "off"] {
            let mut d = suites::driver::Driver::start(None, &["--secret-memory", setting], None);
            d.store(b"0123456789abcdef");
            assert!(d.ask("reads 100").starts_with("reads 100 "));
            let lck = |pid: u32| {
                suites::proc_status_field(pid, "VmLck")
                    .and_then(|v| {
                        v.split_whitespace()
                            .next()
                            .and_then(|n| n.parse::<u64>().ok())
                    })
                    .unwrap_or(0)
            };
            let (app, vault) = (lck(d.pid()), lck(d.vault));
            println!(
                "  locked with --secret-memory {setting:<7}: application {app} KiB, vault {vault} KiB (VmLck; the memory-lock budget allows for all of it)"
            );
            json.num(&format!("locked_app_kib_secret_{setting}"), app as f64);
            json.num(&format!("locked_vault_kib_secret_{setting}"), vault as f64);
        }
    }
    if section("memory") {
        println!("\nStore, start-up, memory");
        let b = Broker::spawn(Config::default()).expect("spawn");
        let mut store = Vec::new();
        for i in 0..scale(500) {
            let t = Instant::now();
            b.store(
                &format!("s{i}"),
                secret(b"0123456789abcdef0123456789abcdef"),
            )
            .expect("store");
            store.push(t.elapsed());
        }
        let store = stats(store);
        drop(b);
        let mut spawn = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let b = Broker::spawn(Config::default()).expect("spawn");
            spawn.push(t.elapsed());
            drop(b);
        }
        let spawn = stats(spawn);
        let keygen = stats(keygen_samples(2048, 10));
        println!(
            "  store (RSA-OAEP-SHA256 encryption, 32 B):   p50 {:>8.1} us",
            store.p50
        );
        println!(
            "  start-up (spawn to ready, RSA-2048):        p50 {:>8.1} ms",
            spawn.p50 / 1000.0
        );
        println!(
            "  key generation alone, in process:           p50 {:>8.1} ms",
            keygen.p50 / 1000.0
        );
        json.num("store_2048_p50_us", store.p50);
        json.num("startup_2048_p50_ms", spawn.p50 / 1000.0);
        json.num("keygen_2048_p50_ms", keygen.p50 / 1000.0);
        // Resident memory of a minimal application and its vault after
        // 10,000 reads: as it comes (the library's defaults: libcrypto
        // alone, no error strings), then an application that uses the
        // `openssl` crate for itself, with the crate's own set-up (libssl,
        // error strings) and with the README's set-up for one that uses no
        // TLS.
        for (program, suffix, what) in [
            (
                "residue-driver",
                "",
                "the library's defaults, nothing done about OpenSSL",
            ),
            (
                "openssl-app-driver",
                "_openssl_crate",
                "the application also uses the openssl crate, as that crate sets OpenSSL up",
            ),
            (
                "lean-driver",
                "_lean",
                "the same, with libcrypto_only_init! and no error strings",
            ),
        ] {
            let mut d = suites::driver::Driver::start_program(program, None, &[], None);
            d.store(b"0123456789abcdef");
            let done = d.ask("reads 10000");
            assert!(done.starts_with("reads 10000 "), "{done}");
            let (app, vault) = (rss_kib(d.pid()), rss_kib(d.vault));
            let (together, pss) = together_kib(&[d.pid(), d.vault]);
            let status = d.ask("status");
            let arena: u64 = status
                .split(' ')
                .nth(3)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let (distinct, kinds) = distinct_pages(&[d.pid(), d.vault], arena);
            println!("  an application and its vault after 10,000 reads ({what}):");
            println!("                                              RSS: application {app} KiB, vault {vault} KiB (each with its shared libraries)");
            println!("                                              both, every physical page counted once (pagemap): {distinct} KiB");
            for (k, v) in &kinds {
                println!("                                                {v:>6} KiB {k}");
            }
            println!("                                              (smaps estimate, shared mappings counted once: {together} KiB; PSS sum {pss} KiB)");
            json.num(&format!("rss_app_kib{suffix}"), app as f64);
            json.num(&format!("rss_vault_kib{suffix}"), vault as f64);
            json.num(&format!("distinct_kib_together{suffix}"), distinct as f64);
            for (k, v) in &kinds {
                json.num(
                    &format!(
                        "distinct_kib_{}{suffix}",
                        k.split_whitespace().next().unwrap_or(k)
                    ),
                    *v as f64,
                );
            }
            json.num(&format!("rss_together_kib{suffix}"), together as f64);
            json.num(&format!("pss_together_kib{suffix}"), pss as f64);
            drop(d);
        }
        // The same for the two processes of the demo (the `broker` program
        // and its vault) after 10,000 reads, stopped there to be measured.
        if let Some((kib, kinds)) = demo_distinct_pages(10_000) {
            println!("  the demo (broker program and vault) after 10,000 reads, every physical page counted once: {kib} KiB");
            for (k, v) in &kinds {
                println!("                                                {v:>6} KiB {k}");
            }
            json.num("demo_distinct_kib_together", kib as f64);
        }
        // The arena's high-water mark over a run of reads on every lane.
        let b = Broker::spawn(Config::default()).expect("spawn");
        b.store("hw", secret(&[7u8; 60_000])).expect("store");
        b.store("pw", secret(b"0123456789abcdef")).expect("store");
        std::thread::scope(|s| {
            for name in ["hw", "pw", "hw", "pw"] {
                let b = &b;
                s.spawn(move || {
                    for _ in 0..50 {
                        b.with_secret(name, |p| std::hint::black_box(p.len()))
                            .expect("read");
                    }
                });
            }
        });
        let hs = b.heap_status().expect("status");
        println!(
        "  secure heap: arena {} KiB, baseline {} KiB, high-water mark {} KiB (with 64 KiB envelopes on every lane), {} allocation(s) refused",
        hs.arena_size / 1024,
        hs.baseline / 1024,
        hs.high_water / 1024,
        hs.refused
    );
        json.num("arena_bytes", hs.arena_size as f64);
        json.num("arena_baseline_bytes", hs.baseline as f64);
        json.num("arena_high_water_bytes", hs.high_water as f64);
        drop(b);
    }
    if section("scaling") {
        println!("\nScaling: reads per second with 1, 2 and 4 client threads (RSA-2048)");
        let b = Arc::new(Broker::spawn(Config::default()).expect("spawn"));
        b.store("pw", secret(b"0123456789abcdef0123456789abcdef"))
            .expect("store");
        let per = scale(600);
        // Rounds alternate between the thread counts; each figure is the median
        // of its rounds, so that a change in the machine's load hits all alike.
        let mut rates: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..5 {
            for (slot, t) in [1usize, 2, 4].into_iter().enumerate() {
                rates[slot].push(scaling(&b, t, per * t.min(2)));
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let base = median(&mut rates[0]);
        let mut line_out = format!("  1 thread {base:>8.0}/s");
        json.num("scaling_1_per_s", base);
        for (slot, t) in [(1usize, 2usize), (2, 4)] {
            let r = median(&mut rates[slot]);
            line_out.push_str(&format!("   {t} threads {r:>8.0}/s ({:.2}x)", r / base));
            json.num(&format!("scaling_{t}_per_s"), r);
            json.num(&format!("scaling_{t}_over_1"), r / base);
        }
        println!("{line_out}");
    }
    if section("demo") {
        println!("\nThe demo loop and the original, in this run");
        match demo_per_read_us(if quick { 3 } else { 11 }) {
            Some(us) => {
                println!("  broker demo (every check and line printed, output to /dev/null): {us:>8.1} us per read");
                json.num("demo_per_read_us", us);
            }
            None => println!("  broker demo: could not be run"),
        }
        match original_reads_per_s() {
        Some(r) => {
            let ours = json.get("read_2048_per_s").unwrap_or(0.0);
            println!("  the Node.js original (bench.js 3000): {r:>8.0} reads/s, {:>8.1} us per read", 1e6 / r);
            println!("  this project, end to end at 2048 bits: {ours:>8.0} reads/s: {:.2}x the original", ours / r);
            if let Some(d) = json.get("demo_per_read_us") {
                println!("  the demo loop per read over the original's per read: {:.2}", d / (1e6 / r));
            }
            json.num("original_reads_per_s", r);
            json.num("original_per_read_us", 1e6 / r);
            json.num("read_2048_over_original", ours / r);
        }
        None => println!("  the Node.js original: not found (node, and ../shared/seed/node-original/bench.js or ORIGINAL_BENCH)"),
    }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench.json");
    json.write(path);
    println!("\nwritten to target/bench.json");
}
