//! Native sockets handed over in batches (`StackBuilder::socket_batch`, `IOTH_SOCKET_BATCH`):
//! a kind of socket asked for again on a stack comes several to a `Sockets` reply, the spares
//! kept by the application until asked for. Real kernel stacks; traffic on 127.0.0.1 only (the
//! proxied case: two smoltcp stacks on a VDE switch the test starts).
//!
//! What is checked: the sockets are distinct, working, with the flags each asked for; a stack
//! with one socket (or one of each kind) holds no spare; delete and drop close the spares; a
//! child made by `fork()` never gets a spare of its parent; batching off is one request per
//! socket; under the fd limit a batch gives what fits and never fails a socket a single request
//! would have made; proxied stacks make their sockets one at a time.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use ioth::Stack;
use ioth_tests::proc;
use ioth_tests::report::Report;
use ioth_tests::stacks::{self, addr, kernel};
use ioth_tests::vde::Switch;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

const BOUND: Duration = Duration::from_secs(10);
/// What one batch asks for (client/src/link/spares.rs).
const BATCH: usize = 8;

static LOCK: RwLock<()> = RwLock::new(());

/// The lock for a test that does not look at process-wide state.
fn shared() -> RwLockReadGuard<'static, ()> {
    LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// The lock for a test that counts fds, forks or sets environment variables; the fork server
/// started first (it is the application's, not a stack's).
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    let g = LOCK.write().unwrap_or_else(|e| e.into_inner());
    let warm = kernel();
    let pid = warm.pid().unwrap();
    warm.delete().map_err(ioth::Error::from).unwrap();
    assert!(proc::wait_gone(pid, BOUND));
    g
}

/// `SO_COOKIE` of socket `fd`: unique per socket for the kernel's lifetime.
fn cookie(fd: BorrowedFd<'_>) -> Option<u64> {
    let mut v = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: v and len are live and sized as getsockopt(SO_COOKIE) writes them.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut v).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

/// The cookies of every AF_INET socket open in this process.
fn inet_cookies() -> HashSet<u64> {
    let mut out = HashSet::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: n was open a moment ago; a stale number only fails getsockopt.
        let fd = unsafe { BorrowedFd::borrow_raw(n) };
        let mut dom = 0i32;
        let mut len = size_of::<i32>() as libc::socklen_t;
        // SAFETY: dom and len are live and sized for SO_DOMAIN.
        let r = unsafe {
            libc::getsockopt(
                n,
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                (&raw mut dom).cast(),
                &mut len,
            )
        };
        if r == 0 && dom == libc::AF_INET {
            out.extend(cookie(fd));
        }
    }
    out
}

/// `s` echoes one datagram from a plain socket of this process and back, `s` non-blocking or
/// not.
fn echo(s: &UdpSocket) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(BOUND)).unwrap();
    peer.connect(s.local_addr().unwrap()).unwrap();
    s.connect(peer.local_addr().unwrap()).unwrap();
    peer.send(b"ping").unwrap();
    let mut pfd = [nix::poll::PollFd::new(
        s.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(
        nix::poll::poll(&mut pfd, 10_000u16).unwrap(),
        1,
        "no datagram"
    );
    let mut b = [0u8; 16];
    let n = s.recv(&mut b).unwrap();
    s.send(&b[..n]).unwrap();
    let n = peer.recv(&mut b).unwrap();
    assert_eq!(&b[..n], b"ping");
}

#[test]
fn repeated_msockets_are_distinct_working_sockets_with_their_own_flags() {
    let _g = shared();
    let stack = kernel();
    const PER_KIND: usize = 12;
    let kinds = [
        libc::SOCK_DGRAM,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
    ];
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    for round in 0..PER_KIND {
        for ty in kinds {
            let s = stack.msocket(libc::AF_INET, ty, 0).unwrap();
            assert!(seen.insert(cookie(s.as_fd()).unwrap()), "a socket twice");
            let fd = FdFlag::from_bits_truncate(fcntl(&s, FcntlArg::F_GETFD).unwrap());
            assert_eq!(
                fd.contains(FdFlag::FD_CLOEXEC),
                ty & libc::SOCK_CLOEXEC != 0,
                "round {round}, type {ty:#x}: FD_CLOEXEC"
            );
            let fl = OFlag::from_bits_truncate(fcntl(&s, FcntlArg::F_GETFL).unwrap());
            assert_eq!(
                fl.contains(OFlag::O_NONBLOCK),
                ty & libc::SOCK_NONBLOCK != 0,
                "round {round}, type {ty:#x}: O_NONBLOCK"
            );
            s.bind(&addr("127.0.0.1:0")).unwrap();
            let u: UdpSocket = s.into();
            echo(&u);
            kept.push(u);
        }
    }
    let st = stack.stats().unwrap();
    // Per kind: the first socket by a Socket request, the 11 others from two batches of 8.
    let batches = (PER_KIND - 1).div_ceil(BATCH);
    assert_eq!(
        st.requests,
        2 + (kinds.len() * (1 + batches)) as u64,
        "{st:?}"
    );
    let spares = kinds.len() * (1 + batches * BATCH - PER_KIND);
    assert_eq!(st.spare_sockets, spares, "{st:?}");
    assert_eq!(st.sockets_created, (kinds.len() * PER_KIND + spares) as u64);
    // The spares are none of the sockets handed out.
    let held = inet_cookies();
    let spare_cookies: HashSet<u64> = held.difference(&seen).copied().collect();
    assert!(spare_cookies.len() >= spares, "{spare_cookies:?}");
    drop(kept);
    stack.delete().map_err(ioth::Error::from).unwrap();
}

#[test]
fn one_socket_per_kind_holds_no_spare() {
    let _g = exclusive();
    let before = proc::self_fd_count();
    let stack = kernel();
    let one = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let st = stack.stats().unwrap();
    assert_eq!(st.spare_sockets, 0, "{st:?}");
    assert_eq!(st.sockets_created, 1);
    // The channel and the socket, nothing else.
    assert_eq!(proc::self_fd_count(), before + 2);
    // One of each of four kinds: still no spare.
    let more: Vec<_> = [
        (libc::AF_INET, libc::SOCK_STREAM),
        (libc::AF_INET6, libc::SOCK_DGRAM),
        (libc::AF_INET6, libc::SOCK_STREAM),
    ]
    .into_iter()
    .map(|(d, t)| stack.msocket(d, t, 0).unwrap())
    .collect();
    let st = stack.stats().unwrap();
    assert_eq!((st.spare_sockets, st.sockets_created), (0, 4), "{st:?}");
    assert_eq!(proc::self_fd_count(), before + 5);
    drop((one, more));
    stack.delete().map_err(ioth::Error::from).unwrap();
}

#[test]
fn delete_and_drop_close_the_spares() {
    let _g = exclusive();
    let before = proc::self_fd_count();
    for delete in [true, false] {
        let stack = kernel();
        let pid = stack.pid().unwrap();
        for _ in 0..3 {
            drop(stack.msocket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap());
        }
        let spares = stack.stats().unwrap().spare_sockets;
        assert_eq!(spares, BATCH - 2);
        assert_eq!(proc::self_fd_count(), before + 1 + spares);
        if delete {
            stack.delete().map_err(ioth::Error::from).unwrap();
        } else {
            drop(stack);
        }
        assert!(proc::wait_gone(pid, BOUND));
        let mut now = 0;
        let back = proc::wait_until(BOUND, || {
            now = proc::self_fd_count();
            now == before
        });
        assert!(back, "delete {delete}: {before} fds before, {now} after");
    }
}

/// In a child made by `fork()`, an msocket on the parent's stack never hands out one of the
/// parent's spares (both would use one socket): it fails as every call of a fork's copy does,
/// and the child's copies of the spares are closed. The parent's spares are untouched.
#[test]
fn a_forked_child_never_gets_the_parents_spares() {
    let _g = exclusive();
    let theirs = inet_cookies();
    let stack = kernel();
    let a = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let b = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let handed: HashSet<u64> = [&a, &b]
        .iter()
        .map(|s| cookie(s.as_fd()).unwrap())
        .collect();
    let spares: HashSet<u64> = inet_cookies()
        .difference(&theirs)
        .filter(|c| !handed.contains(c))
        .copied()
        .collect();
    assert_eq!(spares.len(), BATCH - 1);
    assert_eq!(stack.stats().unwrap().spare_sockets, BATCH - 1);
    // SAFETY: the child only reads /proc, calls msocket (which must fail without taking a lock
    // another thread may hold) and _exits; glibc's malloc is fork-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0) {
            Ok(s) if cookie(s.as_fd()).is_some_and(|c| spares.contains(&c)) => 3,
            Ok(_) => 4,
            Err(e) if e.errno() != libc::ENETDOWN => 5,
            Err(_) if !inet_cookies().is_disjoint(&spares) => 6,
            Err(_) => 0,
        };
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; status is a live int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    let what = [
        "ok",
        "",
        "",
        "got a spare of its parent",
        "got a socket",
        "another error than ENETDOWN",
        "kept its copies of the spares",
    ];
    let code = libc::WEXITSTATUS(status) as usize;
    assert_eq!(code, 0, "child: {}", what.get(code).unwrap_or(&"?"));
    // The parent still has its spares, and hands them out.
    assert_eq!(stack.stats().unwrap().spare_sockets, BATCH - 1);
    let c = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    assert!(spares.contains(&cookie(c.as_fd()).unwrap()));
    drop((a, b, c));
    stack.delete().map_err(ioth::Error::from).unwrap();
}

#[test]
fn batching_off_is_one_request_per_socket() {
    let _g = exclusive();
    const N: usize = 10;
    let by_builder = Stack::builder("kernel")
        .socket_batch(false)
        .build()
        .unwrap();
    std::env::set_var("IOTH_SOCKET_BATCH", "0");
    let by_env = kernel();
    std::env::remove_var("IOTH_SOCKET_BATCH");
    let on = kernel();
    for (stack, batched) in [(&by_builder, false), (&by_env, false), (&on, true)] {
        let kept: Vec<_> = (0..N)
            .map(|_| stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap())
            .collect();
        let st = stack.stats().unwrap();
        if batched {
            assert_eq!(
                st.requests,
                2 + 1 + (N - 1).div_ceil(BATCH) as u64,
                "{st:?}"
            );
            assert_eq!(st.sockets_created, (N + st.spare_sockets) as u64, "{st:?}");
            assert!(st.spare_sockets > 0);
        } else {
            assert_eq!(st.requests, 2 + N as u64, "{st:?}");
            assert_eq!(
                (st.sockets_created, st.spare_sockets),
                (N as u64, 0),
                "{st:?}"
            );
        }
        drop(kept);
    }
    for s in [by_builder, by_env, on] {
        s.delete().map_err(ioth::Error::from).unwrap();
    }
}

/// Under the fd limit, with `free` fds left: a batch the kernel cuts to the room left gives
/// the sockets that fit, the next msocket fails with `EMFILE`, and as many sockets are made as
/// single requests would have made. Runs in a helper process (the limit is process-wide).
#[test]
fn under_the_fd_limit_a_batch_gives_what_fits() {
    let _g = shared();
    for free in [1usize, 5, 12] {
        let r = Report::run(
            env!("CARGO_BIN_EXE_ioth-fault-holder"),
            &["--batch-budget", &free.to_string()],
            &[],
        );
        let room = r.num("free");
        assert!(room >= free, "{}", r.text());
        assert_eq!(r.num("reached"), room, "{}", r.text());
        assert_eq!(r.num("errno"), libc::EMFILE as usize, "{}", r.text());
        assert_eq!(r.num("spares"), 0, "{}", r.text());
        // The first batch, cut by the kernel to the room left: what fitted was kept.
        assert_eq!(
            r.num("first_batch_spares"),
            room.min(BATCH) - 1,
            "{}",
            r.text()
        );
    }
}

/// Spares never make a call fail that would succeed without them: with the fd table full while
/// one stack holds spares, another stack's msocket and a new stack have those spares closed
/// and succeed. Runs in a helper process (the limit is process-wide).
#[test]
fn a_full_fd_table_closes_the_spares_of_other_stacks() {
    let _g = shared();
    let r = Report::run(
        env!("CARGO_BIN_EXE_ioth-fault-holder"),
        &["--spares-elsewhere"],
        &[],
    );
    assert_eq!(r.field("socket"), "ok", "{}", r.text());
    assert_eq!(r.num("spares_after_socket"), 0, "{}", r.text());
    assert_eq!(r.field("newstack"), "ok", "{}", r.text());
}

/// The host is not trusted: a `Sockets` reply with more sockets than asked for, one that
/// declares more fds than it carries, and one that declares none are protocol errors. The
/// msocket fails (the first socket of the stack was fine), the stack is dead, and every fd that
/// came with the bad reply is closed. Runs in a helper process on `ioth-rogue-host`.
#[test]
fn a_host_that_breaks_the_batch_protocol_is_a_protocol_error_and_leaks_nothing() {
    let _g = shared();
    for mode in ["sockets-extra", "sockets-short", "sockets-zero"] {
        let r = Report::run(
            env!("CARGO_BIN_EXE_ioth-fault-holder"),
            &["--rogue", mode],
            &[
                ("IOTH_HOST", env!("CARGO_BIN_EXE_ioth-rogue-host")),
                ("IOTH_NO_FORK_SERVER", "1"),
            ],
        );
        assert_eq!(r.field("first"), "ok", "{mode}: {}", r.text());
        assert_eq!(
            r.num("second"),
            libc::EPROTO as usize,
            "{mode}: {}",
            r.text()
        );
        assert_eq!(r.field("gone"), "true", "{mode}: {}", r.text());
        assert_eq!(
            r.num("fds_before"),
            r.num("fds_after"),
            "{mode}: {}",
            r.text()
        );
    }
}

/// A proxied stack (smoltcp) gets no batch: each msocket is a Socket request with its own id,
/// and the sockets work.
#[test]
fn proxied_stacks_make_their_sockets_one_at_a_time() {
    let _g = shared();
    let sw = Switch::start();
    let a = stacks::smoltcp(&sw, "10.0.0.1", "fd00::1");
    let b = stacks::smoltcp(&sw, "10.0.0.3", "fd00::3");
    let peer = b.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let at: SocketAddr = addr("10.0.0.3:7000");
    peer.bind(&at).unwrap();
    peer.set_read_timeout(Some(BOUND)).unwrap();
    const N: usize = 10;
    let before = a.stats().unwrap();
    let mut ids = HashSet::new();
    let mut kept = Vec::new();
    for i in 0..N {
        let s = a.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        assert!(ids.insert(s.proxy_id().expect("a proxied socket")));
        s.bind(&addr(&format!("10.0.0.1:{}", 7100 + i))).unwrap();
        s.set_read_timeout(Some(BOUND)).unwrap();
        s.send_to(format!("ping {i}").as_bytes(), &at).unwrap();
        let mut buf = [0u8; 32];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("ping {i}").as_bytes());
        peer.send_to(&buf[..n], &from).unwrap();
        let (m, _) = s.recv_from(&mut buf).unwrap();
        assert_eq!(m, n);
        kept.push(s);
    }
    let st = a.stats().unwrap();
    assert_eq!(st.spare_sockets, 0, "{st:?}");
    assert_eq!(st.sockets_created - before.sockets_created, N as u64);
    drop((kept, peer));
    a.delete().map_err(ioth::Error::from).unwrap();
    b.delete().map_err(ioth::Error::from).unwrap();
}

/// The audit trail shows a batch as a `Sockets` request with the count asked for and the fds
/// that went out.
#[test]
fn the_audit_trail_shows_each_batch_with_its_count() {
    let _g = shared();
    let dir = ioth_tests::tempdir::TempDir::new("socket-batch-audit");
    let trail = dir.path().join("trail.jsonl");
    let stack = Stack::builder("kernel").audit(&trail).build().unwrap();
    let kept: Vec<_> = (0..3)
        .map(|_| stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap())
        .collect();
    drop(kept);
    stack.delete().map_err(ioth::Error::from).unwrap();
    let text = std::fs::read_to_string(&trail).unwrap();
    let reqs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "request" && v["request"].as_str().unwrap().starts_with("Socket"))
        .collect();
    assert_eq!(reqs.len(), 2, "{text}");
    assert_eq!(reqs[0]["request"], "Socket");
    assert_eq!(reqs[1]["request"], "Sockets");
    assert_eq!(reqs[1]["args"]["count"], BATCH);
    assert_eq!(reqs[1]["args"]["type"], libc::SOCK_DGRAM);
    assert_eq!(reqs[1]["fds"], BATCH);
    assert_eq!(reqs[1]["fd_kind"], "native");
}
