//! A UDP round-trip workload: an echo thread on one socket, and a client that sends a small
//! numbered datagram and times until the same datagram comes back.
//!
//! Bounded everywhere: the echo thread stops when told (checked every 100 ms), after
//! [`ECHO_MAX`] datagrams or after [`ECHO_LIFETIME`]; the client waits at most [`WAIT`] for a
//! reply, reads at most a few stale replies per request, and gives up after [`MAX_LOST`] losses.

use std::io;
use std::net::{SocketAddr, UdpSocket};
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

/// A datagram socket the echo and the client run on: a std [`UdpSocket`], or a
/// [`Sock`](super::sock::Sock) (plain, native or proxied ioth fd).
pub trait Datagram: Send + 'static {
    /// `SO_RCVTIMEO`.
    fn set_read_timeout(&self, t: Duration) -> io::Result<()>;
    /// `send(2)` on a connected socket.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// `recv(2)`.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// `sendto(2)`.
    fn send_to(&self, buf: &[u8], to: &SocketAddr) -> io::Result<usize>;
    /// `recvfrom(2)`.
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
}

impl Datagram for UdpSocket {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        UdpSocket::set_read_timeout(self, Some(t))
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        UdpSocket::send(self, buf)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        UdpSocket::recv(self, buf)
    }

    fn send_to(&self, buf: &[u8], to: &SocketAddr) -> io::Result<usize> {
        UdpSocket::send_to(self, buf, to)
    }

    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::recv_from(self, buf)
    }
}

/// An echo thread: sends every datagram back to where it came from. Drop stops it.
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Echo {
    /// Starts echoing on `sock` (already bound, unconnected: `recv_from`/`send_to`, which carry
    /// the address header on a proxied fd).
    pub fn start(sock: impl Datagram) -> Echo {
        sock.set_read_timeout(Duration::from_millis(100))
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
                        let _ = sock.send_to(&buf[..len], &from);
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

/// A client: a connected datagram socket (bare payloads, plain `send`/`recv`) and the next
/// sequence number.
pub struct Client<S: Datagram = UdpSocket> {
    sock: S,
    seq: u64,
    /// Datagrams that got no reply within [`WAIT`].
    pub lost: usize,
}

impl<S: Datagram> Client<S> {
    /// `sock` must already be connected to an [`Echo`].
    pub fn new(sock: S) -> Client<S> {
        sock.set_read_timeout(WAIT).expect("SO_RCVTIMEO");
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
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
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
