use super::*;

fn udp(c: &mut Core, domain: i32) -> Handle {
    c.socket(domain, libc::SOCK_DGRAM, 0).unwrap()
}

fn mreqn(group: &str, index: u32) -> Vec<u8> {
    let g: std::net::Ipv4Addr = group.parse().unwrap();
    let mut v = g.octets().to_vec();
    v.extend([0; 4]);
    v.extend(index.to_ne_bytes());
    v
}

fn mreq6(group: &str, index: u32) -> Vec<u8> {
    let g: std::net::Ipv6Addr = group.parse().unwrap();
    let mut v = g.octets().to_vec();
    v.extend(index.to_ne_bytes());
    v
}

fn code(r: io::Result<()>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

fn joined(c: &Core, group: &str) -> bool {
    c.net.ifaces[1].groups.contains(&group.parse().unwrap())
}

const IP: i32 = libc::IPPROTO_IP;
const IP6: i32 = libc::IPPROTO_IPV6;

#[test]
fn ipv4_memberships_are_counted_per_socket_and_interface() {
    let mut c = Core::new(crate::netlink::tests::net_up());
    let (a, b) = (udp(&mut c, libc::AF_INET), udp(&mut c, libc::AF_INET));
    let g = mreqn("239.1.2.3", 2);
    c.setsockopt(a, IP, libc::IP_ADD_MEMBERSHIP, &g).unwrap();
    assert!(joined(&c, "239.1.2.3"));
    assert_eq!(
        code(c.setsockopt(a, IP, libc::IP_ADD_MEMBERSHIP, &g)),
        libc::EADDRINUSE
    );
    c.setsockopt(b, IP, libc::IP_ADD_MEMBERSHIP, &g).unwrap();
    // The interface stays in the group while one socket holds it.
    c.setsockopt(a, IP, libc::IP_DROP_MEMBERSHIP, &g).unwrap();
    assert!(joined(&c, "239.1.2.3"));
    assert_eq!(
        code(c.setsockopt(a, IP, libc::IP_DROP_MEMBERSHIP, &g)),
        libc::EADDRNOTAVAIL
    );
    c.setsockopt(b, IP, libc::IP_DROP_MEMBERSHIP, &g).unwrap();
    assert!(!joined(&c, "239.1.2.3"));
    // By the interface's address (struct ip_mreq); bad requests.
    let mut by_addr = "239.1.2.4"
        .parse::<std::net::Ipv4Addr>()
        .unwrap()
        .octets()
        .to_vec();
    by_addr.extend([10, 0, 0, 1]);
    c.setsockopt(a, IP, libc::IP_ADD_MEMBERSHIP, &by_addr)
        .unwrap();
    assert!(joined(&c, "239.1.2.4"));
    let cases = [
        (mreqn("10.0.0.9", 2), libc::EINVAL),
        (mreqn("239.1.2.5", 9), libc::ENODEV),
        (g[..7].to_vec(), libc::EINVAL),
    ];
    for (v, e) in cases {
        assert_eq!(code(c.setsockopt(a, IP, libc::IP_ADD_MEMBERSHIP, &v)), e);
    }
    assert!(!joined(&c, "239.1.2.5"));
}

#[test]
fn ipv6_memberships_join_the_routed_interface_and_leave() {
    let mut c = Core::new(crate::netlink::tests::net_up());
    let a = udp(&mut c, libc::AF_INET6);
    // Interface 0, a link-scope group: the first VDE interface up.
    c.setsockopt(a, IP6, libc::IPV6_ADD_MEMBERSHIP, &mreq6("ff02::1:3", 0))
        .unwrap();
    assert!(joined(&c, "ff02::1:3"));
    assert_eq!(
        code(c.setsockopt(a, IP6, libc::IPV6_ADD_MEMBERSHIP, &mreq6("ff02::1:3", 2))),
        libc::EADDRINUSE
    );
    let cases = [
        (mreq6("ff02::1:4", 9), libc::ENODEV),
        (mreq6("fd00::5", 2), libc::EINVAL),
        (mreq6("ff02::1:4", 2)[..19].to_vec(), libc::EINVAL),
    ];
    for (v, e) in cases {
        assert_eq!(code(c.setsockopt(a, IP6, libc::IPV6_ADD_MEMBERSHIP, &v)), e);
    }
    c.setsockopt(a, IP6, libc::IPV6_DROP_MEMBERSHIP, &mreq6("ff02::1:3", 2))
        .unwrap();
    assert!(!joined(&c, "ff02::1:3"));
    assert_eq!(
        code(c.setsockopt(a, IP6, libc::IPV6_DROP_MEMBERSHIP, &mreq6("ff02::1:3", 0))),
        libc::EADDRNOTAVAIL
    );
}
