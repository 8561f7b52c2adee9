//! Workloads on [`Sock`] (plain, native ioth or proxied ioth sockets): a one-way TCP transfer,
//! a small-message TCP ping-pong, and a UDP echo with a client.
//!
//! Bounded everywhere: every blocking read and write has a timeout ([`IO_TIMEOUT`]); the echo
//! threads stop when told (checked every 100 ms), at EOF, after a count or after a lifetime; the
//! UDP client waits [`udp_echo::WAIT`] per reply and gives up after [`udp_echo::MAX_LOST`] losses.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::sock::Sock;
use super::udp_echo::{ECHO_LIFETIME, ECHO_MAX, MAX_LOST, PAYLOAD, WAIT};
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

/// A UDP echo thread on a bound [`Sock`] (unconnected: `recv_from`/`send_to`, which carry the
/// address header on a proxied fd). Drop stops it.
pub struct DgramEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl DgramEcho {
    pub fn start(sock: Sock) -> DgramEcho {
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
        DgramEcho {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DgramEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Replies with an older sequence number read per request before counting it lost.
const STALE_MAX: usize = 8;

/// A UDP client on a connected [`Sock`] (bare payloads, plain `send`/`recv`).
pub struct DgramClient {
    sock: Sock,
    seq: u64,
    /// Datagrams that got no reply within [`WAIT`].
    pub lost: usize,
}

impl DgramClient {
    /// `sock` must already be connected to a [`DgramEcho`].
    pub fn new(sock: Sock) -> DgramClient {
        sock.set_read_timeout(WAIT).expect("SO_RCVTIMEO");
        DgramClient {
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
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
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
