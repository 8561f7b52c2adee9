use super::*;

fn core() -> Core {
    Core::new(crate::netlink::tests::net_up())
}

fn sa(s: &str) -> Vec<u8> {
    let a: SocketAddr = s.parse().unwrap();
    let domain = if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    addr::to_sockaddr(a, domain)
}

fn tcp4(c: &mut Core) -> Handle {
    c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap()
}

fn local(c: &mut Core, h: Handle) -> SocketAddr {
    let b = c.getsockname(h).unwrap();
    addr::from_sockaddr(&b, libc::AF_INET).unwrap().unwrap()
}

fn listener(c: &mut Core, h: Handle) -> &Listener {
    let (_, s) = c.sock(h).unwrap();
    match &tcp_of(&mut s.kind).st {
        St::Listen(l) => l,
        _ => panic!("not listening"),
    }
}

fn code(r: io::Result<()>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

#[test]
fn bind_is_unique_per_protocol_and_address() {
    let mut c = core();
    let (a, b) = (tcp4(&mut c), tcp4(&mut c));
    c.bind(a, &sa("127.0.0.1:5000")).unwrap();
    assert_eq!(code(c.bind(b, &sa("127.0.0.1:5000"))), libc::EADDRINUSE);
    // The wildcard overlaps every address; another address of ours does not.
    assert_eq!(code(c.bind(b, &sa("0.0.0.0:5000"))), libc::EADDRINUSE);
    c.bind(b, &sa("10.0.0.1:5000")).unwrap();
    // UDP has its own ports.
    let u = c.socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    c.bind(u, &sa("127.0.0.1:5000")).unwrap();
    // Not an address of the stack; bound twice.
    let d = tcp4(&mut c);
    assert_eq!(code(c.bind(d, &sa("10.0.0.2:5001"))), libc::EADDRNOTAVAIL);
    assert_eq!(code(c.bind(a, &sa("127.0.0.1:5002"))), libc::EINVAL);
    // SO_REUSEADDR on both and neither listening: shared.
    let (e, f) = (tcp4(&mut c), tcp4(&mut c));
    for h in [e, f] {
        c.setsockopt(h, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32.to_ne_bytes())
            .unwrap();
    }
    c.bind(e, &sa("127.0.0.1:6000")).unwrap();
    c.bind(f, &sa("127.0.0.1:6000")).unwrap();
    listen(&mut c, e, 1).unwrap();
    let g = tcp4(&mut c);
    c.setsockopt(g, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32.to_ne_bytes())
        .unwrap();
    assert_eq!(
        code(c.bind(g, &sa("127.0.0.1:6000"))),
        libc::EADDRINUSE,
        "one listens"
    );
}

#[test]
fn ephemeral_ports_are_in_range_distinct_and_skip_taken_ones() {
    let mut c = core();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let h = tcp4(&mut c);
        c.bind(h, &sa("127.0.0.1:0")).unwrap();
        let p = local(&mut c, h).port();
        assert!((32768..=60999).contains(&p), "{p}");
        assert!(seen.insert(p), "{p} twice");
    }
    // The next one the counter gives is taken: skipped.
    let taken = tcp4(&mut c);
    c.bind(taken, &sa("0.0.0.0:0")).unwrap();
    let p = local(&mut c, taken).port();
    let h = tcp4(&mut c);
    let id = c.handles[&h];
    c.next_port[0] = p;
    let q = c.ephemeral(id, false, None).unwrap();
    assert_ne!(q, p);
    // The counter wraps at the end of the range.
    c.next_port[0] = 60999;
    let h2 = tcp4(&mut c);
    let id2 = c.handles[&h2];
    assert_eq!(c.ephemeral(id2, false, None).unwrap(), 60999);
    assert_eq!(c.next_port[0], 32768);
}

#[test]
fn listen_backlog_bounds_the_listening_sockets() {
    let mut c = core();
    let h = tcp4(&mut c);
    c.bind(h, &sa("127.0.0.1:7000")).unwrap();
    listen(&mut c, h, 3).unwrap();
    let l = listener(&mut c, h);
    assert_eq!(l.backlog, 3);
    // An address of lo: listening sockets on lo only, as many as the backlog.
    assert_eq!(l.socks.len(), 3);
    assert!(l.socks.iter().all(|(i, _)| *i == LO));
    // listen again changes the backlog only; 0 is 1, the maximum is MAX_BACKLOG.
    listen(&mut c, h, 100_000).unwrap();
    assert_eq!(listener(&mut c, h).backlog, MAX_BACKLOG);
    let any = tcp4(&mut c);
    listen(&mut c, any, 0).unwrap();
    let l = listener(&mut c, any);
    assert_eq!(l.backlog, 1);
    // Unbound: an ephemeral port on every interface, one listening socket each.
    assert_eq!(l.socks.len(), 2);
    assert!((32768..=60999).contains(&l.ep.port));
    // A large backlog: at most LISTEN_PER_IFACE per interface.
    let big = tcp4(&mut c);
    c.bind(big, &sa("10.0.0.1:7001")).unwrap();
    listen(&mut c, big, 64).unwrap();
    let l = listener(&mut c, big);
    assert_eq!(l.socks.len(), 2 * LISTEN_PER_IFACE, "vde0 and lo");
    // Not on a connected or UDP socket.
    let u = c.socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    assert!(listen(&mut c, u, 1).is_err());
}

fn room(c: &Core) -> Vec<(Option<IpAddr>, u16, usize)> {
    match &c.net.ifaces[1].dev {
        Dev::Vde(d) => d.syn_room.clone(),
        Dev::Lo(_) => unreachable!(),
    }
}

#[test]
fn syn_room_is_the_backlog_left_and_the_free_listening_sockets() {
    let mut c = core();
    let h = tcp4(&mut c);
    c.bind(h, &sa("0.0.0.0:8000")).unwrap();
    listen(&mut c, h, 2).unwrap();
    set_syn_gates(&mut c.net, &c.socks);
    assert_eq!(room(&c), [(None, 8000, 2)]);
    // A listener on lo's address has no gate on vde0; one on vde0's address has.
    let lo = tcp4(&mut c);
    c.bind(lo, &sa("127.0.0.1:8001")).unwrap();
    listen(&mut c, lo, 4).unwrap();
    let v = tcp4(&mut c);
    c.bind(v, &sa("10.0.0.1:8002")).unwrap();
    listen(&mut c, v, 40).unwrap();
    set_syn_gates(&mut c.net, &c.socks);
    let mut r = room(&c);
    r.sort_by_key(|e| e.1);
    // 40 allowed by the backlog, but vde0 has LISTEN_PER_IFACE listening sockets.
    let ten = Some("10.0.0.1".parse().unwrap());
    assert_eq!(r, [(None, 8000, 2), (ten, 8002, LISTEN_PER_IFACE)]);
    // Connections waiting to be accepted take room from the accept queue.
    let (_, s) = c.sock(h).unwrap();
    let St::Listen(l) = &mut tcp_of(&mut s.kind).st else {
        unreachable!()
    };
    let (iface, hh) = l.socks[0];
    let peer: SocketAddr = "10.0.0.9:1".parse().unwrap();
    l.ready.push_back(Ready {
        iface,
        h: hh,
        peer,
        local: peer,
    });
    set_syn_gates(&mut c.net, &c.socks);
    assert!(room(&c).contains(&(None, 8000, 1)));
}
