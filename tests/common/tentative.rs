//! Traffic right after configuring, while IPv6 addresses may still be tentative (in duplicate
//! address detection, [`crate::dad`]): what a program does at once — a TCP connection and UDP
//! datagrams — never sends from a wrong source (`::1`) and never hangs.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ioth::Stack;

use crate::dad::{assert_from_vde0, retry_unavailable, DAD_BOUND};
use crate::sock;

/// What a program does right after configuring `server` and `client` (IPv6 with duplicate
/// address detection): a TCP connection from `client` to a listener of `server` on `[::]:port`,
/// through `server_ip`, then a few bytes each way.
///
/// The connect either completes (bounded by [`crate::sock::WAIT`]: a hang fails) or fails at
/// once with `EADDRNOTAVAIL` and is retried ([`crate::sock::try_connect`]). The connection's
/// source is an address of the client's vde0, and the server sees the same one. Returns it.
pub fn tcp_at_once(server: &Stack, server_ip: IpAddr, client: &Stack, port: u16) -> IpAddr {
    let l = sock::listener(server, SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port));
    let to = SocketAddr::new(server_ip, port);
    let c = sock::connect(client, to);
    let (s, peer) = sock::accept(&l);
    let local = c.local_addr().expect("local_addr").ip();
    assert_from_vde0(client, local, "the connection");
    assert_eq!(peer.ip(), local, "the server's view of the client");
    assert_eq!(c.peer_addr().expect("peer_addr"), to);
    let mut b = [0u8; 5];
    (&c).write_all(b"hello").unwrap();
    (&s).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    (&s).write_all(b"there").unwrap();
    (&c).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"there");
    local
}

/// How long each side waits for a datagram before the client sends its request again.
const RESEND: Duration = Duration::from_millis(100);

/// What UDP clients do right after configuring `server` and `client` (IPv6 with duplicate
/// address detection): requests to `server_ip`:`port`, answered by a socket of `server` bound to
/// it (the bind retried while it is in DAD), from two sockets of `client`: a connected one (its
/// source is fixed by the connect, made first) and an unbound one that uses `send_to`. A request is sent again every [`RESEND`]
/// until its answer arrives (a datagram to an address still in DAD is dropped); a connect or send
/// failing at once with `EADDRNOTAVAIL` is retried; all bounded by twice [`DAD_BOUND`]. Every
/// request's source is an address of the client's vde0, every answer's one of the server's.
/// Returns the sources of the first requests the server saw.
pub fn udp_at_once(server: &Stack, server_ip: IpAddr, client: &Stack, port: u16) -> Vec<IpAddr> {
    let dgram = |s: &Stack| {
        let d = s
            .msocket(libc::AF_INET6, libc::SOCK_DGRAM, 0)
            .expect("msocket");
        d.set_read_timeout(Some(RESEND)).unwrap();
        d
    };
    let to = SocketAddr::new(server_ip, port);
    let connected = dgram(client);
    retry_unavailable(|| connected.connect(&to)).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    // Bound to its address, not [::], so that it answers from the address the requests went to
    // even when they come from the client's link-local address (a connected socket takes only
    // datagrams from the address it connected to).
    let srv = dgram(server);
    retry_unavailable(|| srv.bind(&to)).unwrap_or_else(|e| panic!("bind {to}: {e}"));
    let unbound = dgram(client);
    let deadline = Instant::now() + 2 * DAD_BOUND;
    let (mut c_done, mut u_done) = (false, false);
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    while !(c_done && u_done) {
        assert!(
            Instant::now() < deadline,
            "connected answered: {c_done}, unbound answered: {u_done} within {:?} \
             (requests seen from {seen:?})",
            2 * DAD_BOUND
        );
        if !c_done {
            retry_unavailable(|| connected.send(b"connected"))
                .unwrap_or_else(|e| panic!("send to {to}: {e}"));
        }
        if !u_done {
            retry_unavailable(|| unbound.send_to(b"unbound", &to))
                .unwrap_or_else(|e| panic!("send_to {to}: {e}"));
        }
        while let Ok((n, from)) = srv.recv_from(&mut buf) {
            assert!(
                matches!(&buf[..n], b"connected" | b"unbound"),
                "{:?}",
                &buf[..n]
            );
            assert_from_vde0(client, from.ip(), "a request");
            if seen.len() < 2 {
                seen.push(from.ip());
            }
            srv.send_to(&buf[..n], &from).expect("answer");
        }
        if !c_done {
            if let Ok(n) = connected.recv(&mut buf) {
                assert_eq!(&buf[..n], b"connected");
                c_done = true;
            }
        }
        if !u_done {
            if let Ok((n, from)) = unbound.recv_from(&mut buf) {
                assert_eq!(&buf[..n], b"unbound");
                assert_from_vde0(server, from.ip(), "an answer");
                u_done = true;
            }
        }
    }
    seen
}

/// [`tcp_at_once`] (on `port`) and [`udp_at_once`] (on `port + 1`) at the same time, on two
/// threads, right after configuring: both start while the addresses are still in DAD. Returns
/// the source of the TCP connection and those of the first UDP requests.
pub fn tcp_and_udp_at_once(
    server: &Stack,
    server_ip: IpAddr,
    client: &Stack,
    port: u16,
) -> (IpAddr, Vec<IpAddr>) {
    std::thread::scope(|sc| {
        let udp = sc.spawn(|| udp_at_once(server, server_ip, client, port + 1));
        let tcp = tcp_at_once(server, server_ip, client, port);
        (tcp, udp.join().expect("the UDP exchange panicked"))
    })
}
