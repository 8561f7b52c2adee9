//! Configuration clients on every stack. A real server (`dnsmasq` in a namespace of its
//! own on the test's VDE switch, [`ioth_tests::dhcp::Server`]) and a client of our own written
//! as such clients are ([`ioth_tests::dhcp`]), the same code on vdestack (a Linux kernel stack)
//! and on smoltcp (proxied fds): the same configuration on both, applied with the ioth netlink
//! calls, then TCP over it. Packet-socket semantics of smoltcp compared with the kernel's for
//! the same calls: bytes, addresses, errnos.
//!
//! Each test starts its own switch, server and stacks (stopped by pid on drop, on failure too);
//! addresses exist only inside the stacks and the server's namespace. Needs root: without it the
//! tests say so loudly and return. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ioth::{Socket, Stack};
use ioth_tests::dhcp::{self, bytes, recv_within, sll, Server, Sll};
use ioth_tests::sock::{accept, connect, listener};
use ioth_tests::stacks;
use ioth_tests::vde::Switch;

/// How long a frame between two stacks on one switch may take.
const FRAME: Duration = Duration::from_secs(5);
/// An ethertype of IEEE 802's "local experimental" range, which neither stack handles itself.
const ETH_P_TEST: u16 = 0x88b5;
const PACKET_HOST: u8 = 0;
const PACKET_BROADCAST: u8 = 1;

/// A stack of `plugin` on `sw` with `vde0` up and nothing configured; its `vde0` index.
fn bare(plugin: &str, sw: &Switch) -> (Stack, u32) {
    let s = Stack::new(plugin, &[sw.vnl()]).unwrap_or_else(|e| panic!("newstack {plugin}: {e}"));
    let idx = s.if_nametoindex("vde0").expect("vde0");
    s.link_set_up(idx, true).expect("link up");
    (s, idx)
}

fn errno_of(r: std::io::Result<impl std::fmt::Debug>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("not an errno: {e}")),
    }
}

fn in_range(a: IpAddr, lo: &str, hi: &str) -> bool {
    match (a, stacks::ip(lo), stacks::ip(hi)) {
        (IpAddr::V4(a), IpAddr::V4(l), IpAddr::V4(h)) => l <= a && a <= h,
        (IpAddr::V6(a), IpAddr::V6(l), IpAddr::V6(h)) => l <= a && a <= h,
        _ => false,
    }
}

/// Sends a pattern both ways over a TCP connection from `client` to `server_stack` at `at`.
fn tcp_both_ways(server_stack: &Stack, client: &Stack, at: SocketAddr) {
    let l = listener(server_stack, at);
    let mut c = connect(client, at);
    let (mut a, _) = accept(&l);
    let out: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    c.write_all(&out).unwrap();
    let mut got = vec![0u8; out.len()];
    a.read_exact(&mut got).unwrap();
    assert_eq!(got, out, "bytes client → server");
    a.write_all(&out[..5000]).unwrap();
    let mut back = vec![0u8; 5000];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, out[..5000], "bytes server → client");
}

/// DHCPv4 from dnsmasq on a packet socket, the same client code on vdestack and on smoltcp:
/// both get a lease from the range with the server's mask, router and identifier, from the
/// server's MAC; applied with ipaddr_add and a default route through the router, TCP works
/// between the leased addresses (both ways) and from each stack to the server's router address
/// (the route is used: a connect to an address of the server off the leased network).
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: dnsmasq and vdestack (network namespaces, taps)"
)]
fn dhcpv4_lease_on_both_stacks() {
    let sw = Switch::start();
    let server = Server::start(&sw);
    let (vde, vidx) = bare("vdestack", &sw);
    let (smol, sidx) = bare("smoltcp", &sw);
    let lv = dhcp::dhcpv4(&vde, vidx);
    let ls = dhcp::dhcpv4(&smol, sidx);
    eprintln!("vdestack: {lv:?}\nsmoltcp:  {ls:?}");
    for (l, name) in [(&lv, "vdestack"), (&ls, "smoltcp")] {
        assert!(
            in_range(IpAddr::V4(l.addr), Server::V4_RANGE.0, Server::V4_RANGE.1),
            "{name}: lease {} outside the range; server log:\n{}",
            l.addr,
            server.log()
        );
        assert_eq!(l.prefix, 24, "{name}");
        assert_eq!(l.router, Some(Server::V4.parse().unwrap()), "{name}");
        assert_eq!(
            l.server,
            Server::V4.parse::<std::net::Ipv4Addr>().unwrap(),
            "{name}"
        );
        assert_eq!(l.lease_secs, 3600, "{name}");
        assert_eq!(l.from.protocol, dhcp::ETH_P_IP, "{name}");
        assert_eq!(l.from.hatype, 1, "{name}: ARPHRD_ETHER");
        assert_eq!(l.from.halen, 6, "{name}");
    }
    assert_eq!(
        lv.from.addr, ls.from.addr,
        "both ACKs come from the server's MAC"
    );
    assert_eq!(lv.from.pkttype, ls.from.pkttype, "same sll_pkttype");
    assert_ne!(lv.addr, ls.addr, "two clients, two leases");
    let leases = server.leases();
    for l in [&lv, &ls] {
        assert!(
            leases.contains(&l.addr.to_string()),
            "{} not in {leases}",
            l.addr
        );
    }
    for (s, idx, l) in [(&vde, vidx, &lv), (&smol, sidx, &ls)] {
        s.ipaddr_add(IpAddr::V4(l.addr), l.prefix, idx)
            .expect("ipaddr_add");
        s.iproute_add(None, l.router.map(IpAddr::V4), None)
            .expect("default route");
        let shown = s.addresses().expect("addresses");
        assert!(
            shown
                .iter()
                .any(|a| a.addr == IpAddr::V4(l.addr) && a.prefix_len == l.prefix),
            "{shown:?}"
        );
    }
    tcp_both_ways(&smol, &vde, SocketAddr::new(IpAddr::V4(ls.addr), 5000));
    tcp_both_ways(&vde, &smol, SocketAddr::new(IpAddr::V4(lv.addr), 5001));
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

/// Router discovery on a raw ICMPv6 socket, the same client code on vdestack and on smoltcp:
/// both hear the server's advertisement (from its link-local address, scope = the interface)
/// with the managed flag, a lifetime and the on-link prefix `fd09::/64`; a default route
/// through the router's link-local address and an address in the prefix (EUI-64, with DAD) are
/// applied with netlink, then TCP works between the two stacks over them.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: dnsmasq and vdestack (network namespaces, taps)"
)]
fn router_advertisement_on_both_stacks() {
    let sw = Switch::start();
    let server = Server::start(&sw);
    let (vde, vidx) = bare("vdestack", &sw);
    let (smol, sidx) = bare("smoltcp", &sw);
    let rv = dhcp::router_discovery(&vde, vidx);
    let rs = dhcp::router_discovery(&smol, sidx);
    eprintln!("vdestack: {rv:?}\nsmoltcp:  {rs:?}");
    let prefix: std::net::Ipv6Addr = Server::V6_PREFIX.parse().unwrap();
    for (r, idx, name) in [(&rv, vidx, "vdestack"), (&rs, sidx, "smoltcp")] {
        assert!(r.router.is_unicast_link_local(), "{name}: {r:?}");
        assert_eq!(r.scope, idx, "{name}: the source's scope is the interface");
        assert!(r.lifetime > 0, "{name}: a default router");
        assert!(r.managed, "{name}: dnsmasq with a DHCPv6 range sets M");
        let (p, len, onlink, _, valid) = r.prefix.unwrap_or_else(|| panic!("{name}: no prefix"));
        assert_eq!((p, len, onlink), (prefix, 64, true), "{name}");
        assert!(valid > 0, "{name}");
    }
    assert_eq!(rv.router, rs.router, "the same router");
    assert_eq!(
        (rv.lifetime, rv.managed, rv.prefix),
        (rs.lifetime, rs.managed, rs.prefix)
    );
    drop(server);
    let mut addrs = Vec::new();
    for (s, idx, r) in [(&vde, vidx, &rv), (&smol, sidx, &rs)] {
        let a = dhcp::eui64(prefix, s.link_get_mac(idx).unwrap());
        s.ipaddr_add(IpAddr::V6(a), 64, idx).expect("ipaddr_add");
        // A kernel stack may have taken the route from the advertisement itself (accept_ra).
        match s.iproute_add(None, Some(IpAddr::V6(r.router)), Some(idx)) {
            Ok(()) => {}
            Err(e) if e.errno() == libc::EEXIST => {}
            Err(e) => panic!("default route through the router's link-local address: {e}"),
        }
        let routes = s.routes().expect("routes");
        assert!(
            routes
                .iter()
                .any(|x| x.prefix_len == 0 && x.gateway == Some(IpAddr::V6(r.router))),
            "no default route via {}: {routes:?}",
            r.router
        );
        addrs.push(a);
    }
    wait_not_tentative(&vde, IpAddr::V6(addrs[0]));
    tcp_both_ways(&smol, &vde, SocketAddr::new(IpAddr::V6(addrs[1]), 5002));
    tcp_both_ways(&vde, &smol, SocketAddr::new(IpAddr::V6(addrs[0]), 5003));
}

/// Waits (bounded) until `a` on `s` has finished duplicate address detection.
fn wait_not_tentative(s: &Stack, a: IpAddr) {
    const IFA_F_TENTATIVE: u32 = 0x40;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let shown = s.addresses().expect("addresses");
        if shown
            .iter()
            .any(|x| x.addr == a && x.flags & IFA_F_TENTATIVE == 0)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{a} still tentative: {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
