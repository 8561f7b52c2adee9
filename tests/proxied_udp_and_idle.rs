//! Proxied UDP at its limits and idle hosts, the smoltcp plug-in and the host pump through a real
//! host and the client library:
//!
//! - UDP datagrams larger than one frame (IP fragmentation, both ways, IPv4 and IPv6): 1473,
//!   8000, 65000 bytes and the largest UDP payload, smoltcp → vdestack and vdestack → smoltcp,
//!   one at a time and several queued back to back;
//! - more than one VNL on a smoltcp stack (`vde0`, `vde1`, a named `eth1`), traffic on each;
//! - no busy loop: an idle smoltcp host and an idle host-pump host use near-zero CPU;
//! - the empty UDP datagram both ways (unconnected and connected), and the stack's own loopback
//!   (127.0.0.1, ::1, its own address) through host and client;
//! - a UDP datagram to an on-link address nobody answers is given up after about 3 s (as
//!   Linux does) instead of holding up every later datagram of its socket, IPv4 and IPv6;
//! - a datagram larger than the largest UDP payload fails with `EMSGSIZE` in the client
//!   library (Rust `Socket`, C `ioth_send*`/`ioth_write*`) instead of being dropped silently.
//!
//! Each test starts its own VDE switches (stopped by pid on drop); addresses exist only inside
//! the stacks. Needs root (vdestack: a network namespace, a tap): without root the tests that
//! need it say so loudly and return. Every wait and loop is bounded; no speed is asserted (the
//! CPU bound is a resource bound, loose).
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use ioth::{Socket, Stack};
use ioth_tests::dad::retry_unavailable;
use ioth_tests::sock::{accept, connect, listener_backlog, wait_for, WAIT};
use ioth_tests::stacks::{self, addr, configure_smol, domain, ip, vdestack, Net};
use ioth_tests::vde::Switch;
use nix::poll::PollFlags;

/// How long one try waits for a datagram that may be lost while neighbours are discovered.
const TRY: Duration = Duration::from_secs(2);
const TRIES: usize = 5;
/// Largest UDP payloads: IPv4 (65535 − 20 − 8) and IPv6 (65535 − 8, no jumbograms).
const MAX_V4: usize = 65507;
const MAX_V6: usize = 65527;

// ---------------------------------------------------------------- setup

/// A smoltcp stack (10.0.0.1/24, fd00::1/64 on vde0).
fn smoltcp(sw: &Switch) -> Stack {
    stacks::smoltcp(sw, "10.0.0.1", "fd00::1")
}

/// A smoltcp stack (10.0.0.1, fd00::1) and a vdestack stack (10.0.0.2, fd00::2) on one
/// switch.
fn net() -> Net {
    Net::start()
}

fn dgram(stack: &Stack, at: SocketAddr) -> Socket {
    let s = stack
        .msocket(domain(&at), libc::SOCK_DGRAM, 0)
        .expect("msocket dgram");
    retry_unavailable(|| s.bind(&at)).unwrap_or_else(|e| panic!("bind {at}: {e}"));
    s.set_read_timeout(Some(TRY)).unwrap();
    s
}

fn listener(stack: &Stack, at: SocketAddr) -> Socket {
    listener_backlog(stack, at, 16)
}

/// A TCP connection from `client` to a listener of `server` at `at`, and a few bytes each way.
fn tcp_exchange(server: &Stack, client: &Stack, at: SocketAddr) {
    let l = listener(server, at);
    let mut c = connect(client, at);
    let (mut s, peer) = accept(&l);
    assert_eq!(
        peer,
        c.local_addr().unwrap(),
        "peer of the accepted connection"
    );
    let msg = format!("to {at}");
    c.write_all(msg.as_bytes()).unwrap();
    let mut b = vec![0u8; msg.len()];
    s.read_exact(&mut b).unwrap();
    assert_eq!(b, msg.as_bytes());
    s.write_all(b"back").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"back");
}

/// A `len`-byte payload, different for every `len` and `tag`.
fn pattern(len: usize, tag: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(u32::from(tag) * 7 + len as u32) as u8
        })
        .collect()
}

/// Receives one datagram on `rx` (one try); its payload and source.
fn recv_one(rx: &Socket) -> io::Result<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 70000];
    let (k, from) = rx.recv_from(&mut buf)?;
    buf.truncate(k);
    Ok((buf, from))
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sends `msg` from `tx` to `to` until it arrives whole on `rx` from `tx`'s address (bounded
/// tries: the first may wait for ARP/NDP). Every datagram received must be `msg` exactly.
fn deliver(tx: &Socket, to: SocketAddr, rx: &Socket, msg: &[u8], what: &str) {
    deliver_from(tx, to, rx, msg, what, tx.local_addr().unwrap());
}

/// [`deliver`], the datagram expected from `src`.
fn deliver_from(tx: &Socket, to: SocketAddr, rx: &Socket, msg: &[u8], what: &str, src: SocketAddr) {
    deliver_with(|| tx.send_to(msg, &to), rx, msg, what, src);
}

/// Sends `msg` with `send` until it arrives whole on `rx` from `src` (bounded tries). A
/// datagram of another length is a late copy of an earlier try of an earlier message: skipped.
fn deliver_with(
    send: impl Fn() -> io::Result<usize>,
    rx: &Socket,
    msg: &[u8],
    what: &str,
    src: SocketAddr,
) {
    for _ in 0..TRIES {
        let n = send().unwrap_or_else(|e| panic!("{what}: send {} bytes: {e}", msg.len()));
        assert_eq!(n, msg.len(), "{what}: sent");
        loop {
            match recv_one(rx) {
                Ok((got, _)) if got.len() != msg.len() => {
                    println!(
                        "proxied_udp_and_idle: {what}: skipped a late {}-byte datagram",
                        got.len()
                    );
                }
                Ok((got, from)) => {
                    assert_eq!(from, src, "{what}: source");
                    assert!(got == msg, "{what}: payload differs");
                    return;
                }
                Err(e) if timed_out(&e) => break,
                Err(e) => panic!("{what}: recv_from: {e}"),
            }
        }
    }
    panic!(
        "{what}: a {}-byte datagram never arrived in {TRIES} tries",
        msg.len()
    );
}

/// Sends `msgs` once, back to back, and expects every one exactly once on `rx`, from `tx`.
fn burst(tx: &Socket, to: SocketAddr, rx: &Socket, msgs: &[Vec<u8>], what: &str) {
    let src = tx.local_addr().unwrap();
    for m in msgs {
        assert_eq!(tx.send_to(m, &to).unwrap(), m.len());
    }
    let mut seen = vec![false; msgs.len()];
    while !seen.iter().all(|s| *s) {
        match recv_one(rx) {
            Ok((got, from)) => {
                assert_eq!(from, src, "{what}: source");
                let i = msgs
                    .iter()
                    .position(|m| *m == got)
                    .unwrap_or_else(|| panic!("{what}: a {}-byte datagram never sent", got.len()));
                assert!(!seen[i], "{what}: datagram {i} twice");
                seen[i] = true;
            }
            Err(e) if timed_out(&e) => {
                let sizes: Vec<_> = msgs.iter().map(Vec::len).collect();
                panic!("{what}: of {sizes:?} only {seen:?} arrived")
            }
            Err(e) => panic!("{what}: recv_from: {e}"),
        }
    }
}

// ---------------------------------------------------------------- 1. large datagrams

fn large_datagrams(v6: bool) {
    let n = net();
    let (s_at, v_at) = if v6 {
        (addr("[fd00::1]:7200"), addr("[fd00::2]:7201"))
    } else {
        (addr("10.0.0.1:7200"), addr("10.0.0.2:7201"))
    };
    let max = if v6 { MAX_V6 } else { MAX_V4 };
    let s = dgram(&n.smol, s_at);
    let v = dgram(&n.vde, v_at);
    // A small one first: neighbours known both ways.
    deliver(&s, v_at, &v, b"hello", "warm-up smoltcp → vdestack");
    deliver(&v, s_at, &s, b"hello", "warm-up vdestack → smoltcp");
    for (k, len) in [1473usize, 8000, 65000, max].into_iter().enumerate() {
        let m = pattern(len, k as u8);
        deliver(&s, v_at, &v, &m, &format!("{len} bytes smoltcp → vdestack"));
        deliver(&v, s_at, &s, &m, &format!("{len} bytes vdestack → smoltcp"));
    }
    // Several fragmented datagrams queued back to back, mixed with small ones, sent once.
    let msgs: Vec<Vec<u8>> = [8000usize, 100, 20000, 1473, 12000, 3000]
        .into_iter()
        .enumerate()
        .map(|(k, len)| pattern(len, 100 + k as u8))
        .collect();
    burst(&s, v_at, &v, &msgs, "burst smoltcp → vdestack");
    burst(&v, s_at, &s, &msgs, "burst vdestack → smoltcp");
    // A connected socket: bare payloads, fragmented too.
    s.connect(&v_at).unwrap();
    let m = pattern(30000, 7);
    deliver_with(|| s.send(&m), &v, &m, "connected out", s_at);
    deliver_with(|| v.send_to(&m, &s_at), &s, &m, "connected in", v_at);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_large_datagrams_ipv4_both_ways() {
    setup();
    large_datagrams(false);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_large_datagrams_ipv6_both_ways() {
    setup();
    large_datagrams(true);
}

/// The stack's own loopback carries the largest datagrams too (IPv4 unfragmented on `lo`'s
/// 64 KiB MTU, IPv6 fragmented by the plug-in above 65487 bytes).
#[test]
fn udp_largest_datagrams_over_the_stacks_loopback() {
    setup();
    let s = Stack::new("smoltcp", &[] as &[&str]).expect("newstack smoltcp without VNL");
    for (at, len) in [
        (addr("127.0.0.1:7300"), MAX_V4),
        (addr("[::1]:7301"), MAX_V6),
        (addr("[::1]:7302"), 65000),
    ] {
        let a = dgram(&s, at);
        let b = dgram(&s, SocketAddr::new(at.ip(), 0));
        let m = pattern(len, 9);
        deliver(&b, at, &a, &m, &format!("{len} bytes over lo to {at}"));
    }
}

// ---------------------------------------------------------------- 2. several VNLs

/// Two switches, a smoltcp stack on both (`vde0`, `vde1`) and a vdestack peer on each: TCP
/// both ways and UDP both ways on each interface, IPv4 and IPv6.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn smoltcp_with_two_vnls() {
    setup();
    let (a, b) = (Switch::start(), Switch::start());
    let smol = Stack::new("smoltcp", &[a.vnl(), b.vnl()])
        .unwrap_or_else(|e| panic!("newstack smoltcp on two VNLs: {e}"));
    let i0 = smol.if_nametoindex("vde0").expect("vde0 exists");
    let i1 = smol.if_nametoindex("vde1").expect("vde1 exists");
    assert_ne!(i0, i1);
    assert!(smol.if_nametoindex("vde2").is_err(), "no third interface");
    configure_smol(&smol, "vde0", "10.0.1.1", "fd00:1::1");
    configure_smol(&smol, "vde1", "10.0.2.1", "fd00:2::1");
    let pa = vdestack(&a, "10.0.1.2", "fd00:1::2");
    let pb = vdestack(&b, "10.0.2.2", "fd00:2::2");
    for (peer, s4, p4, s6, p6) in [
        (&pa, "10.0.1.1", "10.0.1.2", "fd00:1::1", "fd00:1::2"),
        (&pb, "10.0.2.1", "10.0.2.2", "fd00:2::1", "fd00:2::2"),
    ] {
        for (mine, theirs) in [(ip(s4), ip(p4)), (ip(s6), ip(p6))] {
            tcp_exchange(peer, &smol, SocketAddr::new(theirs, 7400));
            tcp_exchange(&smol, peer, SocketAddr::new(mine, 7401));
            let s = dgram(&smol, SocketAddr::new(mine, 7402));
            let v = dgram(peer, SocketAddr::new(theirs, 7403));
            let what = format!("{mine} ↔ {theirs}");
            deliver(&s, v.local_addr().unwrap(), &v, what.as_bytes(), &what);
            deliver(&v, s.local_addr().unwrap(), &s, what.as_bytes(), &what);
            // A socket on the unspecified address answers on the interface it was reached on.
            let any = dgram(
                &smol,
                if mine.is_ipv4() {
                    addr("0.0.0.0:7404")
                } else {
                    addr("[::]:7404")
                },
            );
            deliver(&v, SocketAddr::new(mine, 7404), &any, b"to any", &what);
            // Its source is the address of the interface toward the peer.
            let src = SocketAddr::new(mine, 7404);
            deliver_from(&any, v.local_addr().unwrap(), &v, b"from any", &what, src);
        }
    }
}

/// A named interface: `eth1:vde://…` next to an unnamed one (`vde0`), traffic on both.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn smoltcp_with_a_named_vnl() {
    setup();
    let (a, b) = (Switch::start(), Switch::start());
    let named = format!("eth1:{}", b.vnl());
    let smol = Stack::new("smoltcp", &[a.vnl(), named])
        .unwrap_or_else(|e| panic!("newstack smoltcp with eth1: {e}"));
    assert!(smol.if_nametoindex("vde0").is_ok(), "vde0 exists");
    assert!(smol.if_nametoindex("eth1").is_ok(), "eth1 exists");
    assert!(
        smol.if_nametoindex("vde1").is_err(),
        "the second one is named eth1"
    );
    configure_smol(&smol, "vde0", "10.0.1.1", "fd00:1::1");
    configure_smol(&smol, "eth1", "10.0.2.1", "fd00:2::1");
    let pa = vdestack(&a, "10.0.1.2", "fd00:1::2");
    let pb = vdestack(&b, "10.0.2.2", "fd00:2::2");
    tcp_exchange(&pa, &smol, addr("10.0.1.2:7410"));
    tcp_exchange(&pb, &smol, addr("10.0.2.2:7410"));
    tcp_exchange(&smol, &pb, addr("[fd00:2::1]:7411"));
    let s = dgram(&smol, addr("10.0.2.1:7412"));
    let v = dgram(&pb, addr("10.0.2.2:7413"));
    deliver(&s, addr("10.0.2.2:7413"), &v, b"over eth1", "eth1 out");
    deliver(&v, addr("10.0.2.1:7412"), &s, b"over eth1", "eth1 in");
}

// ---------------------------------------------------------------- 3. no busy loop

/// utime + stime of process `pid` (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // After the command name in parentheses: state is field 3; utime, stime are 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// CPU time `pid` used over one second, in milliseconds.
fn cpu_ms_over_one_second(pid: u32) -> u64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    (cpu_ticks(pid) - t0) * 1000 / hz
}

/// A loose resource bound, not a speed check: an idle host sleeps.
const IDLE_CPU_MS: u64 = 100;

/// An idle smoltcp host (a listener, a bound UDP socket, an established connection over its
/// loopback, an interface up) sleeps: near-zero CPU over one second.
#[test]
fn idle_smoltcp_host_does_not_spin() {
    setup();
    let sw = Switch::start();
    let smol = smoltcp(&sw);
    let pid = smol.pid().expect("host pid");
    let l = listener(&smol, addr("10.0.0.1:7500"));
    let _u = dgram(&smol, addr("10.0.0.1:7501"));
    let _u6 = dgram(&smol, addr("[::]:7502"));
    let _c = connect(&smol, addr("10.0.0.1:7500"));
    let (_s, _) = accept(&l);
    std::thread::sleep(Duration::from_millis(300));
    let ms = cpu_ms_over_one_second(pid);
    println!("proxied_udp_and_idle: idle smoltcp host: {ms} ms of CPU in 1 s");
    assert!(
        ms < IDLE_CPU_MS,
        "an idle smoltcp host used {ms} ms of CPU in 1 s (busy loop?)"
    );
}

/// Builds the rwwrap C plug-in (host pump) into a directory of this test binary and points
/// `IOTH_PLUGIN_PATH` at it, once, before any stack exists: every test calls this first.
fn setup() {
    stacks::build_test_plugins(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("proxied-gaps-plugins"),
    );
}

/// An idle host-pump host (the rwwrap C plug-in: a listener, a UDP socket, an established
/// connection, all pumped by the host) sleeps: near-zero CPU over one second.
#[test]
fn idle_host_pump_host_does_not_spin() {
    setup();
    let st =
        Stack::new("rwwrap", &[] as &[&str]).unwrap_or_else(|e| panic!("newstack rwwrap: {e}"));
    let pid = st.pid().expect("host pid");
    let l = listener(&st, addr("127.0.0.1:0"));
    let at = l.local_addr().unwrap();
    let u = st.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    u.bind(&addr("127.0.0.1:0")).unwrap();
    let mut k = std::net::TcpStream::connect(at).unwrap();
    let (mut s, _) = accept(&l);
    k.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ms = cpu_ms_over_one_second(pid);
    println!("proxied_udp_and_idle: idle host-pump host: {ms} ms of CPU in 1 s");
    assert!(
        ms < IDLE_CPU_MS,
        "an idle host-pump host used {ms} ms of CPU in 1 s (busy loop?)"
    );
}

// ---------------------------------------------------------------- 4. empty datagram, loopback

/// The empty datagram, both ways, IPv4 and IPv6, unconnected (`send_to` with 0 bytes) and
/// connected (`send` with 0 bytes): it arrives as a 0-byte datagram from the sender.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn empty_udp_datagram_both_ways() {
    setup();
    let n = net();
    for v6 in [false, true] {
        let (s_at, v_at) = if v6 {
            (addr("[fd00::1]:7600"), addr("[fd00::2]:7601"))
        } else {
            (addr("10.0.0.1:7600"), addr("10.0.0.2:7601"))
        };
        let s = dgram(&n.smol, s_at);
        let v = dgram(&n.vde, v_at);
        deliver(&s, v_at, &v, b"", "empty smoltcp → vdestack");
        deliver(&v, s_at, &s, b"", "empty vdestack → smoltcp");
        // Something after it: the empty one was not a marker of anything.
        deliver(&s, v_at, &v, b"after", "after the empty one");
        // Connected: bare payloads, the empty one included.
        s.connect(&v_at).unwrap();
        deliver_with(|| s.send(b""), &v, b"", "connected: empty out", s_at);
        deliver_with(
            || v.send_to(b"", &s_at),
            &s,
            b"",
            "connected: empty in",
            v_at,
        );
        deliver_with(
            || v.send_to(b"x", &s_at),
            &s,
            b"x",
            "connected: after",
            v_at,
        );
        // A plain recv(2) on the application's fd sees the empty datagram as 0 bytes.
        v.send_to(b"", &s_at).unwrap();
        assert!(wait_for(s.as_fd(), PollFlags::POLLIN, WAIT).contains(PollFlags::POLLIN));
        let mut buf = [0u8; 16];
        // SAFETY: a plain recv on an open fd; buf is writable for its length.
        let r = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        assert_eq!(r, 0, "plain recv of the empty datagram");
    }
}

/// The stack's own loopback through host and client: a listener on 127.0.0.1 (and ::1, and
/// the stack's own address) and a connection to it from the same stack; UDP on 127.0.0.1.
#[test]
fn smoltcp_loopback_through_host_and_client() {
    setup();
    let sw = Switch::start();
    let smol = smoltcp(&sw);
    tcp_exchange(&smol, &smol, addr("127.0.0.1:7700"));
    tcp_exchange(&smol, &smol, addr("[::1]:7701"));
    tcp_exchange(&smol, &smol, addr("10.0.0.1:7702"));
    // 100 KiB through lo and back, in order.
    let l = listener(&smol, addr("127.0.0.1:7703"));
    let mut c = connect(&smol, addr("127.0.0.1:7703"));
    let (mut s, _) = accept(&l);
    let data = pattern(100 * 1024, 3);
    let d2 = data.clone();
    let t = std::thread::spawn(move || {
        c.write_all(&d2).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        c
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got == data, "100 KiB over lo: {} bytes differ", got.len());
    drop(t.join().unwrap());
    let a = dgram(&smol, addr("127.0.0.1:7704"));
    let b = dgram(&smol, addr("127.0.0.1:0"));
    deliver(&b, addr("127.0.0.1:7704"), &a, b"over lo", "UDP over lo");
    deliver(&b, addr("127.0.0.1:7704"), &a, b"", "empty over lo");
}

// ---------------------------------------------------------------- 5. a neighbour that never answers

/// Waits (bounded by `bound`) until every one of `want` arrived once on `rx`; what is left.
fn await_all(rx: &Socket, want: &[&[u8]], bound: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + bound;
    let mut left: Vec<Vec<u8>> = want.iter().map(|m| m.to_vec()).collect();
    while !left.is_empty() && Instant::now() < deadline {
        match recv_one(rx) {
            Ok((got, _)) => {
                if let Some(i) = left.iter().position(|m| *m == got) {
                    left.remove(i);
                }
            }
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("recv_from: {e}"),
        }
    }
    left
}

/// smoltcp keeps a datagram whose neighbour never answers at the head of its socket and would
/// hold every later one of that socket forever; the plug-in gives it up after about 3 s, as
/// Linux does, and what was queued behind it to a peer that answers leaves.
fn unanswered_neighbour(v6: bool) {
    let n = net();
    let (s_at, v_at, nobody) = if v6 {
        (
            addr("[fd00::1]:7800"),
            addr("[fd00::2]:7801"),
            addr("[fd00::99]:7801"),
        )
    } else {
        (
            addr("10.0.0.1:7800"),
            addr("10.0.0.2:7801"),
            addr("10.0.0.99:7801"),
        )
    };
    let s = dgram(&n.smol, s_at);
    let v = dgram(&n.vde, v_at);
    // The peer's neighbour entry first: only the one to nobody waits for discovery below.
    deliver(&s, v_at, &v, b"warm-up", "warm-up");
    // One to nobody, then one to the peer, each sent once.
    let t0 = Instant::now();
    s.send_to(b"to nobody", &nobody).unwrap();
    s.send_to(b"after nobody", &v_at).unwrap();
    let left = await_all(&v, &[b"after nobody"], Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "a datagram queued behind one to {nobody} (no neighbour) never left"
    );
    println!(
        "proxied_udp_and_idle: {nobody} unanswered: the next datagram arrived after {:?}",
        t0.elapsed()
    );
    // Several to nobody and several to the peer, interleaved: the ones to nobody are given up
    // together, every one to the peer arrives (once each, sent once).
    let msgs: [&[u8]; 3] = [b"one", b"two", b"three"];
    for m in msgs {
        s.send_to(b"to nobody again", &nobody).unwrap();
        s.send_to(m, &v_at).unwrap();
    }
    let left = await_all(&v, &msgs, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "behind datagrams to {nobody}: {left:?} never arrived"
    );
    // The socket works as before, both ways, at once.
    let t1 = Instant::now();
    s.send_to(b"afterwards", &v_at).unwrap();
    assert!(
        await_all(&v, &[b"afterwards"], TRY * 2).is_empty(),
        "afterwards: lost"
    );
    assert!(t1.elapsed() < TRY * 2);
    deliver(&v, s_at, &s, b"in", "vdestack → smoltcp afterwards");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_datagram_to_an_unanswered_neighbour_does_not_block_the_socket_ipv4() {
    setup();
    unanswered_neighbour(false);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_datagram_to_an_unanswered_neighbour_does_not_block_the_socket_ipv6() {
    setup();
    unanswered_neighbour(true);
}

// ---------------------------------------------------------------- 6. oversized datagrams

fn is_emsgsize(r: io::Result<usize>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE))
}

/// A datagram larger than the largest UDP payload fails with `EMSGSIZE` in the client library
/// (`send_to`, `send` and `Write` once connected), as on a kernel socket, instead of being
/// dropped silently by the stack; the largest one still goes, and so do later ones. Over the
/// stack's own loopback (no VNL, no root): IPv4, IPv6, and a v4-mapped peer of an IPv6 socket.
#[test]
fn oversized_udp_datagram_fails_with_emsgsize() {
    setup();
    let st = Stack::new("smoltcp", &[] as &[&str]).expect("newstack smoltcp without VNL");
    for (at, from, max) in [
        (addr("127.0.0.1:7900"), addr("127.0.0.1:0"), MAX_V4),
        (addr("[::1]:7901"), addr("[::1]:0"), MAX_V6),
        (addr("[::ffff:127.0.0.1]:7902"), addr("[::]:0"), MAX_V4),
    ] {
        let rx = if at.is_ipv6() && from.ip().is_unspecified() {
            dgram(&st, addr("[::]:7902"))
        } else {
            dgram(&st, at)
        };
        let mut tx = dgram(&st, from);
        let big = pattern(max + 1, 1);
        assert!(
            is_emsgsize(tx.send_to(&big, &at)),
            "send_to {} bytes to {at}",
            big.len()
        );
        let huge = pattern(70000, 2);
        assert!(
            is_emsgsize(tx.send_to(&huge, &at)),
            "send_to 70000 bytes to {at}"
        );
        let m = pattern(max, 3);
        // The source a receiver sees: the destination's address (of `lo`), the sender's port.
        let src = SocketAddr::new(at.ip(), tx.local_addr().unwrap().port());
        deliver_from(&tx, at, &rx, &m, &format!("{max} bytes to {at}"), src);
        // Connected: bare payloads through `send` and `Write`.
        tx.connect(&at).unwrap();
        assert!(
            is_emsgsize(tx.send(&big)),
            "send {} bytes to {at}",
            big.len()
        );
        assert!(
            is_emsgsize(tx.write(&big)),
            "write {} bytes to {at}",
            big.len()
        );
        assert!(
            is_emsgsize(tx.send_to(&big, &at)),
            "connected send_to to {at}"
        );
        deliver_with(|| tx.send(&m), &rx, &m, "connected, largest", src);
        deliver_with(|| tx.send(b"small"), &rx, b"small", "connected, after", src);
        // Nothing else arrived: no oversized datagram went through.
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match recv_one(&rx) {
            Err(e) if timed_out(&e) => {}
            Ok((got, _)) => panic!("{at}: an unexpected {}-byte datagram", got.len()),
            Err(e) => panic!("{at}: recv_from: {e}"),
        }
    }
}

/// The C ABI's data and socket calls of `ioth.h` that `ioth::capi` does not name (the client
/// library exports them; linked from it), and safe wrappers of them over slices: each returns
/// the call's value and, if it failed, its errno.
mod c {
    use std::io;

    use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};
    use socket2::SockAddr;

    extern "C" {
        fn ioth_bind(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int;
        fn ioth_connect(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int;
        fn ioth_send(fd: c_int, b: *const c_void, n: size_t, flags: c_int) -> ssize_t;
        fn ioth_sendto(
            fd: c_int,
            b: *const c_void,
            n: size_t,
            flags: c_int,
            to: *const sockaddr,
            len: socklen_t,
        ) -> ssize_t;
        fn ioth_sendmsg(fd: c_int, m: *const msghdr, flags: c_int) -> ssize_t;
        fn ioth_write(fd: c_int, b: *const c_void, n: size_t) -> ssize_t;
        fn ioth_writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
        fn ioth_recv(fd: c_int, b: *mut c_void, n: size_t, flags: c_int) -> ssize_t;
    }

    fn out(r: isize) -> (isize, Option<i32>) {
        let e = (r < 0).then(|| io::Error::last_os_error().raw_os_error().unwrap_or(0));
        (r, e)
    }

    fn iov(bufs: &[&[u8]]) -> Vec<iovec> {
        bufs.iter()
            .map(|b| iovec {
                iov_base: b.as_ptr() as *mut c_void,
                iov_len: b.len(),
            })
            .collect()
    }

    pub fn bind(fd: c_int, a: &SockAddr) -> (isize, Option<i32>) {
        // SAFETY: a is a valid sockaddr of its length.
        out(unsafe { ioth_bind(fd, a.as_ptr().cast(), a.len()) } as isize)
    }

    pub fn connect(fd: c_int, a: &SockAddr) -> (isize, Option<i32>) {
        // SAFETY: a is a valid sockaddr of its length.
        out(unsafe { ioth_connect(fd, a.as_ptr().cast(), a.len()) } as isize)
    }

    pub fn send(fd: c_int, b: &[u8]) -> (isize, Option<i32>) {
        // SAFETY: b is readable for its length.
        out(unsafe { ioth_send(fd, b.as_ptr().cast(), b.len(), 0) })
    }

    pub fn write(fd: c_int, b: &[u8]) -> (isize, Option<i32>) {
        // SAFETY: b is readable for its length.
        out(unsafe { ioth_write(fd, b.as_ptr().cast(), b.len()) })
    }

    pub fn sendto(fd: c_int, b: &[u8], to: &SockAddr) -> (isize, Option<i32>) {
        // SAFETY: b is readable for its length; to is a valid sockaddr of its length.
        out(unsafe {
            ioth_sendto(
                fd,
                b.as_ptr().cast(),
                b.len(),
                0,
                to.as_ptr().cast(),
                to.len(),
            )
        })
    }

    pub fn writev(fd: c_int, bufs: &[&[u8]]) -> (isize, Option<i32>) {
        let v = iov(bufs);
        // SAFETY: v holds v.len() iovecs of readable buffers.
        out(unsafe { ioth_writev(fd, v.as_ptr(), v.len() as c_int) })
    }

    pub fn sendmsg(fd: c_int, bufs: &[&[u8]], to: Option<&SockAddr>) -> (isize, Option<i32>) {
        let mut v = iov(bufs);
        // SAFETY: msghdr is plain data; zero is a valid empty header.
        let mut m: msghdr = unsafe { std::mem::zeroed() };
        m.msg_iov = v.as_mut_ptr();
        m.msg_iovlen = v.len();
        if let Some(a) = to {
            m.msg_name = a.as_ptr() as *mut c_void;
            m.msg_namelen = a.len();
        }
        // SAFETY: m describes live readable buffers and, if any, a valid address.
        out(unsafe { ioth_sendmsg(fd, &m, 0) })
    }

    pub fn recv(fd: c_int, b: &mut [u8]) -> (isize, Option<i32>) {
        // SAFETY: b is writable for its length.
        out(unsafe { ioth_recv(fd, b.as_mut_ptr().cast(), b.len(), 0) })
    }
}

/// The C ABI's proxied branch: `ioth_sendto`/`ioth_sendmsg` (unconnected) and `ioth_send`/
/// `ioth_write`/`ioth_writev`/`ioth_sendto`/`ioth_sendmsg` (connected) fail with `EMSGSIZE` on
/// a datagram larger than the largest UDP payload; the largest one goes.
#[test]
fn c_oversized_udp_datagram_fails_with_emsgsize() {
    setup();
    // SAFETY: NUL-terminated name, NULL VNL.
    let p = unsafe { ioth::capi::ioth_newstack(c"smoltcp".as_ptr(), std::ptr::null()) };
    assert!(!p.is_null(), "ioth_newstack smoltcp");
    let refused = (-1, Some(libc::EMSGSIZE));
    for (dom, at, max) in [
        (libc::AF_INET, addr("127.0.0.1:7910"), MAX_V4),
        (libc::AF_INET6, addr("[::1]:7911"), MAX_V6),
    ] {
        let sa = socket2::SockAddr::from(at);
        // SAFETY: p is a live stack until ioth_delstack below.
        let rx = unsafe { ioth::capi::ioth_msocket(p, dom, libc::SOCK_DGRAM, 0) };
        // SAFETY: as above.
        let tx = unsafe { ioth::capi::ioth_msocket(p, dom, libc::SOCK_DGRAM, 0) };
        assert!(rx >= 0 && tx >= 0, "ioth_msocket");
        assert_eq!(c::bind(rx, &sa), (0, None), "bind {at}");
        let big = pattern(max + 1, 4);
        let halves: [&[u8]; 2] = [&big[..max / 2], &big[max / 2..]];
        let ok = pattern(max, 5);
        assert_eq!(c::sendto(tx, &big, &sa), refused, "ioth_sendto {at}");
        assert_eq!(
            c::sendmsg(tx, &halves, Some(&sa)),
            refused,
            "ioth_sendmsg {at}"
        );
        let n = ok.len() as isize;
        assert_eq!(
            c::sendto(tx, &ok, &sa),
            (n, None),
            "ioth_sendto the largest to {at}"
        );
        // Connected right after a send the stack may not have read yet (tx was not even bound):
        // that one still goes out as it was written, with its address header.
        assert_eq!(c::connect(tx, &sa), (0, None), "connect {at}");
        assert_eq!(c::send(tx, &big), refused, "ioth_send {at}");
        assert_eq!(c::write(tx, &big), refused, "ioth_write {at}");
        assert_eq!(c::writev(tx, &halves), refused, "ioth_writev {at}");
        assert_eq!(
            c::sendto(tx, &big, &sa),
            refused,
            "connected ioth_sendto {at}"
        );
        assert_eq!(
            c::sendmsg(tx, &halves, None),
            refused,
            "connected ioth_sendmsg {at}"
        );
        assert_eq!(
            c::send(tx, b"tail"),
            (4, None),
            "ioth_send after the refusals"
        );
        // What arrives: the largest one, then the tail; nothing else.
        let mut buf = vec![0u8; 70000];
        for (want, what) in [(&ok[..], "the largest"), (&b"tail"[..], "the tail")] {
            // SAFETY: rx stays open for the wait.
            let fd = unsafe { BorrowedFd::borrow_raw(rx) };
            let ev = wait_for(fd, PollFlags::POLLIN, WAIT);
            assert!(ev.contains(PollFlags::POLLIN), "{at}: {what} never arrived");
            let (r, e) = c::recv(rx, &mut buf);
            assert!(r >= 0, "ioth_recv: {e:?}");
            let r = r as usize;
            assert!(&buf[..r] == want, "{at}: {what}: a {r}-byte datagram");
        }
        assert_eq!(ioth::capi::ioth_close(tx), 0);
        assert_eq!(ioth::capi::ioth_close(rx), 0);
    }
    // SAFETY: p is live; freed by this call.
    assert_eq!(unsafe { ioth::capi::ioth_delstack(p) }, 0);
}
