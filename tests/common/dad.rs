//! IPv6 addresses in duplicate address detection, waited for the way programs do.
//!
//! The tests add IPv6 addresses as users do, with duplicate address detection (DAD): on a
//! vdestack stack a new address is *tentative* for one to two seconds. Until the kernel has an
//! address it may use, binding to it, or connecting or sending through an interface that has no
//! usable address yet, fails at once with `EADDRNOTAVAIL`; programs retry. [`retry_unavailable`]
//! is that retry, bounded by [`DAD_BOUND`]. smoltcp does no DAD: its addresses are usable at
//! once, and a call on a smoltcp socket simply succeeds the first time.
//!
//! [`tcp_at_once`] and [`udp_at_once`] (together: [`tcp_and_udp_at_once`]) are what a program
//! does right after configuring: they
//! check that a vdestack stack with addresses in DAD never sends from a wrong source (`::1`)
//! and never hangs.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::thread::sleep;
use std::time::{Duration, Instant};

use ioth::Stack;

use crate::sock;

/// The longest a configured address may stay unusable: Linux's DAD is a random delay of up to
/// `rtr_solicit_delay` (1 s) plus `dad_transmits` (1) × `retrans_time` (1 s); the rest is slack
/// for a loaded machine.
pub const DAD_BOUND: Duration = Duration::from_secs(10);

/// The pause between two attempts.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// Runs `op` until it does anything but fail with `EADDRNOTAVAIL`, or [`DAD_BOUND`] has passed;
/// its last result. `op` makes a whole attempt (a fresh socket for a connect).
pub fn retry_unavailable<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let deadline = Instant::now() + DAD_BOUND;
    loop {
        match op() {
            Err(e)
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && Instant::now() < deadline =>
            {
                sleep(RETRY_EVERY)
            }
            r => return r,
        }
    }
}

/// A link-local IPv6 address of `stack` that is no longer tentative, waited for within
/// [`DAD_BOUND`]; panics if none comes.
pub fn usable_link_local(stack: &Stack) -> IpAddr {
    let deadline = Instant::now() + DAD_BOUND;
    loop {
        let a = stack.addresses().expect("the stack's addresses");
        let found = a.iter().find(|x| {
            matches!(x.addr, IpAddr::V6(v) if v.is_unicast_link_local())
                && x.flags & crate::stacks::IFA_F_TENTATIVE == 0
        });
        if let Some(x) = found {
            return x.addr;
        }
        assert!(Instant::now() < deadline, "no link-local address: {a:?}");
        sleep(Duration::from_millis(50));
    }
}

/// The addresses of interface `ifname` of `stack` (its netlink dump).
pub fn interface_addresses(stack: &Stack, ifname: &str) -> Vec<IpAddr> {
    let idx = stack
        .if_nametoindex(ifname)
        .unwrap_or_else(|e| panic!("if_nametoindex {ifname}: {e}"));
    let all = stack.addresses().expect("addresses");
    all.iter()
        .filter(|a| a.index == idx)
        .map(|a| a.addr)
        .collect()
}

/// Checks that `ip`, the source of a packet that crossed the switch, is one of the addresses of
/// `stack`'s vde0 (the configured one, or its link-local one while the configured one is still
/// in DAD — Linux's choice, RFC 6724), never `::1`.
fn assert_from_vde0(stack: &Stack, ip: IpAddr, what: &str) {
    assert!(
        !ip.is_loopback(),
        "{what} left with the loopback source {ip}"
    );
    let own = interface_addresses(stack, "vde0");
    assert!(
        own.contains(&ip),
        "{what}: source {ip} is not an address of vde0: {own:?}"
    );
}

/// Checks that `got`, the source the kernel chose for a socket of `stack` that did not bind, is
/// `configured` — or, on vdestack while `configured` is still in DAD, the link-local address of
/// the same interface (Linux's choice, RFC 6724; see docs/vdestack.md).
pub fn assert_source(stack: &Stack, got: IpAddr, configured: IpAddr) {
    if got == configured {
        return;
    }
    let link_local = matches!(got, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
    assert!(
        link_local && configured.is_ipv6(),
        "source {got}, expected {configured}"
    );
    assert_from_vde0(
        stack,
        got,
        &format!("a connection expected from {configured}"),
    );
}

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
