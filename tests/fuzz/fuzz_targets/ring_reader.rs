//! A hostile peer's bytes in the shared ring: the first 16 bytes set the
//! request ring's head, tail and sleeping flags, the rest is written over its
//! data area. The reader must return a frame or a typed error: no panic, no
//! read out of bounds, no hang.
#![no_main]

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::ring::{layout, Channel, Role, MAX_FRAME, REGION_LEN, RING_CAPACITY};
use common::secret::SecretBuf;
use common::sys::Mapping;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((fds, _broker)) = Channel::create() else { return };
    let Ok(mut vault) = Channel::open(fds.control.as_fd(), None, Role::Vault) else { return };
    let Ok(raw) = Mapping::shared(fds.control.as_fd(), REGION_LEN) else { return };
    let word = |i: usize| u32::from_le_bytes(data.get(4 * i..4 * i + 4).and_then(|w| w.try_into().ok()).unwrap_or([0; 4]));
    let base = raw.as_ptr();
    // SAFETY: control words are page-aligned atomics inside the mapping.
    #[allow(clippy::cast_ptr_alignment)]
    let ctl = |off: usize| unsafe { &*base.add(layout::REQUEST_CONTROL + off).cast::<AtomicU32>() };
    let rest = data.get(16..).unwrap_or(&[]);
    for (i, b) in rest.iter().take(RING_CAPACITY as usize).enumerate() {
        // SAFETY: inside the request data area.
        unsafe { base.add(layout::REQUEST_DATA + i).write_volatile(*b) };
    }
    ctl(layout::TAIL).store(word(1), Ordering::SeqCst);
    ctl(2 * layout::TAIL).store(word(2), Ordering::SeqCst);
    ctl(layout::HEAD).store(word(0), Ordering::SeqCst);
    let Ok(mut buf) = SecretBuf::new(MAX_FRAME as usize) else { return };
    let deadline = Some(Instant::now() + Duration::from_millis(5));
    for _ in 0..4 {
        if let Ok(n) = vault.rx.recv_into(&mut buf, deadline, &mut || Ok(())) {
            assert!(n <= MAX_FRAME as usize);
        }
    }
});
