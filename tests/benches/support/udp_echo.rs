//! A UDP round-trip workload: an echo thread on one socket, and a client that sends a small
//! numbered datagram and times until the same datagram comes back.
//!
//! Bounded everywhere: the echo thread stops when told (checked every 100 ms), after
//! [`ECHO_MAX`] datagrams or after [`ECHO_LIFETIME`]; the client waits at most [`WAIT`] for a
//! reply, reads at most a few stale replies per request, and gives up after [`MAX_LOST`] losses.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Samples;

/// Bytes per datagram (a sequence number and padding).
pub const PAYLOAD: usize = 32;
/// How long the client waits for one reply before counting the datagram lost.
pub const WAIT: Duration = Duration::from_secs(1);
/// Losses after which the client gives up (panics): the path is broken, not slow.
pub const MAX_LOST: usize = 20;
/// Datagrams an echo thread answers at most.
pub const ECHO_MAX: u64 = 10_000_000;
/// How long an echo thread runs at most.
pub const ECHO_LIFETIME: Duration = Duration::from_secs(600);
/// Replies with an older sequence number read per request before counting it lost.
const STALE_MAX: usize = 8;

/// An echo thread: sends every datagram back to where it came from. Drop stops it.
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Echo {
    /// Starts echoing on `sock` (already bound).
    pub fn start(sock: UdpSocket) -> Echo {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("SO_RCVTIMEO");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("udp-echo".into())
            .spawn(move || {
                let end = Instant::now() + ECHO_LIFETIME;
                let mut buf = [0u8; 2048];
                let mut n = 0u64;
                while n < ECHO_MAX && !flag.load(Ordering::Relaxed) && Instant::now() < end {
                    // An error is a timeout (EAGAIN) or EINTR: the loop checks flag and clock.
                    if let Ok((len, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&buf[..len], from);
                        n += 1;
                    }
                }
                n
            })
            .expect("spawn echo thread");
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client: a connected UDP socket and the next sequence number.
pub struct Client {
    sock: UdpSocket,
    seq: u64,
    /// Datagrams that got no reply within [`WAIT`].
    pub lost: usize,
}

impl Client {
    /// `sock` must already be connected to an [`Echo`].
    pub fn new(sock: UdpSocket) -> Client {
        sock.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
        Client {
            sock,
            seq: 0,
            lost: 0,
        }
    }

    /// `n` round trips, each timed into `out` (a lost one adds no sample).
    pub fn round_trips(&mut self, n: usize, out: &mut Samples) {
        let mut msg = [0x5au8; PAYLOAD];
        let mut back = [0u8; 2048];
        for _ in 0..n {
            self.seq += 1;
            msg[..8].copy_from_slice(&self.seq.to_le_bytes());
            let t = Instant::now();
            self.sock.send(&msg).expect("send");
            let mut ok = false;
            for _ in 0..STALE_MAX {
                match self.sock.recv(&mut back) {
                    Ok(len) if len == PAYLOAD && back[..8] == msg[..8] => {
                        ok = true;
                        break;
                    }
                    Ok(_) => {} // a late reply to an earlier, lost request
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break, // no reply within WAIT
                }
            }
            if ok {
                out.push(t.elapsed());
            } else {
                self.lost += 1;
                assert!(
                    self.lost <= MAX_LOST,
                    "{MAX_LOST} UDP datagrams lost: the path is broken"
                );
            }
        }
    }
}
