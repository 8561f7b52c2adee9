//! Workloads on [`Sock`] (plain, native ioth or proxied ioth sockets): a one-way TCP transfer and
//! a small-message TCP ping-pong; the UDP echo and client of [`udp_echo`](super::udp_echo) run
//! on a [`Sock`] too ([`Datagram`]).
//!
//! Bounded everywhere: every blocking read and write has a timeout ([`IO_TIMEOUT`]); the echo
//! thread stops at EOF or after [`IO_TIMEOUT`] without data.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::sock::Sock;
use super::udp_echo::{Datagram, PAYLOAD};
use super::workload::CHUNK;
use super::Samples;

/// Bound on any blocking socket call of these workloads.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// What one transfer measured.
pub struct Transfer {
    /// From the first write to the receiver seeing EOF after the last byte.
    pub time: Duration,
    /// The longest wait of the receiver for data between its first and last read (a stall, e.g.
    /// a retransmission timeout, shows up here).
    pub longest_gap: Duration,
}

/// Sends `bytes` in [`CHUNK`] writes from `client` (connected) to the connection `listener`
/// accepts, read in a thread of its own; shuts the client's write side down after the last
/// byte. Panics if a byte is lost or a call fails.
pub fn transfer(listener: Sock, client: &Sock, bytes: u64) -> Transfer {
    client.set_timeouts(IO_TIMEOUT).expect("timeouts");
    let receiver = std::thread::spawn(move || {
        let c = listener.accept(IO_TIMEOUT).expect("accept");
        drop(listener);
        c.set_timeouts(IO_TIMEOUT).expect("timeouts");
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        let mut last: Option<Instant> = None;
        let mut gap = Duration::ZERO;
        loop {
            match (&c).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    got += n as u64;
                    let now = Instant::now();
                    if let Some(t) = last {
                        gap = gap.max(now - t);
                    }
                    last = Some(now);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("receive after {got} bytes: {e}"),
            }
        }
        (got, gap)
    });
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut left = bytes;
    let mut w = client;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        w.write_all(&buf[..n]).expect("send");
        left -= n as u64;
    }
    client.shutdown_write().expect("shutdown");
    let (got, longest_gap) = receiver.join().expect("receiver");
    let time = start.elapsed();
    assert_eq!(got, bytes, "bytes lost");
    Transfer { time, longest_gap }
}

/// A connected TCP client and the thread that echoes what it sends (on the accepted end).
/// Drop shuts the client down and joins the echo thread (which ends at EOF or after
/// [`IO_TIMEOUT`] without data).
pub struct PingPong {
    client: Sock,
    echo: Option<JoinHandle<()>>,
}

impl PingPong {
    /// Connects `client` to `listener` (bound and listening at `to`); both ends `TCP_NODELAY`.
    pub fn new(listener: Sock, client: Sock, to: &SocketAddr) -> PingPong {
        client.connect(to, IO_TIMEOUT).expect("connect");
        client.set_timeouts(IO_TIMEOUT).expect("timeouts");
        client.set_nodelay().expect("TCP_NODELAY");
        let echo = std::thread::Builder::new()
            .name("tcp-echo".into())
            .spawn(move || {
                let c = listener.accept(IO_TIMEOUT).expect("accept");
                drop(listener);
                c.set_timeouts(IO_TIMEOUT).expect("timeouts");
                c.set_nodelay().expect("TCP_NODELAY");
                let mut buf = [0u8; 4096];
                let mut w = &c;
                loop {
                    match (&c).read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if w.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .expect("spawn echo thread");
        PingPong {
            client,
            echo: Some(echo),
        }
    }

    /// `n` round trips of a [`PAYLOAD`]-byte message, each timed into `out`.
    pub fn round_trips(&mut self, n: usize, out: &mut Samples, seq: &mut u64) {
        let mut msg = [0x5au8; PAYLOAD];
        let mut back = [0u8; PAYLOAD];
        let mut c = &self.client;
        for _ in 0..n {
            *seq += 1;
            msg[..8].copy_from_slice(&seq.to_le_bytes());
            let t = Instant::now();
            c.write_all(&msg).expect("send");
            c.read_exact(&mut back).expect("receive");
            out.push(t.elapsed());
            assert_eq!(back, msg, "echo mismatch");
        }
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        let _ = self.client.shutdown_write();
        if let Some(t) = self.echo.take() {
            let _ = t.join();
        }
    }
}

impl Datagram for Sock {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        Sock::set_read_timeout(self, t)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        Sock::send(self, buf)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Sock::recv(self, buf)
    }

    fn send_to(&self, buf: &[u8], to: &SocketAddr) -> io::Result<usize> {
        Sock::send_to(self, buf, to)
    }

    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        Sock::recv_from(self, buf)
    }
}
