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

/// The vault's own decryption (legacy RSA object, no Montgomery cache,
/// secure-heap buffers), in this process.
struct VaultMethod {
    key: vault::key::Key,
    ct: Vec<u8>,
}

impl VaultMethod {
    fn new(bits: u32) -> Self {
        let kb = vault::key::KeyBits::from_bits(bits).expect("bits");
        // One key alive at a time: its baseline is the arena's usage with it.
        let key = vault::key::Key::generate(kb, 4 << 20, 16).expect("keygen");
        let public =
            openssl::rsa::Rsa::public_key_from_der(&key.public_der().expect("der")).expect("pub");
        let ct = oaep_encrypt(&public, b"0123456789abcdef0123456789abcdef");
        VaultMethod { key, ct }
    }

    fn samples(&self, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let (mut out, len) = self.key.decrypt(&self.ct).expect("decrypt");
                std::hint::black_box(len);
                out.wipe_and_verify();
                drop(out);
                t.elapsed()
            })
            .collect()
    }
}

/// Key generation alone, in process, with the vault's code.
fn keygen_samples(bits: u32, n: usize) -> Vec<Duration> {
    let kb = vault::key::KeyBits::from_bits(bits).expect("bits");
    (0..n)
        .map(|_| {
            let t = Instant::now();
            drop(vault::key::Key::generate(kb, 4 << 20, 16).expect("keygen"));
            t.elapsed()
        })
        .collect()
}

/// OpenSSL's default in-process RSA-OAEP-SHA256 decryption (EVP, with its
/// Montgomery cache): what an application without a vault would do.
struct OpensslDefault {
    pkey: openssl::pkey::PKey<openssl::pkey::Private>,
    ct: Vec<u8>,
}

impl OpensslDefault {
    fn new(bits: u32) -> Self {
        let rsa = openssl::rsa::Rsa::generate(bits).expect("keygen");
        let public = openssl::rsa::Rsa::from_public_components(
            rsa.n().to_owned().unwrap(),
            rsa.e().to_owned().unwrap(),
        )
        .unwrap();
        let ct = oaep_encrypt(&public, b"0123456789abcdef0123456789abcdef");
        OpensslDefault {
            pkey: openssl::pkey::PKey::from_rsa(rsa).expect("pkey"),
            ct,
        }
    }

    fn samples(&self, n: usize) -> Vec<Duration> {
        let mut out = vec![0u8; 1024];
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let mut d = openssl::encrypt::Decrypter::new(&self.pkey).expect("dec");
                d.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
                    .expect("pad");
                d.set_rsa_oaep_md(openssl::hash::MessageDigest::sha256())
                    .expect("md");
                d.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
                    .expect("mgf");
                std::hint::black_box(d.decrypt(&self.ct, &mut out).expect("decrypt"));
                t.elapsed()
            })
            .collect()
    }
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
    if args.get(1).map(String::as_str) == Some("--echo") {
        echo(args.get(2).map(String::as_str).unwrap_or(""));
        return;
    }
    // The in-process baseline uses the vault's own key code, which refuses
    // to run without a secure heap.
    vault::heap::init(4 << 20, 16).expect("secure heap for the in-process baseline");
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

    println!("\nSecret read (with_secret, end to end through both processes) vs the same decryption in process (microseconds)");
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>16} {:>16} {:>10} {:>10}",
        "bits",
        "read p50",
        "read p99",
        "reads/s",
        "vault method p50",
        "openssl EVP p50",
        "overhead",
        "vs EVP"
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
        let method = VaultMethod::new(bits);
        let evp = OpensslDefault::new(bits);
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
            "{bits:>6} {:>10.1} {:>10.1} {:>10.0} {:>16.1} {:>16.1} {:>9.1}% {:>9.2}x",
            read.p50,
            read.p99,
            read.per_sec,
            method.p50,
            evp.p50,
            overhead * 100.0,
            read.p50 / evp.p50
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
    // Resident memory of a minimal application and its vault after 10,000 reads.
    let mut d = suites::driver::Driver::start(None, &[], None);
    d.store(b"0123456789abcdef");
    let done = d.ask("reads 10000");
    assert!(done.starts_with("reads 10000 "), "{done}");
    let (app, vault) = (rss_kib(d.pid()), rss_kib(d.vault));
    let (together, pss) = together_kib(&[d.pid(), d.vault]);
    println!("  resident memory after 10,000 reads:         application {app} KiB, vault {vault} KiB (each with its shared libraries)");
    println!("                                              together {together} KiB with shared pages counted once; PSS sum {pss} KiB");
    json.num("rss_app_kib", app as f64);
    json.num("rss_vault_kib", vault as f64);
    json.num("rss_together_kib", together as f64);
    json.num("pss_together_kib", pss as f64);
    drop(d);

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
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench.json");
    json.write(path);
    println!("\nwritten to target/bench.json");
}
