//! The real `vault` binary against a broker that is wrong or hostile: it must
//! refuse with a clear message and a distinct exit status, never panic.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::ring::{layout, Channel, REGION_LEN};
use common::sys::Mapping;

/// Starts the vault with `ring` (if any) at fd 3 and `args`, its output
/// piped, its arena in ordinary memory (`--secret-memory off` before
/// `args`, which may say otherwise): these tests read its memory, and
/// secret memory would hide what they look for.
fn spawn_vault(ring: Option<&OwnedFd>, args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(suites::binary("vault"));
    cmd.args(["--secret-memory", "off"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let raw = ring.map(|f| f.as_raw_fd());
    // SAFETY: only dup2/close (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            match raw {
                Some(fd) if fd != 3 => {
                    if libc::dup2(fd, 3) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Some(_) => {
                    libc::fcntl(3, libc::F_SETFD, 0);
                }
                None => {
                    libc::close(3);
                }
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn vault")
}

/// Runs the vault with `ring` (if any) at fd 3 and `args`; kills it after 20 s.
fn run_vault(ring: Option<&OwnedFd>, args: &[&str]) -> Output {
    let mut child = spawn_vault(ring, args);
    // Read both pipes while waiting: a vault that writes more than a pipe
    // holds would otherwise block (and be reported as hung).
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = collect(Box::new(child.stdout.take().expect("stdout")));
    let err = collect(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the vault hung");
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn me() -> String {
    std::process::id().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn unsealed_ring() -> OwnedFd {
    // SAFETY: plain syscall with a static name.
    let fd = unsafe {
        libc::memfd_create(
            c"unsealed".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    assert!(fd >= 0);
    // SAFETY: we own the new fd.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    file.set_len(u64::try_from(REGION_LEN).unwrap()).unwrap();
    file.into()
}

#[test]
fn an_unsealed_ring_is_refused() {
    let fd = unsealed_ring();
    let out = run_vault(Some(&fd), &["--parent-pid", &me()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the ring fd is not sealed"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("F_SEAL_SHRINK"), "{}", stderr(&out));
}

/// Runs the vault with a proper ring and `extra` arguments, asks for its
/// public key, then shuts it down; returns its output and the channel.
fn serve_once(extra: &[&str]) -> (Output, Channel) {
    let (fds, mut chan) = Channel::create().unwrap();
    let fd = fds.control;
    let fd2 = fd.try_clone().unwrap();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let t = std::thread::spawn(move || {
        let mut args = vec!["--parent-pid".to_owned(), me()];
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_vault(Some(&fd2), &args)
    });
    drop(fd);
    let mut buf = common::secret::SecretBuf::new(common::ring::MAX_FRAME as usize).unwrap();
    let deadline = Some(Instant::now() + Duration::from_secs(30));
    let req = common::protocol::encode_request(7, &common::protocol::Request::PublicKey);
    chan.tx
        .send(&req.parts(), deadline, &mut || Ok(()))
        .unwrap();
    chan.rx
        .recv_into(&mut buf, deadline, &mut || Ok(()))
        .unwrap();
    let kind =
        buf.expose(|f| common::protocol::decode_response(f).map(|(id, r)| (id, format!("{r:?}"))));
    let (id, what) = kind.unwrap();
    assert_eq!(id, 7);
    assert!(what.starts_with("PublicKey("), "{what}");
    let req = common::protocol::encode_request(8, &common::protocol::Request::Shutdown);
    chan.tx
        .send(&req.parts(), deadline, &mut || Ok(()))
        .unwrap();
    chan.rx
        .recv_into(&mut buf, deadline, &mut || Ok(()))
        .unwrap();
    (t.join().unwrap(), chan)
}

#[test]
fn a_sealed_ring_is_accepted_and_served() {
    // Positive control for the refusals in this file: the same harness with a
    // proper ring gets a working vault that answers and exits 0 on shutdown.
    let (out, chan) = serve_once(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        chan.nonzero_bytes(),
        0,
        "both sides wiped every frame they read"
    );
}

#[test]
fn the_flood_selftest_writes_raw_escape_sequences_for_the_broker_to_clean() {
    // Positive control of launch.rs's flood tests: what the vault writes
    // itself is far more than a pipe holds and full of escape sequences;
    // only the broker's drain makes it harmless.
    let (out, _chan) = serve_once(&["--selftest", "flood-stderr"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.len() > 1 << 20, "{} bytes", out.stderr.len());
    let raw = &out.stderr;
    for needle in [
        &b"\x1b[2J"[..],
        b"\x1b]0;owned\x07",
        b"\r",
        "\u{202e}".as_bytes(),
    ] {
        assert!(
            raw.windows(needle.len()).any(|w| w == needle),
            "the flood lacks {needle:?}"
        );
    }
}

#[test]
fn a_missing_ring_fd_is_refused() {
    let out = run_vault(None, &["--parent-pid", &me()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fd 3 is not open"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_vault_whose_parent_is_not_the_spawner_refuses_to_run() {
    let (fds, _chan) = Channel::create().unwrap();
    let fd = fds.control;
    let out = run_vault(Some(&fd), &["--parent-pid", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("refusing to run"), "{}", stderr(&out));
}

#[test]
fn bad_options_are_refused_with_the_valid_values() {
    let (fds, _chan) = Channel::create().unwrap();
    let fd = fds.control;
    let out = run_vault(Some(&fd), &["--parent-pid", &me(), "--heap-size", "100000"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a power of two"),
        "{}",
        stderr(&out)
    );
    let (fds, _chan) = Channel::create().unwrap();
    let fd = fds.control;
    let out = run_vault(Some(&fd), &["--parent-pid", &me(), "--key-bits", "1024"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2048, 3072 or 4096"),
        "{}",
        stderr(&out)
    );
    let (fds, _chan) = Channel::create().unwrap();
    let fd = fds.control;
    let out = run_vault(
        Some(&fd),
        &[
            "--parent-pid",
            &me(),
            "--key-bits",
            "4096",
            "--heap-size",
            "32768",
        ],
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("too small for a 4096-bit key"),
        "{}",
        stderr(&out)
    );
    let (fds, _chan) = Channel::create().unwrap();
    let fd = fds.control;
    let out = run_vault(Some(&fd), &["--parent-pid", &me(), "--heap-min", "24"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
}

/// Writes a frame header straight into the request ring, as a hostile broker.
fn hostile_frame(len: u32, head: u32) -> (OwnedFd, Mapping) {
    let (fds, chan) = Channel::create().unwrap();
    let fd = fds.control;
    drop(chan);
    let map = Mapping::shared(fd.as_fd(), REGION_LEN).unwrap();
    // SAFETY: offsets inside the REGION_LEN mapping; the control words are
    // 4-byte aligned atomics (page-aligned control block).
    #[allow(clippy::cast_ptr_alignment)]
    unsafe {
        map.as_ptr()
            .add(layout::REQUEST_DATA)
            .cast::<[u8; 4]>()
            .write_volatile(len.to_le_bytes());
        let head_word = &*map
            .as_ptr()
            .add(layout::REQUEST_CONTROL + layout::HEAD)
            .cast::<AtomicU32>();
        head_word.store(head, Ordering::SeqCst);
    }
    (fd, map)
}

#[test]
fn a_frame_length_past_the_ring_end_is_a_protocol_error_not_a_panic() {
    // A length that claims more bytes than were published.
    let (fd, map) = hostile_frame(50_000, 64);
    let out = run_vault(Some(&fd), &["--parent-pid", &me()]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("corrupted by the peer") && err.contains("past the published end"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    drop(map);
    // A length over the frame limit, and a head beyond the ring's capacity.
    for (len, head, words) in [
        (u32::MAX, 64, "over the limit"),
        (
            8,
            2 * common::ring::RING_CAPACITY,
            "beyond the ring's capacity",
        ),
    ] {
        let (fd, _map) = hostile_frame(len, head);
        let out = run_vault(Some(&fd), &["--parent-pid", &me()]);
        assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
        assert!(stderr(&out).contains(words), "{}", stderr(&out));
    }
}

#[test]
fn a_garbage_request_gets_a_typed_error_and_the_vault_keeps_serving() {
    let (fds, mut chan) = Channel::create().unwrap();
    let fd = fds.control;
    let fd2 = fd.try_clone().unwrap();
    let t = std::thread::spawn(move || run_vault(Some(&fd2), &["--parent-pid", &me()]));
    drop(fd);
    let mut buf = common::secret::SecretBuf::new(common::ring::MAX_FRAME as usize).unwrap();
    let deadline = Some(Instant::now() + Duration::from_secs(30));
    for garbage in [
        &b"\x09\x01\0\0\x05\0\0\0"[..],
        b"\x01\x77\0\0\x06\0\0\0",
        b"\x01",
        b"\x01\x02\0\0\x07\0\0\0short",
    ] {
        chan.tx.send(&[garbage], deadline, &mut || Ok(())).unwrap();
        chan.rx
            .recv_into(&mut buf, deadline, &mut || Ok(()))
            .unwrap();
        let resp =
            buf.expose(|f| common::protocol::decode_response(f).map(|(_, r)| format!("{r:?}")));
        let resp = resp.unwrap();
        assert!(resp == "Error(Malformed)", "{garbage:?} -> {resp}");
    }
    let req = common::protocol::encode_request(9, &common::protocol::Request::Shutdown);
    chan.tx
        .send(&req.parts(), deadline, &mut || Ok(()))
        .unwrap();
    chan.rx
        .recv_into(&mut buf, deadline, &mut || Ok(()))
        .unwrap();
    let out = t.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut s = String::new();
    let _ = out.stderr.as_slice().read_to_string(&mut s);
    assert!(s.contains("refused a malformed request"), "{s}");
}

/// A real vault on a fresh ring, run in a thread; the test plays the broker,
/// honestly through `chan` or hostilely through `raw`.
struct Hostile {
    vault: std::thread::JoinHandle<Output>,
    chan: Channel,
    raw: Mapping,
    buf: common::secret::SecretBuf,
}

impl Hostile {
    fn start() -> Self {
        let (fds, chan) = Channel::create().unwrap();
        let fd2 = fds.control.try_clone().unwrap();
        let raw = Mapping::shared(fds.control.as_fd(), REGION_LEN).unwrap();
        let vault = std::thread::spawn(move || run_vault(Some(&fd2), &["--parent-pid", &me()]));
        let buf = common::secret::SecretBuf::new(common::ring::MAX_FRAME as usize).unwrap();
        Hostile {
            vault,
            chan,
            raw,
            buf,
        }
    }

    #[allow(clippy::cast_ptr_alignment)]
    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: a page-aligned control word inside the REGION_LEN mapping.
        unsafe { &*self.raw.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    fn ask(&mut self, id: u32) -> String {
        let deadline = Some(Instant::now() + Duration::from_secs(30));
        let req = common::protocol::encode_request(id, &common::protocol::Request::HeapStatus);
        self.chan
            .tx
            .send(&req.parts(), deadline, &mut || Ok(()))
            .unwrap();
        self.chan
            .rx
            .recv_into(&mut self.buf, deadline, &mut || Ok(()))
            .unwrap();
        self.buf
            .expose(|f| format!("{:?}", common::protocol::decode_response(f)))
    }

    fn finish(self) -> Output {
        self.vault.join().unwrap()
    }
}

#[test]
fn a_hostile_broker_moving_indices_gets_a_clean_exit_not_a_panic() {
    // The request head moved backwards.
    let mut h = Hostile::start();
    h.ask(1);
    let head = h.word(layout::REQUEST_CONTROL + layout::HEAD);
    let v = head.load(Ordering::SeqCst);
    head.store(v.wrapping_sub(16), Ordering::SeqCst);
    let _ = common::sys::futex_wake_shared(head, 1);
    let out = h.finish();
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("head moved backwards"),
        "{}",
        stderr(&out)
    );

    // The response tail moved past what the vault published.
    let mut h = Hostile::start();
    h.ask(1);
    let tail = h.word(layout::RESPONSE_CONTROL + layout::TAIL);
    tail.store(
        tail.load(Ordering::SeqCst).wrapping_add(4096),
        Ordering::SeqCst,
    );
    let deadline = Some(Instant::now() + Duration::from_secs(30));
    let req = common::protocol::encode_request(2, &common::protocol::Request::HeapStatus);
    h.chan
        .tx
        .send(&req.parts(), deadline, &mut || Ok(()))
        .unwrap();
    let out = h.finish();
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tail moved backwards or past head"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn nonsense_in_the_futex_words_changes_nothing() {
    let mut h = Hostile::start();
    h.ask(1);
    // The "sleeping" flags are the third and fourth words of each block.
    for (block, word) in [
        (layout::REQUEST_CONTROL, 2),
        (layout::REQUEST_CONTROL, 3),
        (layout::RESPONSE_CONTROL, 2),
        (layout::RESPONSE_CONTROL, 3),
    ] {
        h.word(block + word * layout::TAIL)
            .store(0xdead_beef, Ordering::SeqCst);
    }
    for _ in 0..100 {
        let _ = common::sys::futex_wake_shared(h.word(layout::REQUEST_CONTROL + layout::HEAD), 10);
    }
    let answer = h.ask(2);
    assert!(answer.contains("HeapStatus"), "{answer}");
    let deadline = Some(Instant::now() + Duration::from_secs(30));
    let req = common::protocol::encode_request(3, &common::protocol::Request::Shutdown);
    h.chan
        .tx
        .send(&req.parts(), deadline, &mut || Ok(()))
        .unwrap();
    h.chan
        .rx
        .recv_into(&mut h.buf, deadline, &mut || Ok(()))
        .unwrap();
    let out = h.finish();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_flood_of_requests_that_are_never_read_ends_in_a_timeout_exit() {
    let mut h = Hostile::start();
    // Requests until the request ring is full; the vault answers until the
    // response ring is full, then gives up after its send timeout.
    let req = common::protocol::encode_request(1, &common::protocol::Request::PublicKey);
    let mut sent = 0;
    while h
        .chan
        .tx
        .send(
            &req.parts(),
            Some(Instant::now() + Duration::from_millis(200)),
            &mut || Ok(()),
        )
        .is_ok()
    {
        sent += 1;
        assert!(sent < 100_000);
    }
    let start = Instant::now();
    let out = h.finish();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no answer from the peer"),
        "{}",
        stderr(&out)
    );
    assert!(sent > 100, "{sent}");
}

/// Runs the vault with several lanes: `rings[i]` at fd 3 + i.
fn run_vault_lanes(rings: Vec<OwnedFd>, args: Vec<String>) -> Output {
    let mut cmd = Command::new(suites::binary("vault"));
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let raws: Vec<i32> = rings.iter().map(|f| f.as_raw_fd()).collect();
    let mut fixed = [-1i32; 8];
    fixed[..raws.len()].copy_from_slice(&raws);
    let n = raws.len();
    // SAFETY: only fcntl/dup2 over a fixed array between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [-1i32; 8];
            for i in 0..n {
                high[i] = libc::fcntl(fixed[i], libc::F_DUPFD, 64);
            }
            for (i, h) in high.iter().take(n).enumerate() {
                libc::dup2(*h, 3 + i32::try_from(i).unwrap_or(0));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn vault");
    drop(rings);
    // A vault that does not end within 10 s is killed: the test then fails
    // on its exit status instead of hanging.
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_corrupt_lane_stops_every_lane() {
    let (fds_a, mut a) = Channel::create().unwrap();
    let (fds_b, _b) = Channel::create().unwrap();
    let raw_b = Mapping::shared(fds_b.control.as_fd(), REGION_LEN).unwrap();
    let args = vec![
        "--parent-pid".to_owned(),
        me(),
        "--lanes".to_owned(),
        "2".to_owned(),
    ];
    let vault =
        std::thread::spawn(move || run_vault_lanes(vec![fds_a.control, fds_b.control], args));
    // Lane 1 works.
    let mut buf = common::secret::SecretBuf::new(common::ring::MAX_FRAME as usize).unwrap();
    let deadline = Some(Instant::now() + Duration::from_secs(30));
    let req = common::protocol::encode_request(1, &common::protocol::Request::HeapStatus);
    a.tx.send(&req.parts(), deadline, &mut || Ok(())).unwrap();
    a.rx.recv_into(&mut buf, deadline, &mut || Ok(())).unwrap();
    // Lane 2 gets a head beyond its capacity: the whole vault must end.
    // SAFETY: the request head word of lane 2's control block, aligned.
    #[allow(clippy::cast_ptr_alignment)]
    let head = unsafe {
        &*raw_b
            .as_ptr()
            .add(layout::REQUEST_CONTROL + layout::HEAD)
            .cast::<AtomicU32>()
    };
    head.store(2 * common::ring::RING_CAPACITY, Ordering::SeqCst);
    let _ = common::sys::futex_wake_shared(head, 1);
    let start = Instant::now();
    let out = vault.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "lane 1 kept the vault alive"
    );
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("beyond the ring's capacity"),
        "{}",
        stderr(&out)
    );
}

/// One request to a vault on `chan`, its answer decoded by `f`.
fn ask<T>(
    chan: &mut Channel,
    id: u32,
    req: &common::protocol::Request<'_>,
    f: impl FnOnce(common::protocol::Response<'_>) -> T,
) -> T {
    let mut buf = common::secret::SecretBuf::new(common::ring::MAX_FRAME as usize).unwrap();
    let deadline = Some(Instant::now() + Duration::from_secs(30));
    let enc = common::protocol::encode_request(id, req);
    chan.tx
        .send(&enc.parts(), deadline, &mut || Ok(()))
        .unwrap();
    chan.rx
        .recv_into(&mut buf, deadline, &mut || Ok(()))
        .unwrap();
    buf.expose(|frame| {
        let (got, resp) = common::protocol::decode_response(frame).unwrap();
        assert_eq!(got, id);
        f(resp)
    })
}

#[test]
fn a_tampered_envelope_is_refused_and_leaves_no_plaintext_behind() {
    use common::protocol::{ErrorCode, Request, Response, ENVELOPE_AAD, NONCE_LEN, TAG_LEN};
    let (fds, mut chan) = Channel::create().unwrap();
    let fd = fds.control;
    let mut vault = spawn_vault(Some(&fd), &["--parent-pid", &me(), "--lanes", "1"]);
    drop(fd);
    let der = ask(&mut chan, 1, &Request::PublicKey, |r| match r {
        Response::PublicKey { der } => der.to_vec(),
        other => panic!("{other:?}"),
    });
    let public = openssl::rsa::Rsa::public_key_from_der(&der).unwrap();
    let pkey = openssl::pkey::PKey::from_rsa(public).unwrap();
    // An envelope as the broker makes one: a fresh data key wrapped with
    // RSA-OAEP-SHA256, a secret (larger than one RSA block) sealed with
    // AES-256-GCM under it.
    let secret: Vec<u8> = suites::driver::canary("TAMPER-")
        .into_iter()
        .cycle()
        .take(600)
        .collect();
    let mut key = [0u8; 32];
    let mut nonce = [0u8; NONCE_LEN];
    openssl::rand::rand_bytes(&mut key).unwrap();
    openssl::rand::rand_bytes(&mut nonce).unwrap();
    let mut tag = [0u8; TAG_LEN];
    let ciphertext = openssl::symm::encrypt_aead(
        openssl::symm::Cipher::aes_256_gcm(),
        &key,
        Some(&nonce),
        ENVELOPE_AAD,
        &secret,
        &mut tag,
    )
    .unwrap();
    let mut enc = openssl::encrypt::Encrypter::new(&pkey).unwrap();
    enc.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    enc.set_rsa_oaep_md(openssl::hash::MessageDigest::sha256())
        .unwrap();
    enc.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
        .unwrap();
    let mut wrapped = vec![0u8; enc.encrypt_len(&key).unwrap()];
    let n = enc.encrypt(&key, &mut wrapped).unwrap();
    wrapped.truncate(n);
    let pid = vault.id();
    // One flipped bit in each part, in turn: refused, and the plaintext
    // (which AES-GCM produces before it checks the tag) is nowhere in the
    // vault's memory afterwards.
    let mut id = 10;
    for part in ["wrapped key", "nonce", "tag", "ciphertext"] {
        let (mut w, mut nn, mut t, mut c) = (wrapped.clone(), nonce, tag, ciphertext.clone());
        match part {
            "wrapped key" => w[17] ^= 0x01,
            "nonce" => nn[3] ^= 0x80,
            "tag" => t[15] ^= 0x01,
            _ => c[100] ^= 0x04,
        }
        id += 1;
        let req = Request::Unseal {
            wrapped: &w,
            nonce: &nn,
            tag: &t,
            ciphertext: &c,
        };
        let code = ask(&mut chan, id, &req, |r| match r {
            Response::Error(code) => Some(code),
            Response::Plaintext { .. } => None,
            other => panic!("{part}: {other:?}"),
        });
        assert_eq!(
            code,
            Some(ErrorCode::DecryptFailed),
            "a flipped bit in the {part} was not refused"
        );
        let mem = suites::scan::read(pid).unwrap();
        assert!(
            mem.find(&secret[..64]).is_empty(),
            "after a tampered {part}, the plaintext is in the vault's memory"
        );
    }
    // Positive controls: the scan finds the plaintext where it is (this
    // process holds it), and the same envelope untampered opens.
    assert!(
        !suites::scan::read(std::process::id())
            .unwrap()
            .find(&secret[..64])
            .is_empty(),
        "the scan cannot find a plaintext that is there"
    );
    id += 1;
    let req = Request::Unseal {
        wrapped: &wrapped,
        nonce: &nonce,
        tag: &tag,
        ciphertext: &ciphertext,
    };
    let opened = ask(&mut chan, id, &req, |r| match r {
        Response::Plaintext { bytes } => bytes.to_vec(),
        other => panic!("{other:?}"),
    });
    assert_eq!(opened, secret);
    id += 1;
    ask(&mut chan, id, &Request::Shutdown, |_| ());
    let status = vault.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
