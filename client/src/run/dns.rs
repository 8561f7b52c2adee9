//! Names on proxied stacks: glibc's resolver makes its sockets inside libc, where the preload
//! library cannot see them, so a program on a proxied stack runs (when the runner may: root) in
//! an empty network namespace of its own, and this module gives that namespace a DNS
//! forwarder on its loopback, `127.0.0.1:53`, UDP and TCP. Each query the program's resolver
//! sends there is relayed through the stack (an [`ioth::Socket`](crate::Socket) of the stack to
//! the name servers `resolv.conf` named, in order) and the answer handed back; the program's
//! private `resolv.conf` names `127.0.0.1` instead of those servers (docs/run.md).
//!
//! Bounds: a UDP query waits at most [`UDP_WAIT`] per server, a TCP connection is idle at most
//! [`TCP_IDLE`], at most [`MAX_RELAYS`] queries are in flight (more are dropped, the resolver
//! retries); the forwarder stops once the program and its children have ended.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::{Domain, Type};

use crate::{Socket, Stack};

/// How long a UDP query waits for each server's answer.
const UDP_WAIT: Duration = Duration::from_secs(3);
/// How long a TCP connection (either side) may stay silent.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries relayed at once, at most.
const MAX_RELAYS: usize = 64;
/// How often the forwarder looks whether it should stop.
const TICK: Duration = Duration::from_millis(200);

/// The forwarder's address inside the program's namespace.
pub(crate) const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);

/// An empty network namespace with its loopback up and the forwarder's sockets bound in it.
pub(crate) struct Isolation {
    /// `/proc/thread-self/ns/net` of the namespace: the child enters it (`setns`).
    pub(crate) ns: OwnedFd,
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Brings up `lo` in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    let s = socket2::Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    // SAFETY: ifreq is plain data (an all-zero one is valid); the ioctls read and write only
    // that struct, whose name is NUL-terminated ("lo" in a zeroed 16-byte array), on a socket
    // we own.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        if libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SIOCGIFFLAGS,
            &mut req,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SIOCSIFFLAGS,
            &req,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Isolation {
    /// Makes the namespace on a short-lived thread of its own (a network namespace is a
    /// thread's: the runner's other threads keep theirs). Fails with `EPERM` without the
    /// privilege for one.
    pub(crate) fn new() -> io::Result<Isolation> {
        std::thread::Builder::new()
            .name("ioth-run-netns".into())
            .spawn(|| {
                // SAFETY: unshare(2) with CLONE_NEWNET moves only this thread, which ends
                // right after; it touches no memory.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                loopback_up()?;
                let ns = std::fs::File::open("/proc/thread-self/ns/net")?.into();
                let udp = UdpSocket::bind(LISTEN)?;
                let tcp = TcpListener::bind(LISTEN)?;
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                Ok(Isolation { ns, udp, tcp })
            })?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    }
}

/// The name servers of a `resolv.conf` text, and the text with them replaced by one
/// `nameserver 127.0.0.1` (where the first stood). `None` if it names none.
pub(crate) fn redirect(text: &str) -> Option<(Vec<IpAddr>, String)> {
    let mut servers = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            if let Some(a) = words.next().and_then(|a| a.parse::<IpAddr>().ok()) {
                if servers.is_empty() {
                    out.push_str(&format!("nameserver {}\n", LISTEN.ip()));
                }
                servers.push(a);
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    (!servers.is_empty()).then_some((servers, out))
}

fn domain(a: &IpAddr) -> Domain {
    match a {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    }
}

/// One UDP query through the stack: the first answer (same id) of the first server that gives
/// one.
fn relay_udp(stack: &Stack, servers: &[IpAddr], query: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    for server in servers {
        let Ok(sock) = stack.socket(domain(server), Type::DGRAM, None) else {
            continue;
        };
        let ok = sock.set_read_timeout(Some(UDP_WAIT)).is_ok()
            && sock.connect(&SocketAddr::new(*server, 53)).is_ok()
            && sock.send(query).is_ok();
        if !ok {
            continue;
        }
        // Datagrams of the server that are not the answer (a late one of an earlier query)
        // are skipped; each wait is bounded by the timeout.
        for _ in 0..8 {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 2 && buf[..2] == query[..2] => return Some(buf[..n].to_vec()),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    None
}

/// A `SERVFAIL` answer to `query` (its header and first question), so that the program's
/// resolver gives up at once rather than waiting out its own timeouts when no server answered.
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    if u16::from_be_bytes([*query.get(4)?, *query.get(5)?]) >= 1 {
        // The name: labels up to the root (compression cannot occur in a query's first name).
        loop {
            let len = usize::from(*query.get(end)?);
            end += 1 + len;
            if len == 0 {
                break;
            }
            if len > 63 {
                return None;
            }
        }
        end += 4;
    }
    let mut answer = query.get(..end)?.to_vec();
    answer[2] = (answer[2] & 0x79) | 0x80; // QR, the query's opcode and RD
    answer[3] = 0x80 | 2; // RA, SERVFAIL
    answer[4..6].copy_from_slice(&u16::from(end > 12).to_be_bytes());
    answer[6..12].fill(0);
    Some(answer)
}

/// One length-prefixed DNS message off a stream; `None` at the end.
fn read_message(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; u16::from_be_bytes(len).into()];
    r.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn write_message(w: &mut impl Write, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::Error::from_raw_os_error(libc::EMSGSIZE))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(msg)
}

/// A TCP connection to the first server that takes one.
fn connect_tcp(stack: &Stack, servers: &[IpAddr]) -> Option<Socket> {
    servers.iter().find_map(|server| {
        let s = stack.socket(domain(server), Type::STREAM, None).ok()?;
        s.connect(&SocketAddr::new(*server, 53)).ok()?;
        s.set_read_timeout(Some(TCP_IDLE)).ok()?;
        s.set_write_timeout(Some(TCP_IDLE)).ok()?;
        Some(s)
    })
}

/// A TCP connection of the program: each query is passed to the server over one connection
/// through the stack, and its answer back, until either side ends or stays silent.
fn relay_tcp(stack: &Stack, servers: &[IpAddr], mut conn: TcpStream) {
    let ok = conn.set_nonblocking(false).is_ok()
        && conn.set_read_timeout(Some(TCP_IDLE)).is_ok()
        && conn.set_write_timeout(Some(TCP_IDLE)).is_ok();
    if !ok {
        return;
    }
    let mut upstream: Option<Socket> = None;
    while let Some(query) = read_message(&mut conn) {
        if upstream.is_none() {
            upstream = connect_tcp(stack, servers);
        }
        let Some(up) = upstream.as_mut() else {
            return;
        };
        if write_message(up, &query).is_err() {
            return;
        }
        let Some(answer) = read_message(up) else {
            return;
        };
        if write_message(&mut conn, &answer).is_err() {
            return;
        }
    }
}

/// Serves the forwarder's sockets until `stop` is set.
pub(crate) fn forward(iso: Isolation, stack: Stack, servers: Vec<IpAddr>, stop: Arc<AtomicBool>) {
    let udp = Arc::new(iso.udp);
    let tcp = iso.tcp;
    let stack = Arc::new(stack);
    let servers: Arc<[IpAddr]> = servers.into();
    let busy = Arc::new(AtomicUsize::new(0));
    let mut buf = vec![0u8; 65536];
    // A relay runs on a thread of its own (a slow server holds up no other query), at most
    // MAX_RELAYS at once.
    let start = |job: Box<dyn FnOnce() + Send>| {
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_RELAYS {
            busy.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let held = busy.clone();
        let spawned = std::thread::Builder::new()
            .name("ioth-run-dns".into())
            .spawn(move || {
                job();
                held.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    };
    while !stop.load(Ordering::Acquire) {
        let mut fds = [
            PollFd::new(udp.as_fd(), PollFlags::POLLIN),
            PollFd::new(tcp.as_fd(), PollFlags::POLLIN),
        ];
        let tick = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::NONE);
        if poll(&mut fds, tick).is_err() {
            std::thread::sleep(TICK);
            continue;
        }
        let readable = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let (udp_ready, tcp_ready) = (readable(&fds[0]), readable(&fds[1]));
        if udp_ready {
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                if n < 12 {
                    continue;
                }
                let query = buf[..n].to_vec();
                let (udp, stack, servers) = (udp.clone(), stack.clone(), servers.clone());
                start(Box::new(move || {
                    let answer = relay_udp(&stack, &servers, &query).or_else(|| servfail(&query));
                    if let Some(answer) = answer {
                        let _ = udp.send_to(&answer, from);
                    }
                }));
            }
        }
        if tcp_ready {
            while let Ok((conn, _)) = tcp.accept() {
                let (stack, servers) = (stack.clone(), servers.clone());
                start(Box::new(move || relay_tcp(&stack, &servers, conn)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_replaces_the_servers_and_keeps_the_rest() {
        let (servers, text) =
            redirect("nameserver 10.0.0.1\nsearch example.test\nnameserver fd00::53\n").unwrap();
        assert_eq!(
            servers,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fd00::53".parse().unwrap()
            ]
        );
        assert_eq!(text, "nameserver 127.0.0.1\nsearch example.test\n");
        assert!(redirect("search example.test\n").is_none());
    }

    #[test]
    fn servfail_answers_the_question() {
        // id 0x1234, RD, one question: foo.test A IN, and an EDNS record after it.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x03foo\x04test\x00\x00\x01\x00\x01");
        let question_end = q.len();
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        let a = servfail(&q).unwrap();
        assert_eq!(&a[..12], &[0x12, 0x34, 0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&a[12..], &q[12..question_end]);
        assert!(servfail(&q[..15]).is_none());
    }
}
