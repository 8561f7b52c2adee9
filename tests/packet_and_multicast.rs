//! The sockets configuration clients and multicast programs use, on smoltcp (proxied fds)
//! compared with vdestack's Linux kernel for the same calls on two stacks of one VDE switch:
//! packet sockets (`AF_PACKET`, `SOCK_RAW` and `SOCK_DGRAM`: errnos, `sockaddr_ll` bytes,
//! frames each way), UDP multicast and broadcast (option errnos and values, group membership,
//! hop limits, loopback of the sender's own datagrams, the frames on the wire) and a DHCPv6
//! SOLICIT to `ff02::1:2` from a stack without routes. The clients themselves, against a real
//! server, are tested in tests/config.rs.
//!
//! Each test starts its own switch and stacks (stopped by pid on drop, on failure too);
//! addresses exist only inside the stacks. Needs root: without it the tests are reported as
//! ignored. Every wait is bounded.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ioth::{Socket, Stack};
use ioth_tests::dad::{self, wait_not_tentative};
use ioth_tests::dhcp::{self, bytes, recv_within, sll, Sll};
use ioth_tests::stacks::{self, bare};
use ioth_tests::vde::Switch;

/// How long a frame between two stacks on one switch may take.
const FRAME: Duration = Duration::from_secs(5);
/// An ethertype of IEEE 802's "local experimental" range, which neither stack handles itself.
const ETH_P_TEST: u16 = 0x88b5;
const PACKET_HOST: u8 = 0;
const PACKET_BROADCAST: u8 = 1;

fn errno_of(r: std::io::Result<impl std::fmt::Debug>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("not an errno: {e}")),
    }
}

/// The packet socket calls a configuration client makes, on smoltcp and on vdestack's kernel:
/// the same errnos, the same `getsockname` bytes (modulo MAC), and frames between the two
/// stacks with the same bytes and the same `sockaddr_ll` fields each way (SOCK_DGRAM to
/// SOCK_RAW and back, broadcast and unicast).
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: dnsmasq and vdestack (network namespaces, taps)"
)]
fn packet_sockets_match_the_kernel() {
    let sw = Switch::start();
    let (vde, vidx) = bare("vdestack", &sw);
    let (smol, sidx) = bare("smoltcp", &sw);
    let vmac = vde.link_get_mac(vidx).unwrap();
    let smac = smol.link_get_mac(sidx).unwrap();
    let proto = i32::from(ETH_P_TEST.to_be());

    // Control calls: errnos and names.
    let mut names = Vec::new();
    for (s, idx, mac) in [(&vde, vidx, vmac), (&smol, sidx, smac)] {
        let p = s.msocket(libc::AF_PACKET, libc::SOCK_DGRAM, 0).unwrap();
        let unbound = bytes(&p.local_sockaddr().unwrap());
        let mut short = bytes(&sll(idx, ETH_P_TEST, None));
        short.truncate(19);
        let e_short = errno_of(p.bind_sockaddr(&dhcp::sockaddr(&short)));
        let e_dev = errno_of(p.bind_sockaddr(&sll(99, ETH_P_TEST, None)));
        let mut inet = bytes(&sll(idx, ETH_P_TEST, None));
        inet[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        let e_fam = errno_of(p.bind_sockaddr(&dhcp::sockaddr(&inet)));
        let e_conn = errno_of(p.connect(&stacks::addr("10.0.0.1:1")));
        let e_opt = errno_of(p.setsockopt(libc::IPPROTO_IP, libc::IP_TTL, &1i32.to_ne_bytes()));
        p.bind_sockaddr(&sll(idx, ETH_P_TEST, None)).expect("bind");
        let mut bound = bytes(&p.local_sockaddr().unwrap());
        assert_eq!(
            &bound[12..],
            &mac,
            "getsockname's sll_addr is the interface's MAC"
        );
        bound.truncate(12);
        let ty = p.getsockopt(libc::SOL_SOCKET, libc::SO_TYPE, 4).unwrap();
        let pr = p
            .getsockopt(libc::SOL_SOCKET, libc::SO_PROTOCOL, 4)
            .unwrap();
        let bad_type = s
            .msocket(libc::AF_PACKET, libc::SOCK_STREAM, proto)
            .map(|_| ())
            .unwrap_err()
            .errno();
        names.push((
            unbound, e_short, e_dev, e_fam, e_conn, e_opt, bound, ty, pr, bad_type,
        ));
    }
    eprintln!("vdestack: {:?}\nsmoltcp:  {:?}", names[0], names[1]);
    assert_eq!(names[0], names[1], "vdestack and smoltcp differ");
    assert_eq!(names[0].1, libc::EINVAL);
    assert_eq!(names[0].2, libc::ENODEV);

    // Frames: a DGRAM sender and a RAW receiver on each side, both ways.
    let pair = |s: &Stack, idx: u32| {
        let tx = s.msocket(libc::AF_PACKET, libc::SOCK_DGRAM, proto).unwrap();
        tx.bind_sockaddr(&sll(idx, ETH_P_TEST, None)).unwrap();
        let rx = s.msocket(libc::AF_PACKET, libc::SOCK_RAW, proto).unwrap();
        rx.bind_sockaddr(&sll(idx, ETH_P_TEST, None)).unwrap();
        (tx, rx)
    };
    let (vtx, vrx) = pair(&vde, vidx);
    let (stx, srx) = pair(&smol, sidx);
    let payload: Vec<u8> = (0..200u8).collect();
    let mut seen = Vec::new();
    for (tx, tidx, tmac, rx, ridx, rmac) in [
        (&vtx, vidx, vmac, &srx, sidx, smac),
        (&stx, sidx, smac, &vrx, vidx, vmac),
    ] {
        for (dst, kind) in [([0xff; 6], PACKET_BROADCAST), (rmac, PACKET_HOST)] {
            let n = tx
                .send_to_sockaddr(&payload, &sll(tidx, ETH_P_TEST, Some(dst)))
                .expect("sendto");
            assert_eq!(n, payload.len());
            let (frame, from) = recv_frame(rx);
            let f = Sll::of(&from);
            assert_eq!(
                bytes(&from).len(),
                dhcp::SLL_LEN,
                "recvfrom's address length"
            );
            assert_eq!(&frame[..6], &dst, "destination MAC");
            assert_eq!(&frame[6..12], &tmac, "source MAC");
            assert_eq!(&frame[12..14], &ETH_P_TEST.to_be_bytes());
            // A minimum-size frame may be padded on the way: the payload is a prefix.
            assert_eq!(&frame[14..14 + payload.len()], &payload[..]);
            assert_eq!(f.protocol, ETH_P_TEST);
            assert_eq!(f.ifindex, ridx as i32);
            assert_eq!(f.hatype, 1);
            assert_eq!(f.pkttype, kind);
            assert_eq!(f.halen, 6);
            assert_eq!(f.addr, tmac);
            seen.push(frame.len());
        }
    }
    assert_eq!(seen[..2], seen[2..], "the same frames each way: {seen:?}");
}

/// One frame of the test's ethertype on `rx` (others are skipped), within [`FRAME`].
fn recv_frame(rx: &Socket) -> (Vec<u8>, socket2::SockAddr) {
    let mut buf = vec![0u8; 2048];
    let deadline = std::time::Instant::now() + FRAME;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (n, from) = recv_within(rx, &mut buf, left).expect("no frame within the bound");
        if n >= 14 && buf[12..14] == ETH_P_TEST.to_be_bytes() {
            return (buf[..n].to_vec(), from);
        }
    }
}

/// A UDP socket of `domain` on `s`.
fn udp(s: &Stack, domain: i32) -> Socket {
    s.msocket(domain, libc::SOCK_DGRAM, 0).expect("UDP socket")
}

/// `setsockopt`'s errno (0 for success).
fn set_errno(u: &Socket, level: i32, name: i32, v: &[u8]) -> i32 {
    match u.setsockopt(level, name, v) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

fn mreq6(group: &str, ifindex: u32) -> Vec<u8> {
    let mut v = stacks::ip(group)
        .to_string()
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    v.extend_from_slice(&ifindex.to_ne_bytes());
    v
}

fn mreqn(group: &str, local: &str, ifindex: Option<u32>) -> Vec<u8> {
    let g: std::net::Ipv4Addr = group.parse().unwrap();
    let l: std::net::Ipv4Addr = local.parse().unwrap();
    let mut v = g.octets().to_vec();
    v.extend_from_slice(&l.octets());
    if let Some(i) = ifindex {
        v.extend_from_slice(&(i as i32).to_ne_bytes());
    }
    v
}

/// The multicast and broadcast option calls of configuration clients and multicast programs,
/// on a UDP socket of each stack: the errnos and the values read back, smoltcp against
/// vdestack's kernel.
fn multicast_options(s: &Stack, idx: u32, v4: &str) -> Vec<(&'static str, i32)> {
    let int = |x: i32| x.to_ne_bytes();
    let get = |u: &Socket, level, name| {
        let v = u.getsockopt(level, name, 4).expect("getsockopt");
        i32::from_ne_bytes(v[..4].try_into().unwrap())
    };
    let mut r = Vec::new();
    let u6 = udp(s, libc::AF_INET6);
    let v6 = libc::IPPROTO_IPV6;
    let mut short = mreq6("ff02::1:3333", idx);
    short.pop();
    r.push((
        "join6 short",
        set_errno(&u6, v6, libc::IPV6_ADD_MEMBERSHIP, &short),
    ));
    r.push((
        "join6 unicast",
        set_errno(&u6, v6, libc::IPV6_ADD_MEMBERSHIP, &mreq6("fd00::1", idx)),
    ));
    r.push((
        "join6 no dev",
        set_errno(
            &u6,
            v6,
            libc::IPV6_ADD_MEMBERSHIP,
            &mreq6("ff02::1:3333", 99),
        ),
    ));
    r.push((
        "join6",
        set_errno(
            &u6,
            v6,
            libc::IPV6_ADD_MEMBERSHIP,
            &mreq6("ff02::1:3333", idx),
        ),
    ));
    r.push((
        "join6 again",
        set_errno(
            &u6,
            v6,
            libc::IPV6_ADD_MEMBERSHIP,
            &mreq6("ff02::1:3333", idx),
        ),
    ));
    r.push((
        "join6 default if",
        set_errno(
            &u6,
            v6,
            libc::IPV6_ADD_MEMBERSHIP,
            &mreq6("ff02::1:4444", 0),
        ),
    ));
    r.push((
        "leave6 not joined",
        set_errno(
            &u6,
            v6,
            libc::IPV6_DROP_MEMBERSHIP,
            &mreq6("ff02::1:5555", idx),
        ),
    ));
    r.push((
        "leave6",
        set_errno(
            &u6,
            v6,
            libc::IPV6_DROP_MEMBERSHIP,
            &mreq6("ff02::1:3333", idx),
        ),
    ));
    r.push((
        "leave6 any if",
        set_errno(
            &u6,
            v6,
            libc::IPV6_DROP_MEMBERSHIP,
            &mreq6("ff02::1:4444", 0),
        ),
    ));
    r.push((
        "mhops 256",
        set_errno(&u6, v6, libc::IPV6_MULTICAST_HOPS, &int(256)),
    ));
    r.push(("mhops default", get(&u6, v6, libc::IPV6_MULTICAST_HOPS)));
    r.push((
        "mhops 7",
        set_errno(&u6, v6, libc::IPV6_MULTICAST_HOPS, &int(7)),
    ));
    r.push(("mhops read", get(&u6, v6, libc::IPV6_MULTICAST_HOPS)));
    r.push(("uhops default", get(&u6, v6, libc::IPV6_UNICAST_HOPS)));
    r.push((
        "mloop 2",
        set_errno(&u6, v6, libc::IPV6_MULTICAST_LOOP, &int(2)),
    ));
    r.push(("mloop default", get(&u6, v6, libc::IPV6_MULTICAST_LOOP)));
    r.push((
        "mif6 99",
        set_errno(&u6, v6, libc::IPV6_MULTICAST_IF, &int(99)),
    ));
    r.push((
        "mif6",
        set_errno(&u6, v6, libc::IPV6_MULTICAST_IF, &int(idx as i32)),
    ));
    r.push(("mif6 read", get(&u6, v6, libc::IPV6_MULTICAST_IF)));
    r.push((
        "recvpktinfo",
        set_errno(&u6, v6, libc::IPV6_RECVPKTINFO, &int(1)),
    ));
    r.push(("recvpktinfo read", get(&u6, v6, libc::IPV6_RECVPKTINFO)));
    r.push(("unknown v6 option", set_errno(&u6, v6, 4242, &int(1))));
    r.push((
        "bindtodevice nope",
        set_errno(&u6, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, b"nope0"),
    ));
    r.push((
        "bindtodevice",
        set_errno(&u6, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, b"vde0"),
    ));
    let dev = u6
        .getsockopt(libc::SOL_SOCKET, libc::SO_BINDTODEVICE, 16)
        .expect("SO_BINDTODEVICE");
    r.push(("bindtodevice read", i32::from(dev == b"vde0\0")));
    r.push((
        "mif6 other than the device",
        set_errno(&u6, v6, libc::IPV6_MULTICAST_IF, &int(1)),
    ));

    let u4 = udp(s, libc::AF_INET);
    let ip = libc::IPPROTO_IP;
    r.push((
        "v6 option on AF_INET",
        set_errno(&u4, v6, libc::IPV6_MULTICAST_HOPS, &int(1)),
    ));
    r.push((
        "join4 short",
        set_errno(
            &u4,
            ip,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn("239.1.2.3", "0.0.0.0", None)[..7],
        ),
    ));
    r.push((
        "join4 unicast",
        set_errno(
            &u4,
            ip,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn("10.1.2.3", "0.0.0.0", None),
        ),
    ));
    r.push((
        "join4 no dev",
        set_errno(
            &u4,
            ip,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn("239.1.2.3", "0.0.0.0", Some(99)),
        ),
    ));
    r.push((
        "join4 no addr",
        set_errno(
            &u4,
            ip,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn("239.1.2.3", "10.99.99.99", None),
        ),
    ));
    r.push((
        "join4 mreqn",
        set_errno(
            &u4,
            ip,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn("239.1.2.3", "0.0.0.0", Some(idx)),
        ),
    ));
    r.push((
        "join4 again",
        set_errno(
            &u4,
            ip,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn("239.1.2.3", "0.0.0.0", Some(idx)),
        ),
    ));
    r.push((
        "join4 mreq by addr",
        set_errno(
            &u4,
            ip,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn("239.1.2.4", v4, None),
        ),
    ));
    r.push((
        "drop4 not joined",
        set_errno(
            &u4,
            ip,
            libc::IP_DROP_MEMBERSHIP,
            &mreqn("239.1.2.5", v4, None),
        ),
    ));
    r.push((
        "drop4",
        set_errno(
            &u4,
            ip,
            libc::IP_DROP_MEMBERSHIP,
            &mreqn("239.1.2.4", v4, None),
        ),
    ));
    r.push((
        "mttl 256",
        set_errno(&u4, ip, libc::IP_MULTICAST_TTL, &int(256)),
    ));
    r.push(("mttl default", get(&u4, ip, libc::IP_MULTICAST_TTL)));
    r.push((
        "mttl byte",
        set_errno(&u4, ip, libc::IP_MULTICAST_TTL, &[9]),
    ));
    r.push(("mttl read", get(&u4, ip, libc::IP_MULTICAST_TTL)));
    r.push(("ttl 0", set_errno(&u4, ip, libc::IP_TTL, &int(0))));
    r.push((
        "mif4 no addr",
        set_errno(
            &u4,
            ip,
            libc::IP_MULTICAST_IF,
            &mreqn("10.99.99.99", "0.0.0.0", None)[..4],
        ),
    ));
    r.push(("mif4 read default", get(&u4, ip, libc::IP_MULTICAST_IF)));
    let own: std::net::Ipv4Addr = v4.parse().unwrap();
    r.push((
        "mif4",
        set_errno(&u4, ip, libc::IP_MULTICAST_IF, &own.octets()),
    ));
    r.push((
        "mif4 read",
        i32::from(get(&u4, ip, libc::IP_MULTICAST_IF).to_ne_bytes() == own.octets()),
    ));
    r.push(("pktinfo", set_errno(&u4, ip, libc::IP_PKTINFO, &int(1))));
    r.push(("pktinfo read", get(&u4, ip, libc::IP_PKTINFO)));
    r.push(("unknown v4 option", set_errno(&u4, ip, 4242, &int(1))));
    r.push((
        "broadcast default",
        get(&u4, libc::SOL_SOCKET, libc::SO_BROADCAST),
    ));
    let bcast = stacks::addr("255.255.255.255:7001");
    r.push((
        "sendto broadcast without SO_BROADCAST",
        u4.send_to(b"x", &bcast)
            .map_or_else(|e| e.raw_os_error().unwrap_or(-1), |_| 0),
    ));
    r.push((
        "connect broadcast without SO_BROADCAST",
        u4.connect(&bcast)
            .map_or_else(|e| e.raw_os_error().unwrap_or(-1), |_| 0),
    ));
    r.push((
        "broadcast",
        set_errno(&u4, libc::SOL_SOCKET, libc::SO_BROADCAST, &int(1)),
    ));
    r.push((
        "broadcast read",
        get(&u4, libc::SOL_SOCKET, libc::SO_BROADCAST),
    ));
    r
}

/// One datagram on `u` within [`FRAME`]: payload and source.
fn recv_dgram(u: &Socket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = recv_within(u, &mut buf, FRAME).expect("no datagram within the bound");
    (buf[..n].to_vec(), from.as_socket().expect("an IP source"))
}

/// The first frame on packet socket `rx` (`SOCK_RAW`) that carries UDP to port `port`: the
/// destination MAC, the IP header's hop limit / TTL, source and destination.
fn captured(rx: &Socket, port: u16) -> ([u8; 6], u8, IpAddr, IpAddr) {
    let mut buf = vec![0u8; 2048];
    let deadline = std::time::Instant::now() + FRAME;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (n, _) = recv_within(rx, &mut buf, left).expect("no frame within the bound");
        let f = &buf[..n];
        let mac: [u8; 6] = f[..6].try_into().unwrap();
        match u16::from_be_bytes([f[12], f[13]]) {
            0x86dd if n >= 62 && f[20] == 17 && f[56..58] == port.to_be_bytes() => {
                let a = |o: usize| IpAddr::V6(<[u8; 16]>::try_from(&f[o..o + 16]).unwrap().into());
                return (mac, f[21], a(22), a(38));
            }
            0x0800 if n >= 42 && f[23] == 17 && f[36..38] == port.to_be_bytes() => {
                let a = |o: usize| IpAddr::V4(<[u8; 4]>::try_from(&f[o..o + 4]).unwrap().into());
                return (mac, f[22], a(26), a(30));
            }
            _ => {}
        }
    }
}

/// Multicast and broadcast on UDP sockets, smoltcp against vdestack's kernel for the same
/// calls: the option errnos and values ([`multicast_options`]); then datagrams each way to an
/// IPv6 link-scope group (`IPV6_MULTICAST_HOPS` 5), an IPv4 group (`IP_MULTICAST_TTL` 3 out of
/// `IP_MULTICAST_IF`'s address) and the IPv4 broadcast address: the receiver that joined gets
/// them with the same source (link-local with scope = the interface, or the IPv4 address) and
/// port, and the frames have the same group MAC, hop limit and addresses; after
/// `IPV6_LEAVE_GROUP`, a datagram to the group is not delivered (a unicast marker sent after
/// it comes first); a socket of the sending stack that joined gets a looped copy unless
/// `IPV6_MULTICAST_LOOP` is 0.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: dnsmasq and vdestack (network namespaces, taps)"
)]
fn multicast_matches_the_kernel() {
    let sw = Switch::start();
    let (vde, vidx) = bare("vdestack", &sw);
    let (smol, sidx) = bare("smoltcp", &sw);
    let v4 = ["10.19.0.1", "10.19.0.2"];
    let v6 = ["fd19::1", "fd19::2"];
    for (k, (s, idx)) in [(&vde, vidx), (&smol, sidx)].into_iter().enumerate() {
        s.ipaddr_add(stacks::ip(v4[k]), 24, idx).unwrap();
        s.ipaddr_add(stacks::ip(v6[k]), 64, idx).unwrap();
    }
    // A default route: where IPv4 broadcasts without a device go (else ENETUNREACH).
    for (s, _) in [(&vde, vidx), (&smol, sidx)] {
        s.iproute_add(None, Some(stacks::ip("10.19.0.254")), None)
            .unwrap();
    }
    wait_not_tentative(&vde, stacks::ip(v6[0]));
    // The link-local addresses, for the sources below.
    let ll_of = dad::usable_link_local;
    let lls = [ll_of(&vde), ll_of(&smol)];

    let ov = multicast_options(&vde, vidx, v4[0]);
    let os = multicast_options(&smol, sidx, v4[1]);
    for (a, b) in ov.iter().zip(&os) {
        eprintln!("{:40} vdestack {:4} smoltcp {:4}", a.0, a.1, b.1);
    }
    assert_eq!(ov, os, "option calls differ");

    let stacks_ = [(&vde, vidx), (&smol, sidx)];
    let mut seen = Vec::new();
    for (from, to) in [(0usize, 1usize), (1, 0)] {
        let (ss, _) = stacks_[from];
        let (rs, ridx) = stacks_[to];
        let rx = rs
            .msocket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                i32::from(0x0003u16.to_be()),
            )
            .unwrap();
        rx.bind_sockaddr(&sll(ridx, 0x0003, None)).unwrap();
        // IPv6, link-scope group.
        let r6 = udp(rs, libc::AF_INET6);
        r6.bind(&stacks::addr("[::]:7000")).unwrap();
        r6.setsockopt(
            libc::IPPROTO_IPV6,
            libc::IPV6_ADD_MEMBERSHIP,
            &mreq6("ff02::1:3333", ridx),
        )
        .unwrap();
        let t6 = udp(ss, libc::AF_INET6);
        t6.bind(&stacks::addr("[::]:7100")).unwrap();
        t6.setsockopt(
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_HOPS,
            &5i32.to_ne_bytes(),
        )
        .unwrap();
        let sidx_ = stacks_[from].1;
        let group = SocketAddr::V6(std::net::SocketAddrV6::new(
            "ff02::1:3333".parse().unwrap(),
            7000,
            0,
            sidx_,
        ));
        t6.send_to(b"to the group", &group)
            .expect("sendto the group");
        let (p, src) = recv_dgram(&r6);
        assert_eq!(p, b"to the group");
        let src6 = match src {
            SocketAddr::V6(x) => x,
            _ => panic!("{src}"),
        };
        assert_eq!(
            (IpAddr::V6(*src6.ip()), src6.port(), src6.scope_id()),
            (lls[from], 7100, ridx)
        );
        let c6 = captured(&rx, 7000);
        assert_eq!(
            c6,
            (
                [0x33, 0x33, 0, 1, 0x33, 0x33],
                5,
                lls[from],
                stacks::ip("ff02::1:3333")
            )
        );
        // Left: the next one is not delivered; a unicast marker after it is.
        r6.setsockopt(
            libc::IPPROTO_IPV6,
            libc::IPV6_DROP_MEMBERSHIP,
            &mreq6("ff02::1:3333", ridx),
        )
        .unwrap();
        t6.send_to(b"after leaving", &group).unwrap();
        let marker = SocketAddr::new(stacks::ip(v6[to]), 7000);
        t6.send_to(b"marker", &marker).unwrap();
        assert_eq!(
            recv_dgram(&r6).0,
            b"marker",
            "a datagram to a group left was delivered"
        );
        // IPv4 group out of IP_MULTICAST_IF, TTL 3.
        let r4 = udp(rs, libc::AF_INET);
        r4.bind(&stacks::addr("0.0.0.0:7002")).unwrap();
        r4.setsockopt(
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn("239.1.2.3", "0.0.0.0", Some(ridx)),
        )
        .unwrap();
        let t4 = udp(ss, libc::AF_INET);
        t4.bind(&stacks::addr("0.0.0.0:7102")).unwrap();
        let me: std::net::Ipv4Addr = v4[from].parse().unwrap();
        t4.setsockopt(libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &me.octets())
            .unwrap();
        t4.setsockopt(
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_TTL,
            &3i32.to_ne_bytes(),
        )
        .unwrap();
        t4.send_to(b"v4 group", &stacks::addr("239.1.2.3:7002"))
            .unwrap();
        let (p, src) = recv_dgram(&r4);
        assert_eq!(
            (p.as_slice(), src),
            (
                &b"v4 group"[..],
                stacks::addr(&format!("{}:7102", v4[from]))
            )
        );
        let c4 = captured(&rx, 7002);
        assert_eq!(
            c4,
            (
                [1, 0, 0x5e, 1, 2, 3],
                3,
                stacks::ip(v4[from]),
                stacks::ip("239.1.2.3")
            )
        );
        // Broadcast, with SO_BROADCAST.
        let rb = udp(rs, libc::AF_INET);
        rb.bind(&stacks::addr("0.0.0.0:7001")).unwrap();
        let tb = udp(ss, libc::AF_INET);
        tb.setsockopt(libc::SOL_SOCKET, libc::SO_BROADCAST, &1i32.to_ne_bytes())
            .unwrap();
        tb.bind(&stacks::addr("0.0.0.0:7101")).unwrap();
        tb.send_to(b"everyone", &stacks::addr("255.255.255.255:7001"))
            .unwrap();
        let (p, src) = recv_dgram(&rb);
        assert_eq!(
            (p.as_slice(), src),
            (
                &b"everyone"[..],
                stacks::addr(&format!("{}:7101", v4[from]))
            )
        );
        let cb = captured(&rx, 7001);
        assert_eq!(
            (cb.0, cb.2, cb.3),
            (
                [0xff; 6],
                stacks::ip(v4[from]),
                stacks::ip("255.255.255.255")
            )
        );
        seen.push((c6.1, c4.1, cb.1));
    }
    assert_eq!(seen[0], seen[1], "hop limits each way");

    // Loop: a socket of the sending stack that joined gets its own stack's datagram. Each
    // stack has a group and port of its own: the other stack on the switch also hears the
    // frames, and one that joins a group while frames sent to it earlier are still on their
    // way takes them (the kernel does the same).
    let mut looped = Vec::new();
    for (s, idx, k) in [(&vde, vidx, 0), (&smol, sidx, 1)] {
        let (g, port) = (["ff02::1:6666", "ff02::1:6667"][k], 7003 + k as u16);
        let r = udp(s, libc::AF_INET6);
        r.bind(&SocketAddr::new(stacks::ip("::"), port)).unwrap();
        r.setsockopt(
            libc::IPPROTO_IPV6,
            libc::IPV6_ADD_MEMBERSHIP,
            &mreq6(g, idx),
        )
        .unwrap();
        let t = udp(s, libc::AF_INET6);
        t.bind(&stacks::addr("[::]:7103")).unwrap();
        let group = SocketAddr::V6(std::net::SocketAddrV6::new(
            g.parse().unwrap(),
            port,
            0,
            idx,
        ));
        t.send_to(b"looped", &group).unwrap();
        let (p, src) = recv_dgram(&r);
        looped.push((p, src));
        t.setsockopt(
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_LOOP,
            &0i32.to_ne_bytes(),
        )
        .unwrap();
        t.send_to(b"not looped", &group).unwrap();
        t.send_to(b"marker", &SocketAddr::new(stacks::ip(v6[k]), port))
            .unwrap();
        let (p, from) = recv_dgram(&r);
        assert_eq!(
            (String::from_utf8_lossy(&p), from.port()),
            ("marker".into(), 7103),
            "looped with IPV6_MULTICAST_LOOP 0 (stack {k}, from {from})"
        );
    }
    let want = |k: usize, idx: u32| match lls[k] {
        IpAddr::V6(a) => SocketAddr::V6(std::net::SocketAddrV6::new(a, 7103, 0, idx)),
        _ => unreachable!(),
    };
    assert_eq!(looped[0], (b"looped".to_vec(), want(0, vidx)));
    assert_eq!(looped[1], (b"looped".to_vec(), want(1, sidx)));
}

/// A DHCPv6 client's SOLICIT as simple clients send it: a UDP socket bound to `[::]:546`, no
/// interface chosen (no `SO_BINDTODEVICE`, no `IPV6_MULTICAST_IF`, scope id 0) and no route at
/// all on the stack. The kernel (vdestack) sends it out of the interface (its `ff00::/8` route)
/// from the link-local address; smoltcp must do the same. `connect` to `ff02::1:2` needs an
/// interface, as in the kernel: `EINVAL` without one, and with the scope id or
/// `IPV6_MULTICAST_IF` it succeeds and `send` goes out of that interface. Every frame is
/// captured on the other stack: the group's MAC, hop limit 1, the sender's link-local source.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn solicit_to_ff02_1_2_without_routes_leaves_the_stack() {
    let sw = Switch::start();
    let (vde, vidx) = bare("vdestack", &sw);
    let (smol, sidx) = bare("smoltcp", &sw);
    let link_local = dad::usable_link_local;
    let stacks_ = [(&vde, vidx, "vdestack"), (&smol, sidx, "smoltcp")];
    let lls = [link_local(&vde), link_local(&smol)];
    let server = SocketAddr::V6("[ff02::1:2]:547".parse().unwrap());
    let mut outcome = Vec::new();
    for (from, to) in [(0usize, 1usize), (1, 0)] {
        let (ss, sidx_, name) = stacks_[from];
        let (rs, ridx, _) = stacks_[to];
        let rx = rs
            .msocket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                i32::from(0x0003u16.to_be()),
            )
            .unwrap();
        rx.bind_sockaddr(&sll(ridx, 0x0003, None)).unwrap();
        let frame = ([0x33, 0x33, 0, 1, 0, 2], 1, lls[from], server.ip());
        let c = udp(ss, libc::AF_INET6);
        c.bind(&stacks::addr("[::]:546")).unwrap();
        c.send_to(b"SOLICIT by sendto", &server)
            .unwrap_or_else(|e| panic!("{name}: sendto ff02::1:2: {e}"));
        assert_eq!(captured(&rx, 547), frame, "{name}: sendto");
        let unscoped = c.connect(&server).map_err(|e| e.raw_os_error());
        let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
            "ff02::1:2".parse().unwrap(),
            547,
            0,
            sidx_,
        ));
        c.connect(&scoped)
            .unwrap_or_else(|e| panic!("{name}: connect with the scope id: {e}"));
        c.send(b"SOLICIT by send").unwrap();
        assert_eq!(captured(&rx, 547), frame, "{name}: send, scope id");
        let m = udp(ss, libc::AF_INET6);
        m.bind(&stacks::addr("[::]:1546")).unwrap();
        m.setsockopt(
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            &(sidx_ as i32).to_ne_bytes(),
        )
        .unwrap();
        m.connect(&server)
            .unwrap_or_else(|e| panic!("{name}: connect with IPV6_MULTICAST_IF: {e}"));
        m.send(b"SOLICIT by send").unwrap();
        assert_eq!(captured(&rx, 547), frame, "{name}: send, IPV6_MULTICAST_IF");
        outcome.push(unscoped);
    }
    assert_eq!(
        outcome,
        [Err(Some(libc::EINVAL)), Err(Some(libc::EINVAL))],
        "connect without an interface: vdestack, smoltcp"
    );
}
