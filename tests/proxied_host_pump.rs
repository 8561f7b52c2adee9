//! Proxied fds pumped by the host (docs/proxied.md, "proxied, host pump"): a C plug-in with its
//! own read/write (`tests/c/plugins/ioth_rwwrap.c`, kernel sockets of the machine's loopback
//! read and written through the plug-in's functions) through a real host and the client
//! library. TCP with plain read/write/poll, connect refused and reset, UDP with and without
//! connect, bulk both ways with a flush on close, no fd left behind, the host killed
//! mid-transfer, every C call of the ioth ABI, and the audit trail's lines for the control calls
//! and proxy ids of such a stack.
//!
//! No root needed: traffic stays on 127.0.0.1. Every wait is bounded; rates are printed, never
//! asserted.
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use ioth::{Socket, Stack};
use ioth_tests::cprog::{compile_repo_c, run_ok};
use ioth_tests::killed_host::kill_mid_transfer;
use ioth_tests::pattern::{Pattern, CHUNK, PROFILE};
use ioth_tests::sock::{accept, connect, listener, ready_now, stream, wait_for, WAIT};
use ioth_tests::stacks::{self, addr};
use ioth_tests::vde::TempDir;
use nix::poll::PollFlags;

/// The rwwrap plug-in's private getsockopt: bytes it read and wrote.
const RWWRAP_LEVEL: i32 = 0x7277;
const RWWRAP_COUNTS: i32 = 1;

/// Builds the rwwrap plug-in and points `IOTH_PLUGIN_PATH` at it, once, before any stack
/// exists: every test calls this first.
fn setup() {
    stacks::build_test_plugins(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("proxied-plugins"));
}

/// A stack of the rwwrap plug-in (kernel sockets of this machine's loopback, read and written
/// by the plug-in's own functions, pumped by the host).
fn rwwrap() -> Stack {
    setup();
    Stack::new("rwwrap", &[] as &[&str]).unwrap_or_else(|e| panic!("newstack rwwrap: {e}"))
}

/// The bytes the rwwrap stack's own functions read and wrote, through any of its sockets.
fn rwwrap_counts(s: &Socket) -> (u64, u64) {
    let v = s
        .getsockopt(RWWRAP_LEVEL, RWWRAP_COUNTS, 16)
        .expect("counts");
    assert_eq!(v.len(), 16);
    (
        u64::from_ne_bytes(v[..8].try_into().unwrap()),
        u64::from_ne_bytes(v[8..].try_into().unwrap()),
    )
}

fn plain_read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is writable for its length; fd is open.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn plain_write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is readable for its length; fd is open.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[test]
fn host_pump_tcp_echo_with_plain_read_write_poll() {
    let st = rwwrap();
    let l = listener(&st, addr("127.0.0.1:0"));
    assert!(
        l.is_proxied(),
        "a plug-in with its own read/write is proxied"
    );
    let at = l.local_addr().unwrap();
    assert_ne!(at.port(), 0);
    assert!(
        !ready_now(l.as_fd(), PollFlags::POLLIN),
        "nothing pending yet"
    );
    // A plain kernel client of the machine's loopback.
    let mut k = std::net::TcpStream::connect(at).unwrap();
    k.set_read_timeout(Some(WAIT)).unwrap();
    assert!(
        wait_for(l.as_fd(), PollFlags::POLLIN, WAIT).contains(PollFlags::POLLIN),
        "the listener turns readable with a connection pending"
    );
    let (s, peer) = l.accept().unwrap();
    assert_eq!(peer, k.local_addr().unwrap());
    assert_eq!(s.peer_addr().unwrap(), peer);
    assert!(!ready_now(l.as_fd(), PollFlags::POLLIN), "token consumed");
    let mut sent = 0u64;
    for i in 0..50 {
        let msg = format!("message {i} through the host's pump");
        k.write_all(msg.as_bytes()).unwrap();
        sent += msg.len() as u64;
        let mut buf = vec![0u8; msg.len()];
        let mut got = 0;
        while got < buf.len() {
            assert!(wait_for(s.as_fd(), PollFlags::POLLIN, WAIT).contains(PollFlags::POLLIN));
            got += plain_read(s.as_fd(), &mut buf[got..]).unwrap();
        }
        assert_eq!(buf, msg.as_bytes());
        assert!(ready_now(s.as_fd(), PollFlags::POLLOUT));
        assert_eq!(plain_write(s.as_fd(), &buf).unwrap(), buf.len());
        let mut back = vec![0u8; msg.len()];
        k.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    let (read, written) = rwwrap_counts(&s);
    assert!(
        read >= sent && written >= sent,
        "plug-in counts {read}/{written}, sent {sent}"
    );
    // EOF from the kernel side reaches the proxied fd; ours reaches the kernel side.
    k.shutdown(Shutdown::Write).unwrap();
    assert!(!wait_for(s.as_fd(), PollFlags::POLLIN, WAIT).is_empty());
    let mut b = [0u8; 8];
    assert_eq!(plain_read(s.as_fd(), &mut b).unwrap(), 0);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(k.read(&mut b).unwrap(), 0);
}

#[test]
fn host_pump_tcp_client_connect_refused_and_reset() {
    let st = rwwrap();
    let kl = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = kl.local_addr().unwrap();
    // A blocking connect through the pump: EINPROGRESS in the host, POLLOUT here.
    let c = stream(&st, &at);
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.connect(&at).expect("blocking connect");
    let (mut k, _) = kl.accept().unwrap();
    assert_eq!(c.peer_addr().unwrap(), at);
    (&c).write_all(b"hi").unwrap();
    let mut b = [0u8; 2];
    k.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hi");
    // The kernel side resets: ECONNRESET on the proxied fd.
    socket2::SockRef::from(&k)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(k);
    assert!(!wait_for(c.as_fd(), PollFlags::POLLIN, WAIT).is_empty());
    let e = (&c).read(&mut b).expect_err("read after reset");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{e}");
    // Refused, blocking and non-blocking.
    drop(kl);
    let c = stream(&st, &at);
    let e = c.connect(&at).expect_err("nobody listens");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
    let c = stream(&st, &at);
    c.set_nonblocking(true).unwrap();
    match c.connect(&at) {
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            assert!(!wait_for(c.as_fd(), PollFlags::POLLOUT, WAIT).is_empty());
            let e = c.take_error().unwrap().expect("an error");
            assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED)),
        Ok(()) => panic!("connect to a closed port succeeded"),
    }
}

#[test]
fn host_pump_udp_with_and_without_connect() {
    let st = rwwrap();
    let u = st.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    u.bind(&addr("127.0.0.1:0")).unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    let at = u.local_addr().unwrap();
    let k = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    k.set_read_timeout(Some(WAIT)).unwrap();
    for i in 0..20 {
        let msg = format!("datagram {i}");
        k.send_to(msg.as_bytes(), at).unwrap();
        let mut buf = [0u8; 100];
        let (n, from) = u.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg.as_bytes());
        assert_eq!(from, k.local_addr().unwrap());
        u.send_to(&buf[..n], &from).unwrap();
        let (n, from) = k.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg.as_bytes());
        assert_eq!(from, at);
    }
    // Boundaries are kept, the empty datagram included.
    for m in [&b""[..], b"a", &[9u8; 9000]] {
        k.send_to(m, at).unwrap();
        let mut buf = vec![0u8; 10000];
        let (n, _) = u.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], m);
    }
    // Connected: plain send/recv carry bare payloads.
    u.connect(&k.local_addr().unwrap()).unwrap();
    (&u).write_all(b"bare").unwrap();
    let mut buf = [0u8; 100];
    let (n, _) = k.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"bare");
    k.send_to(b"back", at).unwrap();
    let n = (&u).read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"back");
    let (read, written) = rwwrap_counts(&u);
    assert!(read > 0 && written > 0);
}

#[test]
fn host_pump_bulk_both_ways_and_close_flushes() {
    let st = rwwrap();
    let chunks = 32 * 1024 * 1024 / CHUNK;
    // kernel → proxied, then proxied → kernel, through the pump, with a checksum.
    let l = listener(&st, addr("127.0.0.1:0"));
    let at = l.local_addr().unwrap();
    let src = std::thread::spawn(move || {
        let mut k = std::net::TcpStream::connect(at).unwrap();
        let mut p = Pattern::new();
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..chunks {
            p.fill(&mut buf);
            p.add(&buf);
            k.write_all(&buf).unwrap();
        }
        k.shutdown(Shutdown::Write).unwrap();
        p.checksum()
    });
    let (s, _) = accept(&l);
    let start = Instant::now();
    let mut p = Pattern::new();
    let mut buf = vec![0u8; CHUNK];
    for _ in 0..chunks {
        (&s).read_exact(&mut buf).unwrap();
        p.add(&buf);
    }
    assert_eq!((&s).read(&mut buf).unwrap(), 0);
    let inbound = (chunks * CHUNK) as f64 / 1e6 / start.elapsed().as_secs_f64();
    assert_eq!(src.join().unwrap(), p.checksum());
    // proxied → kernel; the Socket is dropped right after the last write: the host hands the
    // plug-in everything before it closes.
    let kl = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let kat = kl.local_addr().unwrap();
    let sink = std::thread::spawn(move || {
        let (mut k, _) = kl.accept().unwrap();
        k.set_read_timeout(Some(WAIT)).unwrap();
        let mut p = Pattern::new();
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..chunks {
            k.read_exact(&mut buf).unwrap();
            p.add(&buf);
        }
        assert_eq!(k.read(&mut buf).unwrap(), 0, "EOF after the data");
        p.checksum()
    });
    let c = connect(&st, kat);
    let start = Instant::now();
    let mut p = Pattern::new();
    for _ in 0..chunks {
        p.fill(&mut buf);
        p.add(&buf);
        (&c).write_all(&buf).unwrap();
    }
    drop(c);
    assert_eq!(sink.join().unwrap(), p.checksum());
    let outbound = (chunks * CHUNK) as f64 / 1e6 / start.elapsed().as_secs_f64();
    println!(
        "proxied: 32 MiB through the host pump (rwwrap, 127.0.0.1): in {inbound:.1} MB/s, out \
         {outbound:.1} MB/s ({PROFILE})"
    );
}

#[test]
fn host_pump_sockets_leave_no_fd_behind() {
    let st = rwwrap();
    let base = st.stats().unwrap().host_fds;
    for _ in 0..50 {
        let l = listener(&st, addr("127.0.0.1:0"));
        let at = l.local_addr().unwrap();
        let k = std::net::TcpStream::connect(at).unwrap();
        let (s, _) = accept(&l);
        drop((s, l, k));
        let u = st.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        drop(u);
    }
    assert!(
        ioth_tests::proc::wait_until(WAIT, || st.stats().unwrap().host_fds <= base),
        "host fds: {base} before, {} after",
        st.stats().unwrap().host_fds
    );
    assert_eq!(st.open_sockets(), 0);
    st.delete().map_err(ioth::Error::from).expect("delstack");
}

// ---------------------------------------------------------------- a host killed mid-transfer

#[test]
fn killed_host_pump_host_mid_transfer_gives_eof_or_reset() {
    let st = rwwrap();
    let kl = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = connect(&st, kl.local_addr().unwrap());
    let (k, _) = kl.accept().unwrap();
    kill_mid_transfer(st.pid().unwrap(), c, move || {
        let mut k = k;
        k.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let buf = vec![2u8; CHUNK];
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline && k.write_all(&buf).is_ok() {}
    });
    // The stack is gone; deleting it succeeds once its sockets are closed.
    st.delete()
        .map_err(ioth::Error::from)
        .expect("delstack of a dead stack");
}

// ---------------------------------------------------------------- C programs

#[test]
fn c_abi_every_call_through_the_host_pump() {
    // tests/c/echo.c (TCP and UDP on 127.0.0.1 with every ioth_X) on the rwwrap plug-in.
    setup();
    let dir = TempDir::new("proxied-echo");
    let exe = compile_repo_c("tests/c", "echo", dir.path());
    run_ok(&exe, &["rwwrap"], Duration::from_secs(60));
}

// ---------------------------------------------------------------- audit

#[test]
fn audit_trail_names_control_calls_and_ids() {
    setup();
    let dir = TempDir::new("proxied-audit");
    let file = dir.path().join("trail.jsonl");
    let st = Stack::builder("rwwrap")
        .audit(&file)
        .build()
        .expect("newstack");
    let l = listener(&st, addr("127.0.0.1:0"));
    let id = l.proxy_id().expect("proxied");
    let at = l.local_addr().unwrap();
    let mut k = std::net::TcpStream::connect(at).unwrap();
    k.set_read_timeout(Some(WAIT)).unwrap();
    let (s, _) = accept(&l);
    let sid = s.proxy_id().unwrap();
    // A known number of bytes each way through the host's pump, then the close.
    let (out, back) = (vec![7u8; 3000], vec![9u8; 1200]);
    let mut sent = 0;
    while sent < out.len() {
        wait_for(s.as_fd(), PollFlags::POLLOUT, WAIT);
        sent += s.send(&out[sent..]).unwrap();
    }
    let mut got = vec![0u8; out.len()];
    k.read_exact(&mut got).unwrap();
    k.write_all(&back).unwrap();
    let mut buf = vec![0u8; back.len()];
    let mut n = 0;
    while n < back.len() {
        wait_for(s.as_fd(), PollFlags::POLLIN, WAIT);
        n += s.recv(&mut buf[n..]).unwrap();
    }
    drop((s, l));
    let _ = st.stats().unwrap(); // one more round trip: the Close lines are written
    let text = std::fs::read_to_string(&file).unwrap();
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    assert!(
        has(&format!("\"fd_kind\":\"proxied\",\"id\":{id}")),
        "{text}"
    );
    assert!(
        has(&format!(
            "\"args\":{{\"id\":{id},\"op\":\"bind\",\"addr\":\"127.0.0.1:0\"}}"
        )),
        "{text}"
    );
    assert!(has("\"op\":\"listen\",\"backlog\":64"), "{text}");
    assert!(has(&format!("\"request\":\"Control\",\"args\":{{\"id\":{id},\"op\":\"accept\"}},\"result\":\"ok\",\"id\":{sid},\"peer\":\"127.0.0.1:")), "{text}");
    assert!(
        has(&format!(
            "\"request\":\"Close\",\"args\":{{\"id\":{sid}}},\"result\":\"ok\""
        )),
        "{text}"
    );
    assert!(
        has(&format!(
            "\"request\":\"Close\",\"args\":{{\"id\":{id}}},\"result\":\"ok\""
        )),
        "{text}"
    );
    // The pump's counts of the accepted connection, at its close.
    let closed: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "proxied_close" && e["id"] == sid)
        .unwrap_or_else(|| panic!("no proxied_close of {sid}: {text}"));
    assert_eq!(
        closed["bytes"],
        serde_json::json!({"sent": 3000, "received": 1200}),
        "{closed}"
    );
}
