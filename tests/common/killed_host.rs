//! A host killed (SIGKILL) in the middle of a transfer on one of its proxied sockets: what the
//! application's reader, writer and control calls on that socket see. Every wait is bounded.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ioth::Socket;

use crate::pattern::CHUNK;
use crate::proc::wait_until;
use crate::sock::WAIT;

/// How a read that ended with the host's death ended: EOF or `ECONNRESET`, never a hang.
fn ended_by_death(r: &io::Result<usize>) -> bool {
    match r {
        Ok(0) => true,
        Err(e) => e.raw_os_error() == Some(libc::ECONNRESET),
        Ok(_) => false,
    }
}

/// Kills `host` (SIGKILL) while `c` (a proxied socket of its stack, connected to a peer that
/// streams into it) is being read and written; checks that reader and writer end, and that
/// control calls fail with `ENETDOWN`.
pub fn kill_mid_transfer(host: u32, c: Socket, peer_source: impl FnOnce() + Send + 'static) {
    let got = Arc::new(AtomicU64::new(0));
    let c = Arc::new(c);
    let src = std::thread::spawn(peer_source);
    let (rc, rgot) = (c.clone(), got.clone());
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match (&*rc).read(&mut buf) {
                Ok(n) if n > 0 => {
                    rgot.fetch_add(n as u64, Ordering::Relaxed);
                }
                r => return r,
            }
        }
    });
    let wc = c.clone();
    let writer = std::thread::spawn(move || {
        let buf = vec![1u8; CHUNK];
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Err(e) = (&*wc).write_all(&buf) {
                return Some(e);
            }
        }
        None
    });
    assert!(
        wait_until(WAIT, || got.load(Ordering::Relaxed) > 1_000_000),
        "no data before the kill"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = reader.join().unwrap();
    assert!(ended_by_death(&r), "the reader ended with {r:?}");
    let w = writer.join().unwrap().expect("the writer kept writing");
    assert!(
        matches!(w.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)),
        "the writer ended with {w}"
    );
    let e = c.local_addr().expect_err("a control call on a dead stack");
    assert_eq!(e.kind(), io::ErrorKind::NetworkDown, "{e}");
    src.join().unwrap();
}
