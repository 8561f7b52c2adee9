//! Stacks with their event loops, driven through the plug-in's control calls and the
//! application's ends of their sockets, as the host and the application drive them: over `lo`
//! (the in-memory loopback device of [`crate::device`]) TCP connect/accept and data, UDP
//! datagrams with and without the address header; between two stacks joined point to point
//! (`ptp://`, a Unix datagram socket) IPv6 fragmentation and reassembly. Needs no network and
//! no privilege.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use ioth_plugin_sdk::proxied::{Handle, ACCEPT_TOKEN};
use ioth_plugin_sdk::ProxiedStack;

use crate::addr::{header, parse_header, HDR_LEN};
use crate::sock::app_end;
use crate::stack::Stack;
use crate::sys;

fn sa(s: &str) -> (SocketAddr, Vec<u8>) {
    let a: SocketAddr = s.parse().unwrap();
    let domain = if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    (a, crate::addr::to_sockaddr(a, domain))
}

/// Waits (bounded: 10 s) for `events` on the application's end of `h`.
fn wait(h: Handle, events: i16) {
    let mut p = [libc::pollfd {
        fd: h.raw(),
        events,
        revents: 0,
    }];
    let n = sys::poll(&mut p, 10_000).unwrap();
    assert_eq!(n, 1, "no event {events:#x} within 10 s");
}

fn with_fd<T>(h: Handle, f: impl FnOnce(BorrowedFd<'_>) -> T) -> T {
    f(app_end(&Some(h)).unwrap())
}

fn recv(h: Handle) -> Vec<u8> {
    wait(h, libc::POLLIN);
    let mut b = vec![0u8; 70_000];
    let n = with_fd(h, |fd| sys::recv(fd, &mut b, 0)).unwrap();
    b.truncate(n);
    b
}

fn send(h: Handle, data: &[u8]) {
    wait(h, libc::POLLOUT);
    assert_eq!(with_fd(h, |fd| sys::send(fd, data)).unwrap(), data.len());
}

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

#[test]
fn tcp_over_lo_connects_accepts_and_carries_data() {
    let st = Stack::new(&[]).unwrap();
    let nb = libc::SOCK_STREAM | libc::SOCK_NONBLOCK;
    let l = st.socket(libc::AF_INET, nb, 0).unwrap();
    let (_, at) = sa("127.0.0.1:9000");
    st.bind(l, &at).unwrap();
    st.listen(l, 4).unwrap();
    assert_eq!(errno(st.accept(l)), libc::EAGAIN, "nothing to accept yet");
    let c = st.socket(libc::AF_INET, nb, 0).unwrap();
    assert_eq!(errno(st.connect(c, &at)), libc::EINPROGRESS);
    // The listener's end turns readable (a token per connection ready).
    wait(l, libc::POLLIN);
    let mut tok = [0u8; 1];
    let n = with_fd(l, |fd| sys::recv(fd, &mut tok, libc::MSG_PEEK)).unwrap();
    assert_eq!((n, tok[0]), (1, ACCEPT_TOKEN));
    let (a, peer) = st.accept(l).unwrap();
    assert_eq!(
        peer,
        st.getsockname(c).unwrap(),
        "the peer is the client's address"
    );
    assert_eq!(st.getpeername(c).unwrap(), at);
    send(c, b"hello");
    let mut got = Vec::new();
    while got.len() < 5 {
        got.extend(recv(a));
    }
    assert_eq!(got, b"hello");
    send(a, b"world");
    assert_eq!(recv(c), b"world");
    // The peer's shutdown reaches the application as end of file.
    with_fd(a, |fd| sys::shutdown(fd, libc::SHUT_WR)).unwrap();
    assert_eq!(recv(c), b"");
}

#[test]
fn tcp_connect_to_a_closed_port_is_refused() {
    let st = Stack::new(&[]).unwrap();
    let c = st
        .socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0)
        .unwrap();
    assert_eq!(errno(st.connect(c, &sa("[::1]:9009").1)), libc::EINPROGRESS);
    // The application sees the reset: end of file or ECONNREFUSED, and SO_ERROR says why.
    wait(c, libc::POLLIN | libc::POLLHUP);
    let mut b = [0u8; 8];
    let r = with_fd(c, |fd| sys::recv(fd, &mut b, 0));
    assert!(matches!(r, Ok(0) | Ok(1) | Err(_)), "{r:?}");
    let e = st.getsockopt(c, libc::SOL_SOCKET, libc::SO_ERROR).unwrap();
    assert_eq!(
        i32::from_ne_bytes(e[..4].try_into().unwrap()),
        libc::ECONNREFUSED
    );
}

#[test]
fn udp_records_carry_the_address_header_unless_connected() {
    let st = Stack::new(&[]).unwrap();
    let dg = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK;
    let (a, b) = (
        st.socket(libc::AF_INET, dg, 0).unwrap(),
        st.socket(libc::AF_INET, dg, 0).unwrap(),
    );
    let (a_addr, a_sa) = sa("127.0.0.1:9100");
    let (b_addr, b_sa) = sa("127.0.0.1:9101");
    st.bind(a, &a_sa).unwrap();
    st.bind(b, &b_sa).unwrap();
    // Not connected: the destination before the payload going out, the source coming in.
    let mut rec = header(b_addr, libc::AF_INET).to_vec();
    rec.extend_from_slice(b"ping");
    send(a, &rec);
    let got = recv(b);
    assert_eq!(parse_header(&got).unwrap(), a_addr);
    assert_eq!(&got[HDR_LEN..], b"ping");
    // A large datagram over lo (no fragmentation: lo's MTU is 64 KiB).
    let big: Vec<u8> = (0..60_000u32).map(|i| i as u8).collect();
    let mut rec = header(b_addr, libc::AF_INET).to_vec();
    rec.extend_from_slice(&big);
    send(a, &rec);
    assert_eq!(recv(b)[HDR_LEN..], big[..]);
    // Connected: bare payloads.
    st.connect(a, &b_sa).unwrap();
    send(a, b"bare");
    let got = recv(b);
    assert_eq!(parse_header(&got).unwrap(), a_addr);
    assert_eq!(&got[HDR_LEN..], b"bare");
    st.connect(b, &a_sa).unwrap();
    send(b, b"back");
    assert_eq!(recv(a), b"back");
}

#[test]
fn udp_sockets_unbound_until_they_send_get_an_ephemeral_port() {
    let st = Stack::new(&[]).unwrap();
    let dg = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK;
    let (a, b) = (
        st.socket(libc::AF_INET6, dg, 0).unwrap(),
        st.socket(libc::AF_INET6, dg, 0).unwrap(),
    );
    let (b_addr, b_sa) = sa("[::1]:9200");
    st.bind(b, &b_sa).unwrap();
    let mut rec = header(b_addr, libc::AF_INET6).to_vec();
    rec.extend_from_slice(b"who");
    send(a, &rec);
    let got = recv(b);
    let from = parse_header(&got).unwrap();
    assert!((32768..=60999).contains(&from.port()), "{from}");
    let name = st.getsockname(a).unwrap();
    let local = crate::addr::from_sockaddr(&name, libc::AF_INET6)
        .unwrap()
        .unwrap();
    assert_eq!(local.port(), from.port());
}

/// Two stacks whose `vde0`s are joined point to point (libvdeplug's `ptp://`, a Unix datagram
/// socket: frames in memory), up, with fd00::1/64 and fd00::2/64.
fn pair(dir: &std::path::Path) -> (Stack, Stack) {
    use crate::netlink::tests::{addr_msg, now, req, up};
    use netlink_packet_route::RouteNetlinkMessage as M;
    let url = format!("ptp://{}", dir.join("ptp").display());
    let a = Stack::new(&[url.as_str()]).unwrap();
    let b = Stack::new(&[url.as_str()]).unwrap();
    for (st, ip) in [(&a, "fd00::1"), (&b, "fd00::2")] {
        let mut c = st.shared.lock();
        let r = crate::netlink::answer(&mut c.net, &req(M::SetLink(up(2)), 0), now());
        assert!(crate::netlink::tests::parse(&r).is_empty());
        let m = req(M::NewAddress(addr_msg(2, ip, 64)), 0x400);
        assert!(crate::netlink::answer(&mut c.net, &m, now()).is_empty());
    }
    (a, b)
}

#[test]
fn ipv6_datagrams_larger_than_the_mtu_are_fragmented_and_reassembled() {
    /// Removes the directory of the `ptp://` socket, also when the test fails.
    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir =
        TempDir(std::env::temp_dir().join(format!("ioth-smoltcp-test-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (a, b) = pair(&dir.0);
    let dg = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK;
    let (sa_, sb) = (
        a.socket(libc::AF_INET6, dg, 0).unwrap(),
        b.socket(libc::AF_INET6, dg, 0).unwrap(),
    );
    let (a_addr, a_sa) = sa("[fd00::1]:7000");
    let (b_addr, b_sa) = sa("[fd00::2]:7001");
    a.bind(sa_, &a_sa).unwrap();
    b.bind(sb, &b_sa).unwrap();
    for len in [100usize, 1453, 20_000, 65_527] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        let mut rec = header(b_addr, libc::AF_INET6).to_vec();
        rec.extend_from_slice(&payload);
        send(sa_, &rec);
        let got = recv(sb);
        assert_eq!(parse_header(&got).unwrap(), a_addr, "{len}");
        assert_eq!(got.len() - HDR_LEN, len);
        assert!(got[HDR_LEN..] == payload[..], "{len} bytes intact");
    }
    drop((a, b));
}
