//! End-to-end tests of the vdestack plug-in: real hosts, each in its own network namespace, with
//! tap interfaces bridged to VDE switches that each test starts in its own temp dir.
//!
//! Needs root (a network namespace and /dev/net/tun) and libvdeplug2 + vdeplug
//! (tests/scripts/deps.sh). Addresses (10.x, fd00::) exist only inside the stacks' namespaces.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use ioth::Stack;
use ioth_tests::dad::retry_unavailable;
use ioth_tests::pattern::{Pattern, CHUNK, PROFILE};
use ioth_tests::stacks::{self, addr, domain};
use ioth_tests::stdsock::{self, accept_bounded, echo_server, pid, udp, IO_TIMEOUT};
use ioth_tests::tentative;
use ioth_tests::vde::{self, Switch, TempDir};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

fn vdestack<S: AsRef<str>>(vnls: &[S]) -> Stack {
    Stack::new("vdestack", vnls).unwrap_or_else(|e| panic!("newstack vdestack: {e}"))
}

fn listen(stack: &Stack, at: SocketAddr) -> TcpListener {
    stdsock::listen(stack, at, 16)
}

/// A connection from `stack` to `to` within `timeout`; a connect that fails with
/// `EADDRNOTAVAIL` (no usable source address yet: duplicate address detection) is retried on a
/// fresh socket.
fn try_connect(stack: &Stack, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = retry_unavailable(|| {
        let s: socket2::Socket = stack
            .msocket(domain(&to), libc::SOCK_STREAM, 0)
            .expect("msocket")
            .into();
        s.connect_timeout(&to.into(), timeout).map(|()| s)
    })?;
    let t: TcpStream = s.into();
    t.set_read_timeout(Some(IO_TIMEOUT))?;
    t.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(t)
}

fn connect(stack: &Stack, to: SocketAddr) -> TcpStream {
    try_connect(stack, to, Duration::from_secs(10)).unwrap_or_else(|e| panic!("connect {to}: {e}"))
}

fn echo_round_trips(c: &mut TcpStream) {
    for i in 0..20 {
        let msg = format!("hello {i} from the other stack");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}

/// Two vdestack stacks on one switch: `a` is 10.0.0.1 / fd00::1, `b` 10.0.0.2 / fd00::2, on vde0.
/// Fields drop in order: the stacks, then the switch.
struct Pair {
    a: Stack,
    b: Stack,
    _sw: Switch,
}

fn pair() -> Pair {
    let sw = Switch::start();
    let a = vdestack(&[sw.vnl()]);
    let b = vdestack(&[sw.vnl()]);
    for (s, n) in [(&a, 1), (&b, 2)] {
        vde::ip(
            pid(s),
            &["addr", "add", &format!("10.0.0.{n}/24"), "dev", "vde0"],
        );
        vde::configure(pid(s), "vde0", &format!("fd00::{n}/64"));
    }
    Pair { a, b, _sw: sw }
}

#[test]
fn tcp_echo_ipv4() {
    let p = pair();
    let server = echo_server(listen(&p.a, addr("10.0.0.1:5000")));
    let mut c = connect(&p.b, addr("10.0.0.1:5000"));
    assert_eq!(c.local_addr().unwrap().ip(), addr("10.0.0.2:0").ip());
    echo_round_trips(&mut c);
    drop(c);
    assert!(server.join().unwrap() > 0);
}

#[test]
fn tcp_echo_ipv6() {
    let p = pair();
    let server = echo_server(listen(&p.a, addr("[fd00::1]:5000")));
    let mut c = connect(&p.b, addr("[fd00::1]:5000"));
    assert_eq!(c.peer_addr().unwrap(), addr("[fd00::1]:5000"));
    echo_round_trips(&mut c);
    drop(c);
    assert!(server.join().unwrap() > 0);
}

/// Two vdestack stacks on `sw` configured as programs do, with the ioth netlink calls and
/// duplicate address detection: `a` 10.0.0.1 / fd00::1, `b` 10.0.0.2 / fd00::2, on vde0.
fn configured_pair(sw: &Switch) -> (Stack, Stack) {
    (
        stacks::configured("vdestack", sw, "10.0.0.1", "fd00::1"),
        stacks::configured("vdestack", sw, "10.0.0.2", "fd00::2"),
    )
}

/// Right after configuring (fd00::x still in DAD), a TCP connect from one stack to the other
/// either works or fails at once with EADDRNOTAVAIL until it does, and so do UDP requests from
/// a connected and an unbound socket; nothing leaves from ::1 (lo is up) or hangs. Meanwhile ::1
/// and 127.0.0.1 inside the stack work at once.
#[test]
fn ipv6_right_after_configuration() {
    let sw = Switch::start();
    let (a, b) = configured_pair(&sw);
    for lo in ["[::1]:5020", "127.0.0.1:5020"] {
        let server = echo_server(listen(&b, addr(lo)));
        let mut c = connect(&b, addr(lo));
        assert_eq!(c.local_addr().unwrap().ip(), addr(lo).ip());
        echo_round_trips(&mut c);
        drop(c);
        server.join().unwrap();
    }
    let (tcp, udp) = tentative::tcp_and_udp_at_once(&a, stacks::ip("fd00::1"), &b, 5021);
    println!("vdestack: the first connection came from {tcp}, the first requests from {udp:?}");
}

#[test]
fn udp_request_response() {
    let p = pair();
    let server = udp(&p.a, addr("10.0.0.1:7000"));
    let client = udp(&p.b, addr("10.0.0.2:0"));
    for i in 0..10 {
        let req = format!("request {i}");
        client
            .send_to(req.as_bytes(), addr("10.0.0.1:7000"))
            .unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = server.recv_from(&mut buf).expect("request lost");
        assert_eq!(&buf[..n], req.as_bytes());
        assert_eq!(from.ip(), "10.0.0.2".parse::<IpAddr>().unwrap());
        let resp = format!("response {i}");
        server.send_to(resp.as_bytes(), from).unwrap();
        let (n, from) = client.recv_from(&mut buf).expect("response lost");
        assert_eq!(&buf[..n], resp.as_bytes());
        assert_eq!(from, addr("10.0.0.1:7000"));
    }
}

/// Sends `chunks` × 64 KiB from `from` to `to` (10.0.0.x) and checks the checksum; returns the
/// rate in MB/s.
fn transfer(from: &Stack, to: &Stack, to_addr: &str, chunks: usize) -> f64 {
    let l = listen(to, addr(to_addr));
    let sink = std::thread::spawn(move || {
        let (mut c, _) = accept_bounded(&l);
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut s = Pattern::new();
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..chunks {
            c.read_exact(&mut buf).expect("sink read");
            s.add(&buf);
        }
        let mut rest = [0u8; 1];
        assert_eq!(c.read(&mut rest).unwrap(), 0, "more bytes than sent");
        s.checksum()
    });
    let mut c = connect(from, addr(to_addr));
    let mut s = Pattern::new();
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    for _ in 0..chunks {
        s.fill(&mut buf);
        s.add(&buf);
        c.write_all(&buf).expect("source write");
    }
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let got = sink.join().expect("sink");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, s.checksum(), "checksum mismatch");
    (chunks * CHUNK) as f64 / 1e6 / secs
}

#[test]
fn tcp_100mb_with_checksum() {
    let p = pair();
    let chunks = 100 * 1024 * 1024 / CHUNK;
    let mbps = transfer(&p.b, &p.a, "10.0.0.1:5001", chunks);
    println!(
        "vdestack: 100 MiB over a vde_plug switch at MTU 1500: {mbps:.1} MB/s ({:.0} Mbit/s; \
         host and plug-in of this build profile, {})",
        mbps * 8.0,
        PROFILE
    );
}

#[test]
fn jumbo_frames_mtu_9000() {
    let p = pair();
    for s in [&p.a, &p.b] {
        vde::ip(pid(s), &["link", "set", "vde0", "mtu", "9000"]);
        assert!(vde::ip(pid(s), &["-o", "link", "show", "vde0"]).contains("mtu 9000"));
    }
    // One 8900-byte UDP datagram, not fragmented: a single 8942-byte frame crosses the switch.
    let server = udp(&p.a, addr("10.0.0.1:7001"));
    let client = udp(&p.b, addr("10.0.0.2:0"));
    let pmtu_do: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: setsockopt on an open UDP socket with a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&pmtu_do as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    let big: Vec<u8> = (0..8900u32).map(|i| (i % 251) as u8).collect();
    let mut got = None;
    for _ in 0..5 {
        client
            .send_to(&big, addr("10.0.0.1:7001"))
            .expect("send 8900 bytes, DF");
        let mut buf = vec![0u8; 9000];
        if let Ok((n, _)) = server.recv_from(&mut buf) {
            got = Some(buf[..n].to_vec());
            break;
        }
    }
    assert_eq!(
        got.as_deref(),
        Some(&big[..]),
        "the jumbo datagram did not arrive whole"
    );
    // TCP with large writes, and the segment size shows the 9000-byte MTU.
    let l = listen(&p.a, addr("10.0.0.1:5002"));
    let c = connect(&p.b, addr("10.0.0.1:5002"));
    let (_s, _) = accept_bounded(&l);
    let mss = socket2::SockRef::from(&c).tcp_mss().unwrap();
    assert!(mss > 8000, "MSS {mss} does not reflect MTU 9000");
    drop((c, _s, l));
    let mbps = transfer(&p.b, &p.a, "10.0.0.1:5003", 32 * 1024 * 1024 / CHUNK);
    println!(
        "vdestack: 32 MiB at MTU 9000: {mbps:.1} MB/s ({:.0} Mbit/s; {})",
        mbps * 8.0,
        PROFILE
    );
}

#[test]
fn poll_and_epoll_readiness() {
    let p = pair();
    let l = listen(&p.a, addr("10.0.0.1:5004"));
    // poll: a listener is readable exactly when a connection is pending.
    let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
    let mut c = connect(&p.b, addr("10.0.0.1:5004"));
    let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::from(5000u16)).unwrap(), 1);
    let (mut s, _) = l.accept().unwrap();
    // The connected client is writable at once.
    let mut fds = [PollFd::new(c.as_fd(), PollFlags::POLLOUT)];
    assert_eq!(poll(&mut fds, PollTimeout::from(5000u16)).unwrap(), 1);

    // epoll on the accepted socket: nothing, then readable once the peer writes.
    // SAFETY: epoll_create1 takes a flag only.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    // SAFETY: ep was just created and has no other owner.
    let ep = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ep) };
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 42,
    };
    // SAFETY: ep is an epoll fd, s an open socket, ev a valid event.
    let r = unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    assert_eq!(r, 0);
    let wait = |ms: i32| -> Vec<u64> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: evs is writable for 4 events; ep is an epoll fd.
        let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), 4, ms) };
        assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
        evs[..n as usize].iter().map(|e| e.u64).collect()
    };
    assert!(wait(0).is_empty());
    c.write_all(b"ping").unwrap();
    assert_eq!(wait(5000), vec![42]);
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    // Drained: not readable any more.
    assert!(wait(0).is_empty());
    // UDP: readable when a datagram is queued.
    let u = udp(&p.a, addr("10.0.0.1:7002"));
    let mut fds = [PollFd::new(u.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
    udp(&p.b, addr("10.0.0.2:0"))
        .send_to(b"dgram", addr("10.0.0.1:7002"))
        .unwrap();
    let mut fds = [PollFd::new(u.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::from(5000u16)).unwrap(), 1);
    drop(ep);
}

#[test]
fn cannot_reach_the_machines_loopback() {
    // A listener on the machine's own 127.0.0.1, in the test's namespace.
    let outside = TcpListener::bind("127.0.0.1:0").unwrap();
    outside.set_nonblocking(true).unwrap();
    let port = outside.local_addr().unwrap().port();
    let sw = Switch::start();
    let with_vnl = vdestack(&[sw.vnl()]);
    let loopback_only = vdestack(&[] as &[&str]);
    for s in [&with_vnl, &loopback_only] {
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        let e = try_connect(s, to, Duration::from_secs(3))
            .expect_err("a vdestack stack reached the machine's loopback");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        assert!(
            outside.accept().is_err(),
            "the machine's listener got a connection"
        );
    }
    // The stack's namespace is not the test's.
    assert_ne!(
        vde::netns_inode(pid(&with_vnl)),
        vde::netns_inode(std::process::id())
    );
}

#[test]
fn same_address_on_two_switches_is_isolated() {
    let (sw1, sw2) = (Switch::start(), Switch::start());
    // Two servers with the same address, one per switch, and one client per switch.
    let srv1 = vdestack(&[sw1.vnl()]);
    let srv2 = vdestack(&[sw2.vnl()]);
    let cli1 = vdestack(&[sw1.vnl()]);
    let cli2 = vdestack(&[sw2.vnl()]);
    for (s, a) in [
        (&srv1, "10.9.0.1/24"),
        (&srv2, "10.9.0.1/24"),
        (&cli1, "10.9.0.2/24"),
        (&cli2, "10.9.0.2/24"),
    ] {
        vde::configure(pid(s), "vde0", a);
    }
    let to = addr("10.9.0.1:6000");
    let greeters: Vec<_> = [(&srv1, b"switch1"), (&srv2, b"switch2")]
        .into_iter()
        .map(|(s, hello)| {
            let l = listen(s, to);
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let (mut c, _) = accept_bounded(&l);
                    c.write_all(hello).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..3 {
        for (cli, expect) in [(&cli1, b"switch1"), (&cli2, b"switch2")] {
            let mut c = connect(cli, to);
            let mut got = [0u8; 7];
            c.read_exact(&mut got).unwrap();
            assert_eq!(
                &got, expect,
                "a client reached the server on the other switch"
            );
        }
    }
    for g in greeters {
        g.join().unwrap();
    }
}

#[test]
fn two_interfaces_on_one_stack() {
    let (sw1, sw2) = (Switch::start(), Switch::start());
    let multi = vdestack(&[sw1.vnl(), sw2.vnl()]);
    let links = vde::links(pid(&multi));
    assert!(
        links.contains(&"vde0".into()) && links.contains(&"vde1".into()),
        "{links:?}"
    );
    let peer1 = vdestack(&[sw1.vnl()]);
    let peer2 = vdestack(&[sw2.vnl()]);
    vde::configure(pid(&multi), "vde0", "10.1.0.1/24");
    vde::configure(pid(&multi), "vde1", "10.2.0.1/24");
    vde::configure(pid(&peer1), "vde0", "10.1.0.2/24");
    vde::configure(pid(&peer2), "vde0", "10.2.0.2/24");
    for (peer, to) in [(&peer1, "10.1.0.1:5000"), (&peer2, "10.2.0.1:5000")] {
        let l = listen(&multi, addr(to));
        let server = echo_server(l);
        let mut c = connect(peer, addr(to));
        echo_round_trips(&mut c);
        drop(c);
        server.join().unwrap();
    }
    // The peer on switch 1 cannot reach the address on switch 2 through the multi-homed stack
    // (no routing was configured).
    assert!(try_connect(&peer1, addr("10.2.0.2:5000"), Duration::from_millis(500)).is_err());
}

#[test]
fn named_interfaces() {
    let (sw1, sw2) = (Switch::start(), Switch::start());
    let s = vdestack(&[format!("eth1:{}", sw1.vnl()), sw2.vnl()]);
    let links = vde::links(pid(&s));
    assert!(links.contains(&"eth1".into()), "{links:?}");
    assert!(links.contains(&"vde1".into()), "{links:?}");
    assert!(!links.contains(&"vde0".into()), "{links:?}");
    // It works: a peer on the first switch talks to eth1.
    let peer = vdestack(&[sw1.vnl()]);
    vde::configure(pid(&s), "eth1", "10.3.0.1/24");
    vde::configure(pid(&peer), "vde0", "10.3.0.2/24");
    let server = echo_server(listen(&s, addr("10.3.0.1:5000")));
    let mut c = connect(&peer, addr("10.3.0.1:5000"));
    echo_round_trips(&mut c);
    drop(c);
    server.join().unwrap();
}

#[test]
fn interfaces_start_down_without_address() {
    let sw = Switch::start();
    let s = vdestack(&[sw.vnl()]);
    let line = vde::ip(pid(&s), &["-o", "link", "show", "vde0"]);
    assert!(line.contains("state DOWN"), "{line}");
    assert!(vde::ip(pid(&s), &["-o", "addr", "show", "vde0"])
        .trim()
        .is_empty());
    let lo = vde::ip(pid(&s), &["-o", "link", "show", "lo"]);
    assert!(lo.contains("<LOOPBACK,UP"), "{lo}");
}

#[test]
fn loopback_only_stack() {
    let s = vdestack(&[] as &[&str]);
    assert_eq!(vde::links(pid(&s)), vec!["lo".to_owned()]);
    let server = echo_server(listen(&s, addr("127.0.0.1:5000")));
    let mut c = connect(&s, addr("127.0.0.1:5000"));
    echo_round_trips(&mut c);
    drop(c);
    server.join().unwrap();
    let server = echo_server(listen(&s, addr("[::1]:5000")));
    let mut c = connect(&s, addr("[::1]:5000"));
    echo_round_trips(&mut c);
    drop(c);
    server.join().unwrap();
}

#[test]
fn bad_vnl_is_einval() {
    let sw = Switch::start();
    for bad in [
        format!("averyveryverylongname:{}", sw.vnl()),
        format!("bad name:{}", sw.vnl()),
        format!(":{}", sw.vnl()),
        String::new(),
    ] {
        let e = Stack::new("vdestack", &[bad.as_str()]).expect_err(&bad);
        assert_eq!(e.errno(), libc::EINVAL, "{bad:?}: {e}");
    }
    // The same interface name twice.
    let e = Stack::new("vdestack", &[format!("vde1:{}", sw.vnl()), sw.vnl()]).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert!(e.to_string().contains("vde1"), "{e}");
    let e = Stack::new("vdestack", &[format!("x:{}", sw.vnl())])
        .map(|_| ())
        .err();
    assert!(e.is_none(), "a valid name was refused: {e:?}");
}

#[test]
fn missing_switch_fails() {
    let dir = TempDir::new("noswitch");
    let vnl = format!("vde://{}/sw", dir.path().display());
    let e = Stack::new("vdestack", &[vnl.as_str()]).expect_err("a stack on no switch");
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
    assert!(e.to_string().contains("cannot open VNL"), "{e}");
    // A good VNL after a bad one: the stack still fails as a whole.
    let sw = Switch::start();
    let e = Stack::new("vdestack", &[sw.vnl(), vnl]).expect_err("one bad VNL of two");
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
}

#[test]
fn switch_and_ptp_vnls() {
    // `switch://` runs the switch inside the first stack's host; the second joins it.
    let dir = TempDir::new("inswitch");
    let sw = dir.path().join("sw");
    let a = vdestack(&[format!("switch://{}", sw.display())]);
    let b = vdestack(&[format!("vde://{}", sw.display())]);
    // `ptp://`: a point-to-point link between two stacks, no switch.
    let p = dir.path().join("ptp");
    let c = vdestack(&[format!("ptp://{}", p.display())]);
    let d = vdestack(&[format!("ptp://{}", p.display())]);
    for (s, ip) in [
        (&a, "10.5.0.1/24"),
        (&b, "10.5.0.2/24"),
        (&c, "10.6.0.1/24"),
        (&d, "10.6.0.2/24"),
    ] {
        vde::configure(pid(s), "vde0", ip);
    }
    for (srv, cli, to) in [(&a, &b, "10.5.0.1:5000"), (&c, &d, "10.6.0.1:5000")] {
        let server = echo_server(listen(srv, addr(to)));
        let mut conn = connect(cli, addr(to));
        echo_round_trips(&mut conn);
        drop(conn);
        server.join().unwrap();
    }
}

#[test]
fn delstack_and_drop_leave_nothing() {
    let sw = Switch::start();
    let (sw_pid, sw_dir) = (sw.pid(), sw.dir().to_path_buf());
    let deleted = vdestack(&[sw.vnl(), format!("eth7:{}", sw.vnl())]);
    let dropped = vdestack(&[sw.vnl()]);
    let mut gone = Vec::new();
    for s in [&deleted, &dropped] {
        vde::configure(pid(s), "vde0", "10.7.0.1/24");
        let sock = s.msocket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        drop(sock);
        gone.push((pid(s), vde::netns_inode(pid(s)).expect("host netns")));
    }
    deleted
        .delete()
        .map_err(ioth::Error::from)
        .expect("delstack");
    drop(dropped);
    for (pid, ns) in gone {
        // delstack returns once the host has answered; the host is reaped in the background
        // once the kernel has torn down its taps and namespace.
        assert!(
            ioth_tests::proc::wait_until(Duration::from_secs(10), || !vde::pid_exists(pid)),
            "host {pid} still exists (not reaped?)"
        );
        // The namespace, and the tap devices in it, died with the host.
        assert!(
            vde::processes_in_netns(ns).is_empty(),
            "a process is in netns {ns}"
        );
    }
    drop(sw);
    assert!(!vde::pid_exists(sw_pid), "switch {sw_pid} left running");
    assert!(!sw_dir.exists(), "{} left behind", sw_dir.display());
}

/// Runs [`no_libvdeplug_child`] in a child test process whose hosts cannot find libvdeplug.
#[test]
fn missing_libvdeplug_names_the_package() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "--ignored",
            "no_libvdeplug_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IOTH_LIBVDEPLUG", "/nonexistent/libvdeplug.so.2")
        .env("IOTH_VDESTACK_NO_LIB_CHILD", "1")
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checked without libvdeplug"), "{stdout}");
}

/// Only meaningful under [`missing_libvdeplug_names_the_package`], which runs it.
#[test]
#[ignore = "run by missing_libvdeplug_names_the_package in a child without libvdeplug"]
fn no_libvdeplug_child() {
    assert!(
        std::env::var_os("IOTH_VDESTACK_NO_LIB_CHILD").is_some(),
        "run only by missing_libvdeplug_names_the_package"
    );
    let e = Stack::new("vdestack", &["vde:///nonexistent/sw"]).expect_err("no libvdeplug");
    assert_eq!(e.errno(), libc::ENOPKG, "{e}");
    assert!(e.to_string().contains("libvdeplug2"), "{e}");
    // Without VNL the library is not needed.
    let s = vdestack(&[] as &[&str]);
    let server = echo_server(listen(&s, addr("127.0.0.1:5000")));
    let mut c = connect(&s, addr("127.0.0.1:5000"));
    echo_round_trips(&mut c);
    drop(c);
    server.join().unwrap();
    println!("checked without libvdeplug: {e}");
}

#[test]
fn idle_pumps_sleep() {
    // Not a timing test: an idle stack, and one whose switch went away, must not burn CPU.
    let mut p = pair();
    let server = echo_server(listen(&p.a, addr("10.0.0.1:5005")));
    let mut c = connect(&p.b, addr("10.0.0.1:5005"));
    echo_round_trips(&mut c);
    drop(c);
    server.join().unwrap();
    let cpu = |s: &Stack| s.stats().expect("stats").cpu_time;
    let before = cpu(&p.a);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu(&p.a) - before;
    assert!(
        used < Duration::from_millis(200),
        "idle host used {used:?} of CPU in 1 s"
    );
    // The switch goes away: the pumps notice the hang-up and stop, without spinning.
    drop(std::mem::replace(&mut p._sw, Switch::start()));
    let before = cpu(&p.a);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu(&p.a) - before;
    assert!(
        used < Duration::from_millis(200),
        "orphaned host used {used:?} of CPU in 1 s"
    );
    // The stack itself keeps working (loopback).
    let server = echo_server(listen(&p.a, addr("127.0.0.1:5006")));
    let mut c = connect(&p.a, addr("127.0.0.1:5006"));
    echo_round_trips(&mut c);
    drop(c);
    server.join().unwrap();
}

#[test]
fn udp_vnl_is_opened_in_the_applications_netns() {
    // A thread of this test enters a fresh network namespace (the "machine" of the application)
    // and creates two stacks joined by udp:// VNLs over that namespace's loopback. The stacks'
    // UDP sockets must live there, not in the stacks' own namespaces (which have no route).
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare: needs root");
        let own = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
        let process = std::fs::metadata(format!("/proc/{}/ns/net", std::process::id())).unwrap();
        assert_ne!(
            own.ino(),
            process.ino(),
            "the thread did not get its own namespace"
        );
        let st = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(st.success());
        let a = vdestack(&["udp://5000->127.0.0.1:5001"]);
        let b = vdestack(&["udp://5001->127.0.0.1:5000"]);
        vde::configure(pid(&a), "vde0", "10.8.0.1/24");
        vde::configure(pid(&b), "vde0", "10.8.0.2/24");
        let server = echo_server(listen(&a, addr("10.8.0.1:5000")));
        let mut c = connect(&b, addr("10.8.0.1:5000"));
        echo_round_trips(&mut c);
        drop(c);
        server.join().unwrap();
    })
    .join()
    .expect("udp:// stacks");
}

/// Not privileged: the host enters a user namespace of its own before the network namespace
/// (possible because the host is single-threaded until its stack exists). Runs a C program as
/// uid/gid 65534 (nobody). Taps need a world-accessible `/dev/net/tun`, which this machine lacks,
/// so the stack has no VNL.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: switches to an unprivileged user"
)]
fn unprivileged_stack_gets_its_own_user_namespace() {
    // Outside the build tree, which nobody may not reach (a checkout in a 0700 directory).
    let dir = TempDir::new("unpriv");
    ioth_tests::cprog::stage_build(dir.path());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let lib = dir.path();
    let exe = dir.path().join("unprivileged");
    let st = Command::new("gcc")
        .args(["-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(root.join("tests/c/unprivileged.c"))
        .arg("-I")
        .arg(root.join("client/include"))
        .arg(format!("-L{}", lib.display()))
        .arg("-lioth")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .expect("gcc");
    assert!(st.success());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .env_remove("IOTH_AUDIT")
        .output()
        .expect("setpriv (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "as nobody: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("socket ok lo 1"), "{text}");
    let field = |who: &str, kind: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{who} {kind} ")))
            .unwrap_or_else(|| panic!("no {who} {kind} in {text}"))
            .to_owned()
    };
    assert_ne!(field("app", "user"), field("host", "user"), "{text}");
    assert_ne!(field("app", "net"), field("host", "net"), "{text}");
}
