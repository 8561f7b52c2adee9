//! Scale-out: vdestack stacks on two "machines" joined by VDE's own distributed networks.
//!
//! Two named network namespaces stand in for two machines, joined by a veth pair with 10.77.0.1
//! and 10.77.0.2 on its ends ([`Machines`]). A thread that has joined machine A creates a
//! vdestack stack whose `vde0` is a `udp://` (or `vxvde://`) VNL reaching machine B over the
//! veth; a thread in B does the symmetric. The hosts open their VDE sockets in the namespace of
//! the thread that created the stack, then enter private namespaces of their own; the stacks
//! are configured with the ioth netlink API (192.168.77.1/24 and .2/24 on `vde0`, addresses that
//! exist only inside the stacks) and TCP and UDP flow between them across the "machines".
//!
//! `vxvde://` needs a multicast route (or `/if=<dev>` in the VNL) in the machine: both are
//! tested.
//!
//! Each test also proves the path: the hosts' namespaces differ from A, B, the test's own and
//! each other; the stacks have no interface but `lo` and `vde0`; the VDE sockets are in A and B,
//! owned by the hosts (`ss -p` inside the machines); and the veth's byte counters grew by at
//! least the data echoed.
//!
//! Needs root (named namespaces, a veth pair, /dev/net/tun) and libvdeplug2 + iproute2; without
//! root each test is reported as ignored. Every address and interface exists only in
//! namespaces the test creates; Drop guards delete them, on failure too.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use ioth::Stack;
use ioth_tests::netns::{Machines, NetNs};
use ioth_tests::stdsock::{echo_server, listen, pid, udp, IO_TIMEOUT};
use ioth_tests::{proc, vde};

/// The stacks' addresses on `vde0` (inside the stacks only).
const STACK_A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const STACK_B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
/// Bytes echoed in bulk over TCP, in chunks.
const BULK: usize = 512 * 1024;
const CHUNK: usize = 16 * 1024;

/// A vdestack stack on `vnl`, created by a thread that has joined `machine`.
fn stack_on(machine: &NetNs, vnl: &str) -> Stack {
    machine.run_in(|| {
        Stack::new("vdestack", &[vnl])
            .unwrap_or_else(|e| panic!("newstack vdestack {vnl} in {}: {e}", machine.name()))
    })
}

/// `vde0` gets `addr`/24 and goes up, through the ioth netlink API.
fn configure(s: &Stack, addr: Ipv4Addr) {
    let idx = s.if_nametoindex("vde0").expect("if_nametoindex vde0");
    s.ipaddr_add(IpAddr::V4(addr), 24, idx)
        .unwrap_or_else(|e| panic!("ipaddr_add {addr}/24: {e}"));
    s.link_set_up(idx, true).expect("link_set_up vde0");
    let names: Vec<String> = s
        .interfaces()
        .expect("interfaces")
        .into_iter()
        .map(|i| i.name)
        .collect();
    // The stack sees only its own interfaces: no veth, nothing of the machine.
    assert_eq!(names, ["lo", "vde0"], "interfaces of stack {}", pid(s));
    let addrs = s.addresses().expect("addresses");
    assert!(
        addrs
            .iter()
            .any(|a| a.addr == IpAddr::V4(addr) && a.index == idx),
        "{addr} not on vde0: {addrs:?}"
    );
}

/// The hosts live in private namespaces: distinct from both machines, from this process's and
/// from each other's.
fn check_private_namespaces(m: &Machines, a: &Stack, b: &Stack) {
    let ns = |s: &Stack| vde::netns_inode(pid(s)).expect("host netns");
    let (ns_a, ns_b) = (ns(a), ns(b));
    let own = vde::netns_inode(std::process::id()).expect("own netns");
    let (ma, mb) = (m.a.inode(), m.b.inode());
    assert_ne!(ma, own, "machine A is the test's own namespace");
    assert_ne!(mb, own, "machine B is the test's own namespace");
    assert_ne!(ma, mb);
    for (name, host) in [("A", ns_a), ("B", ns_b)] {
        assert_ne!(host, ma, "stack {name}'s host is in machine A's namespace");
        assert_ne!(host, mb, "stack {name}'s host is in machine B's namespace");
        assert_ne!(host, own, "stack {name}'s host is in the test's namespace");
    }
    assert_ne!(ns_a, ns_b, "the two hosts share a namespace");
}

/// The UDP socket bound to `port` in `machine` belongs to host `host` (`ss -uanp` inside the
/// machine): the VDE connection was opened where the creating thread was.
fn check_vde_socket(machine: &NetNs, port: u16, host: u32) {
    let out = machine
        .exec(&["ss", "-H", "-uanp"])
        .unwrap_or_else(|e| panic!("{e}"));
    let mine = format!("pid={host},");
    let found = out.lines().any(|l| {
        l.contains(&mine)
            && l.split_whitespace()
                .nth(3)
                .is_some_and(|local| local.ends_with(&format!(":{port}")))
    });
    assert!(
        found,
        "no UDP socket on port {port} of host {host} in {}:\n{out}",
        machine.name()
    );
}

/// Byte counters of the veth end in `machine`: (rx, tx).
fn veth_bytes(machine: &NetNs) -> (u64, u64) {
    (
        machine.if_stat(Machines::VETH, "rx_bytes"),
        machine.if_stat(Machines::VETH, "tx_bytes"),
    )
}

/// connect(2) from stack `s`, a few attempts of 10 s each.
fn connect(s: &Stack, to: SocketAddr) -> TcpStream {
    let mut last = None;
    for _ in 0..3 {
        let sock: socket2::Socket = s
            .msocket(libc::AF_INET, libc::SOCK_STREAM, 0)
            .expect("msocket")
            .into();
        match sock.connect_timeout(&to.into(), Duration::from_secs(10)) {
            Ok(()) => {
                let t: TcpStream = sock.into();
                t.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                t.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                return t;
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("connect {to}: {}", last.expect("an attempt"));
}

/// TCP echo from stack `client` to a server on stack `server` at `to`: a few lines, then
/// [`BULK`] bytes chunk by chunk, each checked.
fn tcp_echo(server: &Stack, client: &Stack, to: SocketAddr) {
    let srv = echo_server(listen(server, to, 4));
    let mut c = connect(client, to);
    for i in 0..20 {
        let msg = format!("line {i} from the other machine");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).expect("echo");
        assert_eq!(back, msg.as_bytes());
    }
    let mut chunk = vec![0u8; CHUNK];
    let mut back = vec![0u8; CHUNK];
    for k in 0..BULK / CHUNK {
        for (j, b) in chunk.iter_mut().enumerate() {
            *b = (j.wrapping_mul(31) ^ k.wrapping_mul(7)) as u8;
        }
        c.write_all(&chunk).expect("bulk write");
        c.read_exact(&mut back).expect("bulk echo");
        assert!(chunk == back, "chunk {k} came back altered");
    }
    drop(c);
    let echoed = srv.join().expect("echo server");
    assert!(echoed >= BULK, "server echoed {echoed} bytes");
}

/// UDP request/response: `client` sends to `server`, which answers; a few bounded retries in
/// case a datagram is lost.
fn udp_request_response(server: &Stack, client: &Stack) {
    let srv_addr = SocketAddr::new(IpAddr::V4(STACK_A), 7001);
    let cli_addr = SocketAddr::new(IpAddr::V4(STACK_B), 7002);
    let s = udp(server, srv_addr);
    let c = udp(client, cli_addr);
    let mut buf = [0u8; 256];
    for i in 0..5 {
        let req = format!("request {i}");
        c.send_to(req.as_bytes(), srv_addr).expect("send request");
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(from, cli_addr);
        assert_eq!(&buf[..n], req.as_bytes());
        s.send_to(format!("response {i}").as_bytes(), from)
            .expect("send response");
        let Ok((n, from)) = c.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(from, srv_addr);
        assert_eq!(&buf[..n], format!("response {i}").as_bytes());
        return;
    }
    panic!("no UDP request/response between the stacks in 5 attempts");
}

/// The common part: stacks on `vnl_a` (created in A) and `vnl_b` (in B), whose VDE sockets are
/// UDP port `port_a` in A and `port_b` in B; the checks above, TCP and UDP across; then
/// everything is taken down and checked gone.
fn scale_out(m: Machines, vnl_a: &str, vnl_b: &str, port_a: u16, port_b: u16) {
    let a = stack_on(&m.a, vnl_a);
    let b = stack_on(&m.b, vnl_b);
    check_private_namespaces(&m, &a, &b);
    check_vde_socket(&m.a, port_a, pid(&a));
    check_vde_socket(&m.b, port_b, pid(&b));
    configure(&a, STACK_A);
    configure(&b, STACK_B);

    let (rx0, tx0) = veth_bytes(&m.a);
    tcp_echo(&a, &b, SocketAddr::new(IpAddr::V4(STACK_A), 7000));
    let (rx1, tx1) = veth_bytes(&m.a);
    // The data went B -> A (received on A's veth) and back (sent by it), VDE-encapsulated.
    assert!(
        rx1 - rx0 >= BULK as u64 && tx1 - tx0 >= BULK as u64,
        "veth of machine A: rx +{} tx +{} bytes for {BULK} bytes echoed",
        rx1 - rx0,
        tx1 - tx0
    );
    println!(
        "{vnl_a} <-> {vnl_b}: {BULK} bytes echoed, veth of A rx +{} tx +{} bytes",
        rx1 - rx0,
        tx1 - tx0
    );
    udp_request_response(&a, &b);

    // Taking down: the hosts end, and nothing is left in their namespaces or the machines'.
    let hosts = [pid(&a), pid(&b)];
    let host_ns: Vec<u64> = hosts
        .iter()
        .map(|&p| vde::netns_inode(p).expect("host netns"))
        .collect();
    drop(a);
    drop(b);
    for (host, ns) in hosts.iter().zip(host_ns) {
        // Reaped in the background once the kernel has torn down its namespace.
        assert!(
            proc::wait_until(Duration::from_secs(10), || proc::gone(*host)),
            "host {host} still exists"
        );
        assert!(
            vde::processes_in_netns(ns).is_empty(),
            "a process is left in host {host}'s namespace"
        );
    }
    for ns in [&m.a, &m.b] {
        let left = vde::processes_in_netns(ns.inode());
        assert!(left.is_empty(), "processes left in {}: {left:?}", ns.name());
    }
    let paths = [m.a.path(), m.b.path()];
    drop(m);
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: network namespaces, veth, /dev/net/tun"
)]
fn udp_vnl_joins_stacks_on_two_machines() {
    let m = Machines::new("so");
    let (ha, hb) = (Machines::ADDR_A, Machines::ADDR_B);
    let vnl_a = format!("udp://{ha}:5000->{hb}:5001");
    let vnl_b = format!("udp://5001->{ha}:5000");
    scale_out(m, &vnl_a, &vnl_b, 5000, 5001);
}

/// `vxvde://` needs to know where multicast leaves the machine: a route for 224.0.0.0/4 (or a
/// default route), or the VNL's `/if=<dev>` option. With neither, opening the VNL fails with
/// `ENODEV` (libvdeplug's errno, passed on by newstack).
fn vxvde(tag: &str, route: bool, vnl: &str) {
    let m = Machines::new(tag);
    if route {
        for ns in [&m.a, &m.b] {
            ns.ip(&["route", "add", "224.0.0.0/4", "dev", Machines::VETH]);
        }
    }
    scale_out(m, vnl, vnl, 14790, 14790);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: network namespaces, veth, /dev/net/tun"
)]
fn vxvde_vnl_joins_stacks_on_two_machines() {
    vxvde("sox", true, "vxvde://239.77.0.1/port=14790/vni=77");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: network namespaces, veth, /dev/net/tun"
)]
fn vxvde_vnl_with_if_option_needs_no_route() {
    // Without route nor `if=`, the VNL cannot be opened: ENODEV, no stack, nothing left.
    let m = Machines::new("son");
    let e =
        m.a.run_in(|| Stack::new("vdestack", &["vxvde://239.77.0.2/port=14790/vni=78"]))
            .expect_err("vxvde:// without a multicast route");
    assert_eq!(e.errno(), libc::ENODEV, "{e}");
    drop(m);
    let vnl = format!("vxvde://239.77.0.2/port=14790/vni=78/if={}", Machines::VETH);
    vxvde("soi", false, &vnl);
}
