//! A malicious vault for the hostile-peer suite: started by the real broker
//! library in place of the vault (`Config::vault_path`), it answers the
//! start-up honestly (a real RSA key) unless told otherwise, then attacks on
//! the first decryption request according to `--evil MODE`. It is a test
//! tool: it does not harden itself, so the suite can watch its ring.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::protocol::{self, ErrorCode, HeapStatus, Request, Response};
use common::ring::{layout, Channel, Role, MAX_FRAME, REGION_LEN, RING_CAPACITY};
use common::secret::SecretBuf;
use common::sys::{self, Mapping};

/// The raw region, for writes an honest endpoint would never make.
struct Raw {
    map: Mapping,
}

impl Raw {
    #[allow(clippy::cast_ptr_alignment)]
    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: offset is one of the page-aligned control words inside the
        // REGION_LEN mapping, which lives as long as `self`.
        unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    fn resp_head(&self) -> &AtomicU32 {
        self.word(layout::RESPONSE_CONTROL + layout::HEAD)
    }

    fn resp_tail(&self) -> &AtomicU32 {
        self.word(layout::RESPONSE_CONTROL + layout::TAIL)
    }

    fn write_data(&self, index: u32, bytes: &[u8]) {
        let pos = usize::try_from(index % RING_CAPACITY).unwrap_or(0);
        for (i, b) in bytes.iter().enumerate() {
            let at = layout::RESPONSE_DATA + (pos + i) % RING_CAPACITY as usize;
            // SAFETY: `at` is inside the response data area of the mapping.
            unsafe { self.map.as_ptr().add(at).write_volatile(*b) };
        }
    }

    fn publish(&self, head: u32) {
        self.resp_head().store(head, Ordering::SeqCst);
        let _ = sys::futex_wake_shared(self.resp_head(), i32::MAX.unsigned_abs());
    }
}

fn frame(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![protocol::VERSION, kind, 0, 0];
    f.extend_from_slice(&id.to_le_bytes());
    f.extend_from_slice(body);
    f
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args
        .iter()
        .position(|a| a == "--evil")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    // SAFETY: the broker passes the ring at fd 3 and keeps it open for us.
    let fd = unsafe { BorrowedFd::borrow_raw(3) };
    let mut chan = Channel::open(fd, None, Role::Vault).expect("ring");
    let raw = Raw {
        map: Mapping::shared(fd, REGION_LEN).expect("raw map"),
    };
    let rsa = openssl::rsa::Rsa::generate(2048).expect("key");
    let der = openssl::rsa::Rsa::from_public_components(
        rsa.n().to_owned().unwrap(),
        rsa.e().to_owned().unwrap(),
    )
    .and_then(|k| k.public_key_to_der())
    .expect("der");
    let mut buf = SecretBuf::new(MAX_FRAME as usize).expect("buffer");
    let deadline = || Some(Instant::now() + Duration::from_secs(5));
    let mut decrypts = 0;
    loop {
        if chan.rx.recv_into(&mut buf, None, &mut || Ok(())).is_err() {
            std::process::exit(9);
        }
        let (id, kind) = buf.expose(|f| match protocol::decode_request(f) {
            Ok((id, Request::PublicKey)) => (id, "key"),
            Ok((id, Request::HeapStatus)) => (id, "status"),
            Ok((id, Request::Shutdown)) => (id, "shutdown"),
            Ok((id, _)) => (id, "decrypt"),
            Err(_) => (0, "bad"),
        });
        let mut send = |resp: &Response<'_>| {
            let enc = protocol::encode_response(id, resp);
            let _ = chan.tx.send(&enc.parts(), deadline(), &mut || Ok(()));
        };
        match kind {
            "key" if mode == "bad-public-key" => send(&Response::PublicKey {
                der: b"this is not a key",
            }),
            "key" => send(&Response::PublicKey { der: &der }),
            "status" => send(&Response::HeapStatus(HeapStatus::default())),
            "shutdown" => {
                send(&Response::ShutdownAck);
                std::process::exit(0);
            }
            "decrypt" => {
                decrypts += 1;
                let head = raw.resp_head().load(Ordering::SeqCst);
                match mode.as_str() {
                    "garbage" => {
                        let noise: Vec<u8> = (0..100u32)
                            .map(|i| (i.wrapping_mul(2654435761) >> 13).to_le_bytes()[0])
                            .collect();
                        let _ = chan.tx.send(&[&noise], deadline(), &mut || Ok(()));
                    }
                    "length-past-end" => {
                        raw.write_data(head, &50_000u32.to_le_bytes());
                        raw.publish(head.wrapping_add(16));
                    }
                    "head-beyond" => raw.publish(head.wrapping_add(RING_CAPACITY + 8)),
                    "misaligned-head" => raw.publish(head.wrapping_add(3)),
                    "wrong-version" => {
                        let mut f = frame(0x82, id, b"plaintext");
                        f[0] = 9;
                        let _ = chan.tx.send(&[&f], deadline(), &mut || Ok(()));
                    }
                    "wrong-id" => {
                        let f = frame(0x82, id.wrapping_add(1), b"plaintext");
                        let _ = chan.tx.send(&[&f], deadline(), &mut || Ok(()));
                    }
                    "oversized-answer" => {
                        let big = vec![0x41u8; MAX_FRAME as usize - 8];
                        let f = frame(0x82, id, &big);
                        let _ = chan.tx.send(&[&f], deadline(), &mut || Ok(()));
                    }
                    "flood" => {
                        let f = frame(0x82, id.wrapping_add(1000), &[0x42; 900]);
                        while chan
                            .tx
                            .send(
                                &[&f],
                                Some(Instant::now() + Duration::from_millis(50)),
                                &mut || Ok(()),
                            )
                            .is_ok()
                        {}
                    }
                    "silent" => std::thread::sleep(Duration::from_secs(3600)),
                    "exit" => std::process::exit(3),
                    "futex-nonsense" => {
                        // Nonsense in every word the broker may sleep or read on.
                        raw.word(layout::RESPONSE_CONTROL + 2 * layout::TAIL)
                            .store(0xdead_beef, Ordering::SeqCst);
                        raw.word(layout::REQUEST_CONTROL + 3 * layout::TAIL)
                            .store(0xffff_ffff, Ordering::SeqCst);
                        for _ in 0..1000 {
                            let _ = sys::futex_wake_shared(raw.resp_head(), 1);
                            let _ = sys::futex_wake_shared(raw.resp_tail(), 1);
                        }
                        raw.publish(0x5555_5550);
                    }
                    "head-backwards" if decrypts == 1 => {
                        // An honest refusal first; once the broker consumed it,
                        // move the head back behind the broker's tail.
                        send(&Response::Error(ErrorCode::DecryptFailed));
                        let end = Instant::now() + Duration::from_secs(5);
                        while raw.resp_tail().load(Ordering::SeqCst)
                            != raw.resp_head().load(Ordering::SeqCst)
                            && Instant::now() < end
                        {
                            std::thread::yield_now();
                        }
                        let h = raw.resp_head().load(Ordering::SeqCst);
                        raw.resp_head().store(h.wrapping_sub(16), Ordering::SeqCst);
                    }
                    // After moving the head back, stay silent: the broker must
                    // notice the head, not be rescued by a fresh answer.
                    "head-backwards" => {}
                    "tail-beyond" if decrypts == 1 => {
                        // A request-ring tail past the broker's head, then an
                        // honest refusal: the broker's next send must refuse
                        // the tail. (In this order, so that the corruption is
                        // in place before the broker can send again.)
                        let req_tail = raw.word(layout::REQUEST_CONTROL + layout::TAIL);
                        let t = req_tail.load(Ordering::SeqCst);
                        req_tail.store(t.wrapping_add(4096), Ordering::SeqCst);
                        send(&Response::Error(ErrorCode::DecryptFailed));
                    }
                    "rewrite" => {
                        // A valid refusal, rewritten over and over while the
                        // broker reads it.
                        send(&Response::Error(ErrorCode::DecryptFailed));
                        let end = Instant::now() + Duration::from_millis(500);
                        let mut x = 0u8;
                        while Instant::now() < end {
                            x = x.wrapping_add(1);
                            raw.write_data(head, &[x, x, x, x, x, x, x, x, x, x, x, x]);
                        }
                    }
                    _ => send(&Response::Error(ErrorCode::DecryptFailed)),
                }
            }
            _ => send(&Response::Error(ErrorCode::Malformed)),
        }
        buf.clear();
    }
}
