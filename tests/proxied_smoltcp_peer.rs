//! smoltcp as a peer, beyond tests/proxied.rs: ICMP echo replies of the smoltcp
//! stack (IPv4 and IPv6, to a raw socket of a vdestack stack), its default route (a network
//! reached only through a gateway), 1,000 sequential connections with smoltcp as the client
//! (its ephemeral ports, its TIME-WAITs), datagram boundaries with several datagrams queued, and
//! the errnos of control calls as the plug-in gave them, through the host.
//!
//! Each test starts its own VDE switch (stopped by pid on drop) with a smoltcp stack (10.0.0.1,
//! fd00::1) and a vdestack stack (10.0.0.2, fd00::2) on it; addresses exist only inside the
//! stacks. Needs root (vdestack: a network namespace, a tap; raw sockets in that namespace):
//! without root every test says so loudly and returns. Every wait is bounded; no timing is
//! asserted.
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ioth::Socket;
use ioth_tests::dad::retry_unavailable;
use ioth_tests::sock::{accept, connect, listener, stream, WAIT};
use ioth_tests::stacks::{addr, domain, ip, Net};
use ioth_tests::vde;

/// How long one try waits for a datagram (an ICMP reply, a UDP datagram) that may be lost
/// while neighbours are discovered; tries are bounded.
const TRY: Duration = Duration::from_secs(2);
const TRIES: usize = 5;

// ---------------------------------------------------------------- setup

/// A smoltcp stack (10.0.0.1/24, fd00::1/64 on vde0, configured with the ioth netlink calls;
/// no route beyond its own networks) and a vdestack stack (10.0.0.2/24, fd00::2/64 on vde0,
/// configured with `ip` in its namespace) on one switch.
fn net() -> Net {
    Net::start()
}

// ---------------------------------------------------------------- ICMP echo

/// The Internet checksum (RFC 1071) of `b`.
fn inet_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP (type 8) or ICMPv6 (type 128) echo request. The IPv4 checksum is computed here; for
/// ICMPv6 the kernel fills it in (a raw `IPPROTO_ICMPV6` socket always does).
fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    if !v6 {
        let c = inet_checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    m
}

/// A test payload of `len` bytes, different for every `seq`.
fn payload(seq: u16, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seq as u8))
        .collect()
}

/// Sends echo requests from a raw socket of the vdestack stack to the smoltcp stack's
/// address `to` and checks every reply: source, type and code, identifier, sequence number,
/// payload, and (IPv4) the checksum. A request or reply may be lost while neighbours are
/// discovered: each is retried, bounded.
fn ping(n: &Net, to: IpAddr) {
    let v6 = to.is_ipv6();
    let (dom, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    let raw = n
        .vde
        .msocket(dom, libc::SOCK_RAW, proto)
        .unwrap_or_else(|e| {
            panic!(
                "raw socket ({}) on vdestack: {e}",
                if v6 { "v6" } else { "v4" }
            )
        });
    assert!(!raw.is_proxied(), "vdestack's fds are native");
    raw.set_read_timeout(Some(TRY)).unwrap();
    let dest = SocketAddr::new(to, 0);
    // An identifier of our own: a raw socket sees every ICMP message of its stack.
    let id = 0x1000 | (std::process::id() as u16 & 0x0fff);
    // Sizes: empty, small, the classic 56 bytes, and close to the MTU (1500 less IP and ICMP
    // headers, 20 + 8 for IPv4, 40 + 8 for IPv6).
    let max = if v6 { 1500 - 48 } else { 1500 - 28 };
    for (seq, len) in [(1u16, 0usize), (2, 1), (3, 56), (4, 1000), (5, max)] {
        let data = payload(seq, len);
        let req = echo_request(v6, id, seq, &data);
        let mut answered = false;
        'tries: for _ in 0..TRIES {
            // EADDRNOTAVAIL while vde0's IPv6 address is in duplicate address detection.
            retry_unavailable(|| raw.send_to(&req, &dest))
                .unwrap_or_else(|e| panic!("sendto {to} (seq {seq}): {e}"));
            // Read until our reply, or until a read times out (then send again).
            for _ in 0..64 {
                let mut buf = vec![0u8; 2048];
                let (k, from) = match raw.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue 'tries
                    }
                    Err(e) => panic!("recvfrom: {e}"),
                };
                let msg = if v6 {
                    // A raw ICMPv6 socket gets the ICMPv6 message alone (checksum verified
                    // by the kernel).
                    &buf[..k]
                } else {
                    // A raw IPv4 socket gets the IP header too.
                    assert!(k >= 20, "short IPv4 packet ({k} bytes)");
                    let ihl = usize::from(buf[0] & 0x0f) * 4;
                    assert_eq!(buf[9], libc::IPPROTO_ICMP as u8);
                    &buf[ihl..k]
                };
                let reply_type = if v6 { 129 } else { 0 };
                if msg.len() < 8
                    || msg[0] != reply_type
                    || u16::from_be_bytes([msg[4], msg[5]]) != id
                {
                    continue; // another ICMP message (NDP, our own request looped, …)
                }
                assert_eq!(from.ip(), to, "the reply's source");
                if !v6 {
                    assert_eq!(&buf[12..16], &[10, 0, 0, 1], "the IPv4 header's source");
                }
                assert_eq!(msg[1], 0, "code");
                let rseq = u16::from_be_bytes([msg[6], msg[7]]);
                if rseq != seq {
                    // A late reply to an earlier try of an earlier request: it must be one.
                    assert!(rseq < seq, "reply to seq {rseq}, never sent");
                    continue;
                }
                assert_eq!(msg[8..].len(), len, "payload length (seq {seq})");
                assert!(
                    msg[8..] == data[..],
                    "payload differs (seq {seq}, {len} bytes)"
                );
                if !v6 {
                    assert_eq!(inet_checksum(msg), 0, "ICMP checksum of the reply");
                }
                answered = true;
                break 'tries;
            }
        }
        assert!(
            answered,
            "no echo reply from {to} to seq {seq} ({len} bytes) in {TRIES} tries"
        );
    }
}

/// Echo requests to the smoltcp stack over IPv4 (smoltcp's `auto-icmp-echo-reply`) are
/// answered with the same identifier, sequence number and payload.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn icmp_echo_reply_ipv4() {
    let n = net();
    ping(&n, ip("10.0.0.1"));
}

/// The same over IPv6 (ICMPv6 type 128/129; smoltcp answers with the same feature).
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn icmp_echo_reply_ipv6() {
    let n = net();
    ping(&n, ip("fd00::1"));
}

// ---------------------------------------------------------------- the default route

/// smoltcp reaches a network that is not on its link only through its default route: the
/// vdestack stack also holds 10.9.0.2/24 and fd09::2/64 and is the gateway. Without the route
/// a connect fails with the plug-in's `ENETUNREACH`; with it, TCP echoes over IPv4 and IPv6.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn default_route_reaches_a_network_behind_the_gateway() {
    let n = net();
    let pid = n.vde.pid().unwrap();
    vde::ip(pid, &["addr", "add", "10.9.0.2/24", "dev", "vde0"]);
    vde::ip(pid, &["addr", "add", "fd09::2/64", "dev", "vde0"]);
    let idx = n.smol.if_nametoindex("vde0").unwrap();
    for (far, gw) in [("10.9.0.2:5100", "10.0.0.2"), ("[fd09::2]:5101", "fd00::2")] {
        let far = addr(far);
        let l = listener(&n.vde, far);
        // No route yet: the errno is the plug-in's, through the host.
        let c = stream(&n.smol, &far);
        let e = c.connect(&far).expect_err("connect without a route");
        assert_eq!(e.raw_os_error(), Some(libc::ENETUNREACH), "{far}: {e}");
        drop(c);
        n.smol
            .iproute_add(None, Some(ip(gw)), Some(idx))
            .unwrap_or_else(|e| panic!("default route via {gw}: {e}"));
        let c = connect(&n.smol, far);
        assert_eq!(c.peer_addr().unwrap(), far);
        let local = c.local_addr().unwrap().ip();
        assert_eq!(
            local,
            ip(if far.is_ipv4() { "10.0.0.1" } else { "fd00::1" }),
            "source address of a routed connection"
        );
        let (s, peer) = accept(&l);
        assert_eq!(peer.ip(), local);
        for i in 0..10 {
            let msg = format!("through the gateway {i}");
            (&c).write_all(msg.as_bytes()).unwrap();
            let mut b = vec![0u8; msg.len()];
            (&s).read_exact(&mut b).unwrap();
            (&s).write_all(&b).unwrap();
            let mut back = vec![0u8; msg.len()];
            (&c).read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
        }
    }
    let routes = n.smol.routes().unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.prefix_len == 0 && r.gateway == Some(ip("10.0.0.2"))),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r.prefix_len == 0 && r.gateway == Some(ip("fd00::2"))),
        "{routes:?}"
    );
}

// ---------------------------------------------------------------- 1,000 connections out

/// 1,000 sequential connections from smoltcp (the client, closing first: its ephemeral ports
/// and TIME-WAITs) to vdestack; every socket is closed on the host afterwards.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn thousand_sequential_connections_smoltcp_client() {
    let n = net();
    let at = addr("10.0.0.2:5102");
    let l = listener(&n.vde, at);
    let before = n.smol.stats().unwrap().host_fds;
    let srv = std::thread::spawn(move || {
        for i in 0..1000u32 {
            let (c, _) = accept(&l);
            let mut b = [0u8; 4];
            (&c).read_exact(&mut b).expect("server read");
            assert_eq!(u32::from_le_bytes(b), i);
            (&c).write_all(&b).expect("server write");
            // The client closes first.
            assert_eq!((&c).read(&mut b).expect("server read EOF"), 0);
        }
    });
    let mut ports = std::collections::HashSet::new();
    for i in 0..1000u32 {
        let c = connect(&n.smol, at);
        ports.insert(c.local_addr().unwrap().port());
        (&c).write_all(&i.to_le_bytes()).unwrap();
        let mut b = [0u8; 4];
        (&c).read_exact(&mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), i);
    }
    srv.join().expect("server");
    println!(
        "proxied_smoltcp_peer: 1000 connections smoltcp → vdestack used {} distinct ephemeral ports",
        ports.len()
    );
    let s = &n.smol;
    assert!(
        ioth_tests::proc::wait_until(WAIT, || s.stats().unwrap().host_fds <= before),
        "host fds: {before} before, {} after",
        s.stats().unwrap().host_fds
    );
    assert_eq!(s.open_sockets(), 0);
}

// ---------------------------------------------------------------- datagram boundaries

/// Sends the batch `msgs` from `from` to `to` back to back and receives on `at_sock` until
/// each arrived: every datagram received must be exactly one that was sent (boundaries
/// kept, none merged or split), from `from`'s address. Retried, bounded, for losses.
fn batch(from: &Socket, to: SocketAddr, rx: &Socket, msgs: &[Vec<u8>]) {
    let src = from.local_addr().unwrap();
    let mut seen = vec![false; msgs.len()];
    for _ in 0..TRIES {
        for (m, s) in msgs.iter().zip(&seen) {
            if !s {
                assert_eq!(from.send_to(m, &to).unwrap(), m.len());
            }
        }
        loop {
            let mut buf = vec![0u8; 4096];
            match rx.recv_from(&mut buf) {
                Ok((k, f)) => {
                    assert_eq!(f, src, "source of a datagram");
                    let i = msgs
                        .iter()
                        .position(|m| m[..] == buf[..k])
                        .unwrap_or_else(|| panic!("a {k}-byte datagram that was never sent"));
                    seen[i] = true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => panic!("recv_from: {e}"),
            }
            if seen.iter().all(|s| *s) {
                return;
            }
        }
    }
    panic!("datagrams never arrived: {seen:?}");
}

/// Several datagrams queued at once keep their boundaries and their source, both ways, IPv4
/// and IPv6: sizes 1 to the largest unfragmented payload.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_datagrams_queued_back_to_back_keep_boundaries() {
    let n = net();
    for v6 in [false, true] {
        let (s_at, v_at) = if v6 {
            (addr("[fd00::1]:7100"), addr("[fd00::2]:7101"))
        } else {
            (addr("10.0.0.1:7100"), addr("10.0.0.2:7101"))
        };
        let max = if v6 { 1500 - 48 } else { 1500 - 28 };
        let msgs: Vec<Vec<u8>> = [1usize, 2, 100, 1000, max]
            .iter()
            .enumerate()
            .map(|(i, &len)| vec![b'a' + i as u8; len])
            .collect();
        let s = n.smol.msocket(domain(&s_at), libc::SOCK_DGRAM, 0).unwrap();
        s.bind(&s_at).unwrap();
        s.set_read_timeout(Some(TRY)).unwrap();
        let v = n.vde.msocket(domain(&v_at), libc::SOCK_DGRAM, 0).unwrap();
        retry_unavailable(|| v.bind(&v_at)).unwrap();
        v.set_read_timeout(Some(TRY)).unwrap();
        batch(&v, s_at, &s, &msgs);
        batch(&s, v_at, &v, &msgs);
        // Larger than one frame: both sides fragment (smoltcp IPv4 with its
        // `proto-ipv4-fragmentation`, IPv6 in the plug-in, plugins/smoltcp/src/frag.rs). Only
        // printed here; tests/proxied_udp_and_idle.rs asserts it (`udp_large_datagrams_*`).
        let big = vec![b'z'; max + 1];
        let out = match s.send_to(&big, &v_at) {
            Err(e) => format!("refused ({e})"),
            Ok(_) => arrived(&v, big.len()),
        };
        v.send_to(&big, &s_at).unwrap();
        let inn = arrived(&s, big.len());
        println!(
            "proxied_smoltcp_peer: a {}-byte {} datagram smoltcp → vdestack: {out}; vdestack → smoltcp \
             (fragmented by Linux): {inn}",
            big.len(),
            if v6 { "IPv6" } else { "IPv4" }
        );
    }
}

/// Whether a `len`-byte datagram arrives on `rx` within one try.
fn arrived(rx: &Socket, len: usize) -> String {
    let mut buf = vec![0u8; 65536];
    match rx.recv_from(&mut buf) {
        Ok((k, _)) if k == len => "delivered".into(),
        Ok((k, _)) => format!("delivered as {k} bytes"),
        Err(e) => format!("not delivered ({e})"),
    }
}

// ---------------------------------------------------------------- errnos through the host

/// Control calls on proxied smoltcp sockets answer with the errno the plug-in gave, through
/// the host, and the application's fds are of the kinds docs/proxied.md names.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn control_call_errnos_through_the_host() {
    let n = net();
    let errno = |r: io::Result<()>| r.expect_err("an error").raw_os_error();
    let at = addr("10.0.0.1:5103");
    let l = listener(&n.smol, at);
    assert!(l.is_proxied());
    // Bind: the address in use, an address the stack does not have.
    let d = stream(&n.smol, &at);
    assert_eq!(errno(d.bind(&addr("0.0.0.0:5103"))), Some(libc::EADDRINUSE));
    assert_eq!(
        errno(d.bind(&addr("10.9.9.9:5104"))),
        Some(libc::EADDRNOTAVAIL)
    );
    // Not connected.
    assert_eq!(errno(d.peer_addr().map(drop)), Some(libc::ENOTCONN));
    // accept on a socket that does not listen: EINVAL, blocking or not, no wait.
    assert_eq!(errno(d.accept().map(drop)), Some(libc::EINVAL));
    d.set_nonblocking(true).unwrap();
    assert_eq!(errno(d.accept().map(drop)), Some(libc::EINVAL));
    // An unknown option level.
    assert_eq!(
        errno(d.setsockopt(4242, 1, &1i32.to_ne_bytes())),
        Some(libc::ENOPROTOOPT)
    );
    // SO_TYPE in the stack, and the kinds of the application's fds (stream for TCP; for UDP
    // a socket that keeps datagram boundaries).
    let so_type = |s: &Socket| {
        i32::from_ne_bytes(
            s.getsockopt(libc::SOL_SOCKET, libc::SO_TYPE, 4).unwrap()[..4]
                .try_into()
                .unwrap(),
        )
    };
    let fd_type = |s: &Socket| -> i32 {
        let mut t: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: t and len are valid for the call; s's fd is open.
        let r = unsafe {
            libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(s),
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&mut t as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "getsockopt on the fd: {}", io::Error::last_os_error());
        t
    };
    assert_eq!(so_type(&l), libc::SOCK_STREAM);
    assert_eq!(fd_type(&l), libc::SOCK_STREAM);
    let u = n.smol.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    assert_eq!(so_type(&u), libc::SOCK_DGRAM);
    let k = fd_type(&u);
    assert!(
        k == libc::SOCK_DGRAM || k == libc::SOCK_SEQPACKET,
        "a UDP socket's fd is of type {k}"
    );
    // A UDP bind to a port a UDP socket holds.
    u.bind(&addr("10.0.0.1:7102")).unwrap();
    let u2 = n.smol.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    assert_eq!(
        errno(u2.bind(&addr("10.0.0.1:7102"))),
        Some(libc::EADDRINUSE)
    );
    // Shutdown of a socket that is not connected.
    let t = stream(&n.smol, &at);
    assert_eq!(
        errno(t.shutdown(std::net::Shutdown::Write)),
        Some(libc::ENOTCONN)
    );
}
