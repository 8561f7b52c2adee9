//! Proxied fds end to end (docs/proxied.md): the `smoltcp` plug-in ("proxied, fd data")
//! through a real host and the client library, against `vdestack` stacks (native fds) on VDE
//! switches the tests start: TCP and UDP both ways, IPv4 and IPv6, bulk transfers, many
//! connections, half-close and reset, plain syscalls with poll and epoll on proxied fds, a host
//! killed mid-transfer, the netlink configuration calls, and the C ABI on proxied fds. The
//! other kind of proxied stack (a plug-in with its own read/write, pumped by the host) is
//! tested in tests/proxied_host_pump.rs.
//!
//! smoltcp stacks are configured with the ioth netlink calls (the plug-in emulates rtnetlink),
//! vdestack stacks with `ip` in their namespace. Addresses 10.0.0.x and fd00::x exist only inside
//! the stacks. Needs root for vdestack (namespaces, taps) and libvdeplug2 + vdeplug: without
//! root the tests are reported as ignored. Every wait is bounded; rates are printed, never
//! asserted.
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ioth::{Socket, Stack};
use ioth_tests::cprog::{compile_repo_c, run_ok};
use ioth_tests::dad::{self, retry_unavailable};
use ioth_tests::killed_host::kill_mid_transfer;
use ioth_tests::pattern::{Pattern, CHUNK, PROFILE};
use ioth_tests::sock::{accept, connect, listener, ready_now, stream, wait_for, WAIT};
use ioth_tests::stacks::{self, addr, domain, ip, Net, Side};
use ioth_tests::tentative;
use ioth_tests::vde::{Switch, TempDir};
use nix::poll::PollFlags;

// ---------------------------------------------------------------- stacks

/// A smoltcp stack on `sw`: 10.0.0.`n`/24 and fd00::`n`/64 on vde0, default route via
/// 10.0.0.254, configured with the ioth netlink calls.
fn smoltcp(sw: &Switch, n: u8) -> Stack {
    let s = stacks::smoltcp(sw, &format!("10.0.0.{n}"), &format!("fd00::{n}"));
    s.iproute_add(None, Some(ip("10.0.0.254")), None)
        .expect("default route");
    s
}

/// A vdestack stack on `sw`: 10.0.0.`n`/24 and fd00::`n`/64 on vde0, with `ip`.
fn vdestack(sw: &Switch, n: u8) -> Stack {
    stacks::vdestack(sw, &format!("10.0.0.{n}"), &format!("fd00::{n}"))
}

/// [`Net`]: a smoltcp stack (10.0.0.1, fd00::1; default route via 10.0.0.254) and a vdestack
/// stack (10.0.0.2, fd00::2) on one switch.
fn net() -> Net {
    let n = Net::start();
    n.smol
        .iproute_add(None, Some(ip("10.0.0.254")), None)
        .expect("default route");
    n
}

// ---------------------------------------------------------------- socket helpers

/// Accepts one connection and echoes until EOF; the bytes echoed.
fn echo_server(l: Socket) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let (c, _) = accept(&l);
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = (&c).read(&mut buf).expect("server read");
            if n == 0 {
                return total;
            }
            (&c).write_all(&buf[..n]).expect("server write");
            total += n;
        }
    })
}

fn echo_round_trips(c: &Socket) {
    for i in 0..20 {
        let msg = format!("hello {i} from the other stack");
        (&*c).write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        (&*c).read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}

fn epoll() -> OwnedFd {
    // SAFETY: epoll_create1 takes a flag only.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1: {}", io::Error::last_os_error());
    // SAFETY: ep was just created and has no other owner.
    unsafe { OwnedFd::from_raw_fd(ep) }
}

fn epoll_add(ep: &OwnedFd, fd: BorrowedFd<'_>, events: u32, key: u64) {
    let mut ev = libc::epoll_event { events, u64: key };
    // SAFETY: ep is an epoll fd, fd an open socket, ev a valid event.
    let r =
        unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) };
    assert_eq!(r, 0, "epoll_ctl: {}", io::Error::last_os_error());
}

/// `epoll_wait` for at most `ms`: the keys and events that fired.
fn epoll_wait(ep: &OwnedFd, ms: i32) -> Vec<(u64, u32)> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
    loop {
        // SAFETY: evs is writable for 16 events; ep is an epoll fd.
        let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), 16, ms) };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        assert!(n >= 0, "epoll_wait: {}", io::Error::last_os_error());
        return evs[..n as usize]
            .iter()
            .map(|e| (e.u64, e.events))
            .collect();
    }
}

// ---------------------------------------------------------------- TCP and UDP, both ways

fn tcp_echo(server: Side, client: Side, v6: bool) {
    let n = net();
    let at = n.at(server, v6, 5000);
    let l = listener(n.stack(server), at);
    assert_eq!(l.local_addr().unwrap(), at);
    let srv = echo_server(l);
    let c = connect(n.stack(client), at);
    assert_eq!(c.peer_addr().unwrap(), at);
    let local = c.local_addr().unwrap().ip();
    dad::assert_source(n.stack(client), local, n.at(client, v6, 0).ip());
    echo_round_trips(&c);
    drop(c);
    assert!(srv.join().unwrap() > 0);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn tcp_echo_smoltcp_server_ipv4() {
    tcp_echo(Side::Smol, Side::Vde, false);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn tcp_echo_smoltcp_server_ipv6() {
    tcp_echo(Side::Smol, Side::Vde, true);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn tcp_echo_smoltcp_client_ipv4() {
    tcp_echo(Side::Vde, Side::Smol, false);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn tcp_echo_smoltcp_client_ipv6() {
    tcp_echo(Side::Vde, Side::Smol, true);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn tcp_echo_between_two_smoltcp_stacks() {
    let sw = Switch::start();
    let a = smoltcp(&sw, 1);
    let b = smoltcp(&sw, 3);
    let srv = echo_server(listener(&a, addr("10.0.0.1:5000")));
    let c = connect(&b, addr("10.0.0.1:5000"));
    echo_round_trips(&c);
    drop(c);
    assert!(srv.join().unwrap() > 0);
}

/// Unconnected UDP: requests with `send_to`, answers to `recv_from`'s address.
fn udp_unconnected(server: Side, client: Side, v6: bool) {
    let n = net();
    let at = n.at(server, v6, 7000);
    let srv = n
        .stack(server)
        .msocket(domain(&at), libc::SOCK_DGRAM, 0)
        .unwrap();
    // The vdestack address may still be in duplicate address detection: bind as programs do.
    retry_unavailable(|| srv.bind(&at)).unwrap();
    srv.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let cli = n
        .stack(client)
        .msocket(domain(&at), libc::SOCK_DGRAM, 0)
        .unwrap();
    retry_unavailable(|| cli.bind(&n.at(client, v6, 0))).unwrap();
    cli.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answered = 0;
    // A datagram may be lost while neighbours are discovered: retried, bounded.
    for i in 0..10 {
        let req = format!("request {i}");
        let mut got = None;
        for _ in 0..5 {
            cli.send_to(req.as_bytes(), &at).unwrap();
            let mut buf = [0u8; 1500];
            if let Ok((k, from)) = srv.recv_from(&mut buf) {
                got = Some((buf[..k].to_vec(), from));
                break;
            }
        }
        let (data, from) = got.expect("request lost five times");
        assert_eq!(data, req.as_bytes());
        assert_eq!(from.ip(), n.at(client, v6, 0).ip());
        let resp = format!("response {i}");
        srv.send_to(resp.as_bytes(), &from).unwrap();
        let mut buf = [0u8; 1500];
        if let Ok((k, from)) = cli.recv_from(&mut buf) {
            assert_eq!(&buf[..k], resp.as_bytes());
            assert_eq!(from, at);
            answered += 1;
        }
    }
    assert!(answered > 0, "no response arrived");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_smoltcp_server_ipv4() {
    udp_unconnected(Side::Smol, Side::Vde, false);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_smoltcp_server_ipv6() {
    udp_unconnected(Side::Smol, Side::Vde, true);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_smoltcp_client_ipv4() {
    udp_unconnected(Side::Vde, Side::Smol, false);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_smoltcp_client_ipv6() {
    udp_unconnected(Side::Vde, Side::Smol, true);
}

/// A switch and two stacks on it configured as programs do, with the ioth netlink calls (IPv6
/// with duplicate address detection on the vdestack one): `server` 10.0.0.1 / fd00::1 and
/// `client` 10.0.0.2 / fd00::2; then, at once, what [`tentative::tcp_and_udp_at_once`] checks: every
/// connect or datagram, TCP and UDP, works, or fails at once with EADDRNOTAVAIL while the
/// vdestack addresses are still tentative; none leaves from ::1 or hangs.
fn ipv6_right_after_configuration(server: &str, client: &str) {
    let sw = Switch::start();
    let srv = stacks::configured(server, &sw, "10.0.0.1", "fd00::1");
    let cli = stacks::configured(client, &sw, "10.0.0.2", "fd00::2");
    let (tcp, udp) = tentative::tcp_and_udp_at_once(&srv, ip("fd00::1"), &cli, 5030);
    println!("{client} -> {server}: the first connection came from {tcp}, requests from {udp:?}");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn ipv6_vdestack_client_of_smoltcp_right_after_configuration() {
    ipv6_right_after_configuration("smoltcp", "vdestack");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn ipv6_smoltcp_client_of_vdestack_right_after_configuration() {
    ipv6_right_after_configuration("vdestack", "smoltcp");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_connected_send_recv_and_disconnect() {
    let n = net();
    let srv = n.vde.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    srv.bind(&addr("10.0.0.2:7001")).unwrap();
    srv.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let c = n.smol.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Not connected: send() has no destination.
    assert_eq!(
        c.send(b"x").unwrap_err().raw_os_error(),
        Some(libc::EDESTADDRREQ)
    );
    c.connect(&addr("10.0.0.2:7001")).unwrap();
    assert_eq!(c.peer_addr().unwrap(), addr("10.0.0.2:7001"));
    let local = c.local_addr().unwrap();
    assert_ne!(local.port(), 0, "connect binds an ephemeral port");
    let mut ok = 0;
    for i in 0..10 {
        let msg = format!("connected {i}");
        // Plain send/recv on the fd itself: bare payloads once connected.
        (&c).write_all(msg.as_bytes()).unwrap();
        let mut buf = [0u8; 1500];
        let Ok((k, from)) = srv.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(&buf[..k], msg.as_bytes());
        assert_eq!(from.port(), local.port());
        srv.send_to(format!("re {i}").as_bytes(), &from).unwrap();
        // SAFETY: a plain recv(2) on the application's fd: buf is writable for its length.
        let r = unsafe { libc::recv(c.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r > 0 {
            assert_eq!(&buf[..r as usize], format!("re {i}").as_bytes());
            ok += 1;
        }
    }
    assert!(ok > 0, "no answer on the connected socket");
    // recv_from on a connected socket reports the peer.
    srv.send_to(b"again", &SocketAddr::new(ip("10.0.0.1"), local.port()))
        .unwrap();
    let mut buf = [0u8; 100];
    if let Ok((k, from)) = c.recv_from(&mut buf) {
        assert_eq!(&buf[..k], b"again");
        assert_eq!(from, addr("10.0.0.2:7001"));
    }
    // AF_UNSPEC disconnects: addresses again.
    c.disconnect().expect("connect(AF_UNSPEC)");
    assert_eq!(
        c.send(b"x").unwrap_err().raw_os_error(),
        Some(libc::EDESTADDRREQ)
    );
    let mut delivered = false;
    for _ in 0..5 {
        c.send_to(b"after", &addr("10.0.0.2:7001")).unwrap();
        if let Ok((k, _)) = srv.recv_from(&mut buf) {
            assert_eq!(&buf[..k], b"after");
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no datagram after the disconnect");
}

// ---------------------------------------------------------------- bulk, many, half-close, reset

/// Sends `chunks` × 64 KiB from `from` to a listener of `to` at `at`, checks the checksum;
/// returns the rate in MB/s.
fn transfer(from: &Stack, to: &Stack, at: SocketAddr, chunks: usize) -> f64 {
    let l = listener(to, at);
    let sink = std::thread::spawn(move || {
        let (c, _) = accept(&l);
        let mut p = Pattern::new();
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..chunks {
            (&c).read_exact(&mut buf).expect("sink read");
            p.add(&buf);
        }
        let mut rest = [0u8; 1];
        assert_eq!((&c).read(&mut rest).unwrap(), 0, "more bytes than sent");
        p.checksum()
    });
    let c = connect(from, at);
    let mut p = Pattern::new();
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    for _ in 0..chunks {
        p.fill(&mut buf);
        p.add(&buf);
        (&c).write_all(&buf).expect("source write");
    }
    c.shutdown(Shutdown::Write).unwrap();
    let got = sink.join().expect("sink");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, p.checksum(), "checksum mismatch");
    (chunks * CHUNK) as f64 / 1e6 / secs
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn tcp_100mb_with_checksum_both_ways() {
    let n = net();
    let chunks = 100 * 1024 * 1024 / CHUNK;
    let into = transfer(&n.vde, &n.smol, addr("10.0.0.1:5001"), chunks);
    let out = transfer(&n.smol, &n.vde, addr("10.0.0.2:5002"), chunks);
    println!(
        "proxied: 100 MiB vdestack → smoltcp {into:.1} MB/s ({:.0} Mbit/s), smoltcp → vdestack \
         {out:.1} MB/s ({:.0} Mbit/s), over a vde_plug switch at MTU 1500 (host and plug-ins of \
         this build profile, {PROFILE})",
        into * 8.0,
        out * 8.0
    );
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn thousand_sequential_connections() {
    let n = net();
    let l = listener(&n.smol, addr("10.0.0.1:5003"));
    let before = n.smol.stats().unwrap().host_fds;
    let srv = std::thread::spawn(move || {
        for i in 0..1000u32 {
            let (c, _) = accept(&l);
            let mut b = [0u8; 4];
            (&c).read_exact(&mut b).expect("server read");
            assert_eq!(u32::from_le_bytes(b), i);
            (&c).write_all(&b).expect("server write");
            // EOF from the client before the server's close.
            assert_eq!((&c).read(&mut b).unwrap(), 0);
        }
        l
    });
    let start = Instant::now();
    for i in 0..1000u32 {
        let c = connect(&n.vde, addr("10.0.0.1:5003"));
        (&c).write_all(&i.to_le_bytes()).unwrap();
        let mut b = [0u8; 4];
        (&c).read_exact(&mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), i);
    }
    let l = srv.join().expect("server");
    println!(
        "proxied: 1000 sequential connections vdestack → smoltcp in {:.2} s ({PROFILE})",
        start.elapsed().as_secs_f64()
    );
    // Every accepted socket was closed on the host: its fd count is back where it was.
    let s = &n.smol;
    assert!(
        ioth_tests::proc::wait_until(WAIT, || s.stats().unwrap().host_fds <= before),
        "host fds: {before} before, {} after",
        s.stats().unwrap().host_fds
    );
    drop(l);
}

/// The client half-closes; the server reads to EOF, then answers and closes.
fn half_close(server: Side, client: Side) {
    let n = net();
    let at = n.at(server, false, 5004);
    let l = listener(n.stack(server), at);
    let srv = std::thread::spawn(move || {
        let (c, _) = accept(&l);
        let mut all = Vec::new();
        (&c).read_to_end(&mut all).expect("read to EOF");
        // The write side is still open after the peer's FIN.
        (&c).write_all(format!("got {} bytes", all.len()).as_bytes())
            .unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        all.len()
    });
    let c = connect(n.stack(client), at);
    (&c).write_all(&[7u8; 100_000]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    // Writing after SHUT_WR fails.
    assert!((&c).write_all(b"late").is_err());
    let mut answer = String::new();
    (&c).read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "got 100000 bytes");
    assert_eq!(srv.join().unwrap(), 100_000);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn half_close_smoltcp_client() {
    half_close(Side::Vde, Side::Smol);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn half_close_smoltcp_server() {
    half_close(Side::Smol, Side::Vde);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn peer_reset_is_econnreset() {
    let n = net();
    // vdestack resets the connection (SO_LINGER 0): the smoltcp side's read fails.
    let l = listener(&n.smol, addr("10.0.0.1:5005"));
    let c = connect(&n.vde, addr("10.0.0.1:5005"));
    let (s, _) = accept(&l);
    (&c).write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    (&s).read_exact(&mut b).unwrap();
    let linger = [1i32.to_ne_bytes(), 0i32.to_ne_bytes()].concat();
    c.setsockopt(libc::SOL_SOCKET, libc::SO_LINGER, &linger)
        .unwrap();
    drop(c);
    let ev = wait_for(s.as_fd(), PollFlags::POLLIN, WAIT);
    assert!(!ev.is_empty(), "no event after the peer's reset");
    let e = (&s).read(&mut b).expect_err("read after a reset");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{e}");
    // And the other way: smoltcp resets, vdestack sees it.
    let l2 = listener(&n.vde, addr("10.0.0.2:5006"));
    let c2 = connect(&n.smol, addr("10.0.0.2:5006"));
    let (s2, _) = accept(&l2);
    c2.setsockopt(libc::SOL_SOCKET, libc::SO_LINGER, &linger)
        .unwrap();
    drop(c2);
    let ev = wait_for(s2.as_fd(), PollFlags::POLLIN, WAIT);
    assert!(!ev.is_empty(), "no event after smoltcp's reset");
    let e = (&s2).read(&mut b).expect_err("read after a reset");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{e}");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn refused_connect_reports_econnrefused() {
    let n = net();
    // Blocking connect: the error comes back from connect itself.
    let c = stream(&n.smol, &addr("10.0.0.2:1"));
    let e = c.connect(&addr("10.0.0.2:1")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
    // Non-blocking: EINPROGRESS, writable, SO_ERROR says refused.
    let c = stream(&n.smol, &addr("10.0.0.2:2"));
    c.set_nonblocking(true).unwrap();
    let e = c.connect(&addr("10.0.0.2:2")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINPROGRESS));
    assert!(!wait_for(c.as_fd(), PollFlags::POLLOUT, WAIT).is_empty());
    let e = c.take_error().unwrap().expect("an error");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
}

// ---------------------------------------------------------------- plain syscalls, poll, epoll

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn plain_read_write_poll_epoll_on_proxied_fds() {
    let n = net();
    let l = listener(&n.smol, addr("10.0.0.1:5007"));
    assert!(l.is_proxied());
    // A listener is readable exactly when a connection is pending.
    assert!(!ready_now(l.as_fd(), PollFlags::POLLIN));
    let c = connect(&n.vde, addr("10.0.0.1:5007"));
    assert!(wait_for(l.as_fd(), PollFlags::POLLIN, WAIT).contains(PollFlags::POLLIN));
    let (s, _) = l.accept().unwrap();
    assert!(
        !ready_now(l.as_fd(), PollFlags::POLLIN),
        "one connection, one token"
    );
    // The accepted socket is writable at once, not readable.
    assert!(ready_now(s.as_fd(), PollFlags::POLLOUT));
    assert!(!ready_now(s.as_fd(), PollFlags::POLLIN));
    // epoll on it: nothing, then readable once the peer writes.
    let ep = epoll();
    epoll_add(&ep, s.as_fd(), libc::EPOLLIN as u32, 42);
    assert!(epoll_wait(&ep, 0).is_empty());
    (&c).write_all(b"ping").unwrap();
    assert_eq!(epoll_wait(&ep, WAIT.as_millis() as i32)[0].0, 42);
    // Plain read(2) and write(2) on the proxied fd.
    let mut b = [0u8; 4];
    // SAFETY: b is writable for 4 bytes; s is an open fd.
    let r = unsafe { libc::read(s.as_raw_fd(), b.as_mut_ptr().cast(), 4) };
    assert_eq!(r, 4);
    assert_eq!(&b, b"ping");
    assert!(epoll_wait(&ep, 0).is_empty(), "drained: not readable");
    // SAFETY: the buffer is readable for 4 bytes; s is an open fd.
    let w = unsafe { libc::write(s.as_raw_fd(), b"pong".as_ptr().cast(), 4) };
    assert_eq!(w, 4);
    (&c).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"pong");
    // FIONREAD counts what waits in the pair.
    (&c).write_all(b"123456").unwrap();
    assert!(wait_for(s.as_fd(), PollFlags::POLLIN, WAIT).contains(PollFlags::POLLIN));
    let mut avail: libc::c_int = 0;
    assert!(ioth_tests::proc::wait_until(WAIT, || {
        // SAFETY: FIONREAD writes an int at the pointer.
        unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut avail) };
        avail == 6
    }));
    // EOF reaches epoll too.
    drop(c);
    let mut six = [0u8; 6];
    (&s).read_exact(&mut six).unwrap();
    assert!(!epoll_wait(&ep, WAIT.as_millis() as i32).is_empty());
    assert_eq!((&s).read(&mut b).unwrap(), 0);
    // A UDP socket is readable when a datagram is queued.
    let u = n.smol.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    u.bind(&addr("10.0.0.1:7002")).unwrap();
    assert!(!ready_now(u.as_fd(), PollFlags::POLLIN));
    let v = n.vde.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let mut seen = false;
    for _ in 0..5 {
        v.send_to(b"dgram", &addr("10.0.0.1:7002")).unwrap();
        if !wait_for(u.as_fd(), PollFlags::POLLIN, Duration::from_secs(2)).is_empty() {
            seen = true;
            break;
        }
    }
    assert!(seen, "the UDP socket never turned readable");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn nonblocking_accept_and_connect_in_an_epoll_loop() {
    let n = net();
    let l = listener(&n.smol, addr("10.0.0.1:5008"));
    l.set_nonblocking(true).unwrap();
    assert_eq!(
        l.accept().unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "nothing pending"
    );
    let ep = epoll();
    epoll_add(&ep, l.as_fd(), libc::EPOLLIN as u32, 0);
    // Ten non-blocking connects from smoltcp to vdestack and ten from vdestack to smoltcp, all
    // driven by one epoll loop.
    let vl = listener(&n.vde, addr("10.0.0.2:5009"));
    vl.set_nonblocking(true).unwrap();
    epoll_add(&ep, vl.as_fd(), libc::EPOLLIN as u32, 1);
    let mut pending = Vec::new();
    for i in 0..10u64 {
        for (stack, to) in [(&n.smol, "10.0.0.2:5009"), (&n.vde, "10.0.0.1:5008")] {
            let c = stream(stack, &addr(to));
            c.set_nonblocking(true).unwrap();
            match c.connect(&addr(to)) {
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                r => panic!("non-blocking connect: {r:?}"),
            }
            let key = 100 + pending.len() as u64;
            epoll_add(&ep, c.as_fd(), libc::EPOLLOUT as u32, key);
            pending.push(Some(c));
        }
        let _ = i;
    }
    let (mut accepted, mut connected) = (0, 0);
    let deadline = Instant::now() + WAIT;
    let mut keep = Vec::new();
    while (accepted < 20 || connected < 20) && Instant::now() < deadline {
        for (key, ev) in epoll_wait(&ep, 1000) {
            match key {
                0 | 1 => {
                    let lst = if key == 0 { &l } else { &vl };
                    // Drain: accept until EAGAIN.
                    for _ in 0..64 {
                        match lst.accept() {
                            Ok((s, _)) => {
                                accepted += 1;
                                keep.push(s);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => panic!("accept: {e}"),
                        }
                    }
                }
                k => {
                    assert!(ev & libc::EPOLLOUT as u32 != 0);
                    let c = pending[(k - 100) as usize].take();
                    if let Some(c) = c {
                        assert!(c.take_error().unwrap().is_none(), "connect failed");
                        // SAFETY: removes an fd that is registered in ep.
                        unsafe {
                            libc::epoll_ctl(
                                ep.as_raw_fd(),
                                libc::EPOLL_CTL_DEL,
                                c.as_raw_fd(),
                                std::ptr::null_mut(),
                            )
                        };
                        connected += 1;
                        keep.push(c);
                    }
                }
            }
        }
    }
    assert_eq!((accepted, connected), (20, 20));
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn blocking_calls_on_one_socket_do_not_block_others() {
    let sw = Switch::start();
    let a = smoltcp(&sw, 1);
    let b = smoltcp(&sw, 3);
    let v = vdestack(&sw, 2);
    // A blocking accept on stack a, with nothing to accept yet.
    let l = listener(&a, addr("10.0.0.1:5010"));
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let r = l.accept().map(|(s, p)| (s.is_proxied(), p));
        let _ = tx.send(());
        r
    });
    // Meanwhile: connects and echoes on stack b and on stack a itself, and a blocking connect on
    // a to a vdestack listener.
    let srv = echo_server(listener(&v, addr("10.0.0.2:5011")));
    let c = stream(&a, &addr("10.0.0.2:5011"));
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.connect(&addr("10.0.0.2:5011")).expect("blocking connect");
    echo_round_trips(&c);
    drop(c);
    srv.join().unwrap();
    let srv = echo_server(listener(&v, addr("10.0.0.2:5012")));
    let c = connect(&b, addr("10.0.0.2:5012"));
    echo_round_trips(&c);
    drop(c);
    srv.join().unwrap();
    assert!(rx.try_recv().is_err(), "the accept is still waiting");
    // Now give it its connection.
    let _c = connect(&v, addr("10.0.0.1:5010"));
    rx.recv_timeout(WAIT).expect("accept did not return");
    let (proxied, peer) = t.join().unwrap().expect("accept");
    assert!(proxied);
    assert_eq!(peer.ip(), ip("10.0.0.2"));
}

// ---------------------------------------------------------------- a host killed mid-transfer

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn killed_smoltcp_host_mid_transfer_gives_eof_or_reset() {
    let n = net();
    let l = listener(&n.vde, addr("10.0.0.2:5013"));
    let c = connect(&n.smol, addr("10.0.0.2:5013"));
    let (s, _) = accept(&l);
    // A blocking accept on the same stack, waiting when the host dies.
    let sl = listener(&n.smol, addr("10.0.0.1:5014"));
    let acc = std::thread::spawn(move || sl.accept().map(drop));
    let host = n.smol.pid().unwrap();
    kill_mid_transfer(host, c, move || {
        // vdestack streams into smoltcp until its writes stall (bounded by a write timeout).
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let buf = vec![2u8; CHUNK];
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline && (&s).write_all(&buf).is_ok() {}
        let linger = [1i32.to_ne_bytes(), 0i32.to_ne_bytes()].concat();
        let _ = s.setsockopt(libc::SOL_SOCKET, libc::SO_LINGER, &linger);
    });
    let e = acc.join().unwrap().expect_err("accept on a dead stack");
    assert_eq!(e.kind(), io::ErrorKind::NetworkDown, "{e}");
    assert!(n.smol.is_gone());
}

// ---------------------------------------------------------------- netlink configuration

/// The configuration checks of tests/netlink.rs that apply to a stack with one VNL (`vde0`)
/// and no links of its own to create, through the Rust API; run on vdestack and on smoltcp.
fn netlink_configuration(s: &Stack) {
    use ioth::Error;
    let errno = |r: ioth::Result<()>| match r {
        Ok(()) => panic!("expected an error"),
        Err(e) => e.errno(),
    };
    assert_eq!(s.if_nametoindex("lo").unwrap(), 1);
    let idx = s.if_nametoindex("vde0").unwrap();
    assert!(idx > 1);
    assert!(matches!(
        s.if_nametoindex("nosuch0"),
        Err(ref e @ Error::Stack { .. }) if e.errno() == libc::ENODEV
    ));
    let ifs = s.interfaces().unwrap();
    let lo = ifs.iter().find(|i| i.name == "lo").expect("lo listed");
    assert!(lo.is_up() && lo.index == 1 && lo.link_type == 772);
    let vde0 = ifs.iter().find(|i| i.name == "vde0").expect("vde0 listed");
    assert_eq!(vde0.index, idx);
    assert_eq!(vde0.link_type, 1, "Ethernet");
    assert!(vde0.mac().is_some());
    // Down, up, MTU, MAC.
    s.link_set_up(idx, false).unwrap();
    assert!(!s.interface(idx).unwrap().is_up());
    s.link_set_up(idx, true).unwrap();
    assert!(s.interface(idx).unwrap().is_up());
    s.link_set_mtu(idx, 1400).unwrap();
    assert_eq!(s.interface(idx).unwrap().mtu, 1400);
    s.link_set_mtu(idx, 1500).unwrap();
    let mac = [0x02, 0x10, 0x20, 0x30, 0x40, 0x50];
    s.link_set_mac(idx, mac).unwrap();
    assert_eq!(s.link_get_mac(idx).unwrap(), mac);
    assert_eq!(errno(s.link_set_up(4242, true)), libc::ENODEV);
    assert_eq!(errno(s.link_set_mtu(4242, 1400)), libc::ENODEV);
    // Addresses.
    s.ipaddr_add(ip("10.55.0.1"), 24, idx).unwrap();
    s.ipaddr_add(ip("fd00:55::1"), 64, idx).unwrap();
    assert_eq!(errno(s.ipaddr_add(ip("10.55.0.1"), 24, idx)), libc::EEXIST);
    assert_eq!(errno(s.ipaddr_add(ip("10.55.0.1"), 33, idx)), libc::EINVAL);
    assert_eq!(errno(s.ipaddr_add(ip("10.55.0.1"), 24, 4242)), libc::ENODEV);
    assert_eq!(
        errno(s.ipaddr_del(ip("10.55.0.99"), 24, idx)),
        libc::EADDRNOTAVAIL
    );
    let addrs = s.addresses().unwrap();
    let has = |a: &str, p: u8, i: u32| {
        addrs
            .iter()
            .any(|x| x.addr == ip(a) && x.prefix_len == p && x.index == i)
    };
    assert!(has("10.55.0.1", 24, idx), "{addrs:?}");
    assert!(has("fd00:55::1", 64, idx), "{addrs:?}");
    assert!(has("127.0.0.1", 8, 1), "{addrs:?}");
    // Routes: default via a gateway, a network, an IPv6 default through the interface.
    s.iproute_add(None, Some(ip("10.55.0.254")), None).unwrap();
    s.iproute_add(Some((ip("10.66.0.0"), 16)), Some(ip("10.55.0.254")), None)
        .unwrap();
    s.iproute_add(None, Some(ip("fd00:55::fe")), Some(idx))
        .unwrap();
    assert_eq!(
        errno(s.iproute_add(None, Some(ip("10.55.0.254")), None)),
        libc::EEXIST
    );
    let routes = s.routes().unwrap();
    let route = |dst: &str, p: u8, gw: &str| {
        routes
            .iter()
            .any(|r| r.dst == ip(dst) && r.prefix_len == p && r.gateway == Some(ip(gw)))
    };
    assert!(route("0.0.0.0", 0, "10.55.0.254"), "{routes:?}");
    assert!(route("10.66.0.0", 16, "10.55.0.254"), "{routes:?}");
    assert!(route("::", 0, "fd00:55::fe"), "{routes:?}");
    // Undo everything.
    s.iproute_del(None, Some(ip("10.55.0.254")), None).unwrap();
    s.iproute_del(Some((ip("10.66.0.0"), 16)), Some(ip("10.55.0.254")), None)
        .unwrap();
    s.iproute_del(None, Some(ip("fd00:55::fe")), None).unwrap();
    assert_eq!(
        errno(s.iproute_del(None, Some(ip("10.55.0.254")), None)),
        libc::ESRCH
    );
    s.ipaddr_del(ip("10.55.0.1"), 24, idx).unwrap();
    s.ipaddr_del(ip("fd00:55::1"), 64, idx).unwrap();
    let addrs = s.addresses().unwrap();
    assert!(!addrs.iter().any(|a| a.addr == ip("10.55.0.1")));
    assert!(!addrs.iter().any(|a| a.addr == ip("fd00:55::1")));
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn netlink_configuration_vdestack_and_smoltcp() {
    let sw = Switch::start();
    for name in ["vdestack", "smoltcp"] {
        let s = Stack::new(name, &[sw.vnl()]).unwrap_or_else(|e| panic!("newstack {name}: {e}"));
        netlink_configuration(&s);
        // Every netlink socket the calls made was closed on the host.
        assert_eq!(s.open_sockets(), 0, "{name}");
        s.delete().map_err(ioth::Error::from).expect("delstack");
    }
}

// ---------------------------------------------------------------- C programs

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn c_abi_on_smoltcp_and_vdestack() {
    let dir = TempDir::new("proxied-c");
    let exe = compile_repo_c("tests/c", "proxied", dir.path());
    let sw = Switch::start();
    let out = run_ok(&exe, &[&sw.vnl()], Duration::from_secs(120));
    assert!(out.contains("tcp ok") && out.contains("udp ok") && out.contains("epoll ok"));
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn c_netlink_configuration_vdestack_and_smoltcp() {
    let dir = TempDir::new("proxied-nl");
    let exe = compile_repo_c("tests/c", "proxied_netlink", dir.path());
    let sw = Switch::start();
    for name in ["vdestack", "smoltcp"] {
        run_ok(&exe, &[name, &sw.vnl()], Duration::from_secs(60));
    }
}
