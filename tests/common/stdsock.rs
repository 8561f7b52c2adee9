//! Sockets of a stack as std types (`TcpListener`, `TcpStream`, `UdpSocket`) for the vdestack,
//! scale-out, fault and lifecycle tests: listeners, bounded accepts, an echo server, UDP sockets,
//! a datagram echoed to a plain socket of this process. Every wait is bounded by [`IO_TIMEOUT`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use ioth::Stack;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::dad::retry_unavailable;
use crate::stacks::domain;

/// Upper bound for any single blocking socket operation.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The host pid of a stack that has a host (vdestack).
pub fn pid(s: &Stack) -> u32 {
    s.pid().expect("a vdestack stack has a host")
}

/// A TCP listener of `stack` at `at` (SO_REUSEADDR) with `backlog`; the bind is retried while
/// `at` is in duplicate address detection.
pub fn listen(stack: &Stack, at: SocketAddr, backlog: i32) -> TcpListener {
    let s: socket2::Socket = stack
        .msocket(domain(&at), libc::SOCK_STREAM, 0)
        .expect("msocket")
        .into();
    s.set_reuse_address(true).unwrap();
    retry_unavailable(|| s.bind(&at.into())).unwrap_or_else(|e| panic!("bind {at}: {e}"));
    s.listen(backlog).unwrap();
    s.into()
}

/// accept(2), but giving up after [`IO_TIMEOUT`].
pub fn accept_bounded(l: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::try_from(IO_TIMEOUT).unwrap()).expect("poll");
    assert_eq!(n, 1, "no connection within {IO_TIMEOUT:?}");
    l.accept().expect("accept")
}

/// Accepts one connection (within [`IO_TIMEOUT`]; read and write timeouts of [`IO_TIMEOUT`])
/// and echoes until EOF; returns the byte count.
pub fn echo_server(l: TcpListener) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let (mut c, _) = accept_bounded(&l);
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = c.read(&mut buf).expect("server read");
            if n == 0 {
                return total;
            }
            c.write_all(&buf[..n]).expect("server write");
            total += n;
        }
    })
}

/// A UDP socket of `stack` bound to `at` (retried while `at` is in duplicate address
/// detection), with a read timeout of 2 s.
pub fn udp(stack: &Stack, at: SocketAddr) -> UdpSocket {
    let s: UdpSocket = stack
        .msocket(domain(&at), libc::SOCK_DGRAM, 0)
        .expect("msocket")
        .into();
    retry_unavailable(|| socket2::SockRef::from(&s).bind(&at.into()))
        .unwrap_or_else(|e| panic!("bind {at}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// A UDP socket of `stack` bound to `127.0.0.1:0`, without a timeout.
pub fn udp_loopback(stack: &Stack) -> UdpSocket {
    let s: UdpSocket = stack
        .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .expect("msocket udp")
        .into();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket2::SockRef::from(&s).bind(&any.into()).unwrap();
    s
}

/// `s` (bound on the machine's loopback) echoes one datagram back to a plain socket of this
/// process; panics unless the echo comes back.
pub fn udp_echo_once(s: &UdpSocket) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    peer.send_to(b"ping", s.local_addr().unwrap()).unwrap();
    let mut b = [0u8; 16];
    let (n, from) = s.recv_from(&mut b).unwrap();
    s.send_to(&b[..n], from).unwrap();
    let (n, _) = peer.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"ping");
}
