//! Configuration clients on every stack. A real server (`dnsmasq` in a namespace of its
//! own on the test's VDE switch, [`ioth_tests::dhcp::Server`]) and a client of our own written
//! as such clients are ([`ioth_tests::dhcp`]), the same code on vdestack (a Linux kernel stack)
//! and on smoltcp (proxied fds): DHCPv4, router discovery and DHCPv6 give both the same
//! configuration, applied with the ioth netlink calls (addresses with lifetimes, on-link
//! prefixes, default routes), then TCP over it. What the netlink calls install is compared with
//! the kernel's. The sockets these clients use (packet sockets, UDP multicast) are compared with
//! the kernel's in tests/packet_and_multicast.rs.
//!
//! Each test starts its own switch, server and stacks (stopped by pid on drop, on failure too);
//! addresses exist only inside the stacks and the server's namespace. Needs root: without it the
//! tests are reported as ignored. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ioth::Stack;
use ioth_tests::dad::wait_not_tentative;
use ioth_tests::dhcp::{self, Server};
use ioth_tests::sock::{accept, connect, listener};
use ioth_tests::stacks::{self, bare};
use ioth_tests::vde::Switch;

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

/// DHCPv6 from dnsmasq, the same client code on vdestack and on smoltcp (a UDP socket on
/// port 546 bound to the interface, SOLICIT/REQUEST to `ff02::1:2` from the link-local
/// address): both get an address of the range with the server's lifetimes, from the same
/// server (its link-local address, scope = the interface, one DUID). Applied as configuration
/// clients do: the address as /128 with its lifetimes (`IFA_CACHEINFO`, with DAD), the router
/// advertisement's on-link prefix as a route out of the interface without a gateway and its
/// router as the default route (a kernel stack may have installed both from the advertisement
/// itself: `EEXIST`). Both stacks report the lifetimes back (not permanent, counting down from
/// the lease's) and the on-link route; then TCP works between the two leased addresses.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: dnsmasq and vdestack (network namespaces, taps)"
)]
fn dhcpv6_address_on_both_stacks() {
    let sw = Switch::start();
    let server = Server::start(&sw);
    let (vde, vidx) = bare("vdestack", &sw);
    let (smol, sidx) = bare("smoltcp", &sw);
    let rv = dhcp::router_discovery(&vde, vidx);
    let rs = dhcp::router_discovery(&smol, sidx);
    let lv = dhcp::dhcpv6(&vde, vidx);
    let ls = dhcp::dhcpv6(&smol, sidx);
    eprintln!("vdestack: {lv:?}\nsmoltcp:  {ls:?}");
    for (l, idx, name) in [(&lv, vidx, "vdestack"), (&ls, sidx, "smoltcp")] {
        assert!(
            in_range(IpAddr::V6(l.addr), Server::V6_RANGE.0, Server::V6_RANGE.1),
            "{name}: {} outside the range; server log:\n{}",
            l.addr,
            server.log()
        );
        assert_eq!(l.valid, 3600, "{name}: the range's lease time");
        assert!(l.preferred > 0 && l.preferred <= l.valid, "{name}: {l:?}");
        assert!(l.from.ip().is_unicast_link_local(), "{name}: {l:?}");
        assert_eq!(l.from.port(), 547, "{name}");
        assert_eq!(
            l.from.scope_id(),
            idx,
            "{name}: the source's scope is the interface"
        );
    }
    assert_ne!(lv.addr, ls.addr, "two clients, two addresses");
    assert_eq!(lv.server_duid, ls.server_duid, "one server");
    assert_eq!(lv.from.ip(), ls.from.ip(), "one server address");
    assert_eq!(rv.router, rs.router);
    drop(server);
    let prefix: std::net::Ipv6Addr = Server::V6_PREFIX.parse().unwrap();
    for (s, idx, l, r, name) in [
        (&vde, vidx, &lv, &rv, "vdestack"),
        (&smol, sidx, &ls, &rs, "smoltcp"),
    ] {
        let a = IpAddr::V6(l.addr);
        dhcp::nl_request(
            s,
            dhcp::addr_with_lifetimes(a, 128, idx, l.valid, l.preferred),
            netlink_packet_core::NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL,
        )
        .unwrap_or_else(|e| panic!("{name}: RTM_NEWADDR with IFA_CACHEINFO: errno {e}"));
        for (dst, gw) in [
            (Some((IpAddr::V6(prefix), 64)), None),
            (None, Some(IpAddr::V6(r.router))),
        ] {
            match s.iproute_add(dst, gw, Some(idx)) {
                Ok(()) => {}
                Err(e) if e.errno() == libc::EEXIST => {}
                Err(e) => panic!("{name}: route {dst:?} via {gw:?}: {e}"),
            }
        }
        let (valid, preferred, flags) = dhcp::lifetimes_of(s, a)
            .unwrap_or_else(|| panic!("{name}: {a} has no IFA_CACHEINFO in the dump"));
        const IFA_F_PERMANENT: u32 = 0x80;
        assert!(
            valid <= l.valid && valid + 60 >= l.valid,
            "{name}: valid {valid}"
        );
        assert!(preferred <= l.preferred, "{name}: preferred {preferred}");
        assert_eq!(
            flags & IFA_F_PERMANENT,
            0,
            "{name}: lifetimes, not permanent"
        );
        let routes = s.routes().expect("routes");
        assert!(
            routes.iter().any(|x| x.dst == IpAddr::V6(prefix)
                && x.prefix_len == 64
                && x.gateway.is_none()
                && x.ifindex == Some(idx)),
            "{name}: no on-link route for {prefix}/64: {routes:?}"
        );
        let shown = s.addresses().expect("addresses");
        assert!(
            shown.iter().any(|x| x.addr == a && x.prefix_len == 128),
            "{name}: {shown:?}"
        );
    }
    wait_not_tentative(&vde, IpAddr::V6(lv.addr));
    tcp_both_ways(&smol, &vde, SocketAddr::new(IpAddr::V6(ls.addr), 5004));
    tcp_both_ways(&vde, &smol, SocketAddr::new(IpAddr::V6(lv.addr), 5005));
}

/// What configuration clients install through rtnetlink, on smoltcp's emulation and on
/// vdestack's kernel: addresses with lifetimes (`IFA_CACHEINFO`: bad ones refused with the
/// same errno; the lifetimes read back counting down, not permanent, deprecated once the
/// preferred lifetime is 0; the address gone when the valid one ends) and on-link routes
/// without a gateway (reported with the interface and link scope; the prefix route of an
/// address of the interface exists already).
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: dnsmasq and vdestack (network namespaces, taps)"
)]
fn address_lifetimes_and_onlink_routes_match_the_kernel() {
    use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
    const IFA_F_PERMANENT: u32 = 0x80;
    const IFA_F_DEPRECATED: u32 = 0x20;
    let sw = Switch::start();
    let (vde, vidx) = bare("vdestack", &sw);
    let (smol, sidx) = bare("smoltcp", &sw);
    let mut seen = Vec::new();
    for (s, idx) in [(&vde, vidx), (&smol, sidx)] {
        let add = |a: &str, p: u8, valid: u32, preferred: u32| {
            dhcp::nl_request(
                s,
                dhcp::addr_with_lifetimes(stacks::ip(a), p, idx, valid, preferred),
                NLM_F_CREATE | NLM_F_EXCL,
            )
        };
        let zero = add("10.29.0.9", 24, 0, 0);
        let longer = add("10.29.0.9", 24, 10, 20);
        add("10.29.0.5", 24, 3, 0).expect("a short-lived address");
        add("fd29::5", 64, 100, 50).expect("an IPv6 address with lifetimes");
        let (v4, p4, f4) = dhcp::lifetimes_of(s, stacks::ip("10.29.0.5")).expect("10.29.0.5");
        let (v6, p6, f6) = dhcp::lifetimes_of(s, stacks::ip("fd29::5")).expect("fd29::5");
        assert!(v4 <= 3 && p4 == 0, "{v4} {p4}");
        assert!(
            (90..=100).contains(&v6) && (40..=50).contains(&p6),
            "{v6} {p6}"
        );
        s.ipaddr_add(stacks::ip("10.31.0.7"), 24, idx).unwrap();
        let (vp, pp, fp) = dhcp::lifetimes_of(s, stacks::ip("10.31.0.7")).expect("10.31.0.7");
        let onlink = s
            .iproute_add(Some((stacks::ip("10.30.0.0"), 24)), None, Some(idx))
            .map_err(|e| e.errno());
        let own = s
            .iproute_add(Some((stacks::ip("10.31.0.0"), 24)), None, Some(idx))
            .map_err(|e| e.errno());
        let routes = s.routes().unwrap();
        let r = routes
            .iter()
            .find(|r| r.dst == stacks::ip("10.30.0.0"))
            .unwrap_or_else(|| panic!("no on-link route: {routes:?}"));
        // Expiry: the short-lived address goes (bounded wait).
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while s
            .addresses()
            .unwrap()
            .iter()
            .any(|a| a.addr == stacks::ip("10.29.0.5"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "10.29.0.5 outlived its valid lifetime"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        seen.push((
            zero,
            longer,
            f4 & (IFA_F_PERMANENT | IFA_F_DEPRECATED),
            f6 & (IFA_F_PERMANENT | IFA_F_DEPRECATED),
            (vp, pp, fp & IFA_F_PERMANENT),
            onlink,
            own,
            (r.prefix_len, r.gateway, r.ifindex, r.scope),
        ));
    }
    eprintln!("vdestack: {:?}\nsmoltcp:  {:?}", seen[0], seen[1]);
    assert_eq!(seen[0].0, Err(libc::EINVAL), "a zero valid lifetime");
    assert_eq!(
        seen[0].2, IFA_F_DEPRECATED,
        "preferred 0: deprecated, not permanent"
    );
    assert_eq!(seen[0].3, 0, "lifetimes: not permanent");
    assert_eq!(seen[0].4, (u32::MAX, u32::MAX, IFA_F_PERMANENT));
    assert_eq!(seen[0], seen[1], "vdestack and smoltcp differ");
}
