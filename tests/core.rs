//! Core end-to-end tests: the `kernel` plug-in through real `ioth-host` processes.
//!
//! Every socket under test is made by `Stack::msocket` on a kernel stack and used as a plain
//! `std::net` type (or, in one test, through `ioth::Socket`'s own methods): the fds are real. Traffic stays on 127.0.0.1.
//!
//! Tests run in parallel threads of one process, and some of them look at process-wide state:
//! the fd table, the environment, the `ioth-host` children. Each test therefore holds [`LOCK`]:
//! shared by ordinary tests, exclusive by those that count or change process-wide things. At
//! process exit, a check makes the binary fail if any `ioth-host` child is left.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Once, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use ioth::{Error, Stack};
use ioth_tests::{proc, sock, stacks};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

/// Bound on every wait of this file. Only a hang guard: no test asserts on time.
const BOUND: Duration = Duration::from_secs(10);
/// The same bound for poll/epoll.
const POLL_BOUND: PollTimeout = PollTimeout::MAX;

static LOCK: RwLock<()> = RwLock::new(());
static AT_EXIT: Once = Once::new();

/// The lock for a test that does not look at process-wide state.
fn shared() -> RwLockReadGuard<'static, ()> {
    AT_EXIT.call_once(register_exit_check);
    LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// The lock for a test that counts fds or children, or sets environment variables.
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    AT_EXIT.call_once(register_exit_check);
    LOCK.write().unwrap_or_else(|e| e.into_inner())
}

/// Runs when the test binary exits: every stack of every test must be gone by then, hosts
/// included. Fails the binary (exit status 1) otherwise. Must not panic (it is called from C).
extern "C" fn no_host_left_at_exit() {
    if proc::wait_until(BOUND, || proc::host_children().is_empty()) {
        return;
    }
    eprintln!(
        "core tests: ioth-host processes left over at exit: {:?}",
        proc::host_children()
    );
    // SAFETY: _exit ends the process at once; nothing runs after it.
    unsafe { libc::_exit(1) };
}

fn register_exit_check() {
    // SAFETY: the handler is a plain extern "C" fn with no arguments that never unwinds.
    let r = unsafe { libc::atexit(no_host_left_at_exit) };
    assert_eq!(r, 0, "atexit");
}

fn kernel() -> Stack {
    Stack::new("kernel", &[] as &[&str]).expect("newstack kernel")
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A listening TCP socket on 127.0.0.1, made by `stack`.
fn listener(stack: &Stack, extra_flags: i32) -> TcpListener {
    let s: socket2::Socket = stack
        .msocket(libc::AF_INET, libc::SOCK_STREAM | extra_flags, 0)
        .expect("msocket listener")
        .into();
    s.set_reuse_address(true).unwrap();
    s.bind(&localhost().into()).expect("bind");
    s.listen(16).expect("listen");
    s.into()
}

/// A TCP connection to `to`, from a socket made by `stack`.
fn connect(stack: &Stack, to: SocketAddr) -> TcpStream {
    let s: socket2::Socket = stack
        .msocket(libc::AF_INET, libc::SOCK_STREAM, 0)
        .expect("msocket stream")
        .into();
    s.connect(&to.into()).expect("connect");
    s.into()
}

/// A TCP echo through a listener and a client both made by `stack`: `len` bytes there and back.
fn tcp_echo(stack: &Stack, len: usize) {
    let l = listener(stack, 0);
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || -> io::Result<u64> {
        let (mut c, _) = l.accept()?;
        c.set_read_timeout(Some(BOUND))?;
        let mut r = c.try_clone()?;
        io::copy(&mut r, &mut c)
    });
    let mut c = connect(stack, addr);
    c.set_read_timeout(Some(BOUND)).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut w = c.try_clone().unwrap();
    let to_send = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&to_send).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::with_capacity(len);
    c.read_to_end(&mut back).expect("read echo");
    writer.join().unwrap();
    assert_eq!(server.join().unwrap().expect("echo server") as usize, len);
    assert!(back == data, "echo differs ({} bytes back)", back.len());
}

/// A UDP socket bound to 127.0.0.1, made by `stack`.
fn udp(stack: &Stack) -> UdpSocket {
    let s: socket2::Socket = stack
        .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .expect("msocket udp")
        .into();
    s.bind(&localhost().into()).expect("bind udp");
    let u: UdpSocket = s.into();
    u.set_read_timeout(Some(BOUND)).unwrap();
    u
}

/// A stack kept open across a failing call, with a socket made before it: after the call, the
/// old socket and the stack must both still work.
struct Witness {
    stack: Stack,
    listener: TcpListener,
}

impl Witness {
    fn new() -> Witness {
        let stack = kernel();
        let listener = listener(&stack, 0);
        Witness { stack, listener }
    }

    fn check(&self) {
        let pid = self.stack.pid().unwrap();
        assert!(proc::alive(pid), "witness host {pid} died");
        let mut c = connect(&self.stack, self.listener.local_addr().unwrap());
        let (mut s, _) = self.listener.accept().unwrap();
        s.write_all(b"still here").unwrap();
        let mut b = [0u8; 10];
        c.set_read_timeout(Some(BOUND)).unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"still here");
        tcp_echo(&self.stack, 1000);
    }
}

fn fd_flags(fd: impl AsFd) -> FdFlag {
    FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap())
}

fn fl_flags(fd: impl AsFd) -> OFlag {
    OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Data through ioth fds

#[test]
fn tcp_echo_through_ioth_fds() {
    let _g = shared();
    let stack = kernel();
    assert!(stack.pid().is_some(), "a kernel stack runs in a host");
    tcp_echo(&stack, 5);
    tcp_echo(&stack, 1 << 20);
    stack.delete().map_err(ioth::Error::from).unwrap();
}

#[test]
fn udp_echo_through_ioth_fds() {
    let _g = shared();
    let stack = kernel();
    let server = udp(&stack);
    let addr = server.local_addr().unwrap();
    let client = udp(&stack);
    let t = std::thread::spawn(move || {
        let mut b = [0u8; 1500];
        for _ in 0..10 {
            let (n, from) = server.recv_from(&mut b).expect("server recv");
            server.send_to(&b[..n], from).unwrap();
        }
    });
    for i in 0..10u8 {
        let msg = [i; 100];
        client.send_to(&msg, addr).unwrap();
        let mut b = [0u8; 1500];
        let (n, from) = client.recv_from(&mut b).expect("client recv");
        assert_eq!(from, addr);
        assert_eq!(&b[..n], &msg);
    }
    t.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Readiness

#[test]
fn poll_readiness_on_ioth_fds() {
    let _g = shared();
    let stack = kernel();
    let l = listener(&stack, 0);
    let pollin = |fd: &dyn AsFd, timeout: PollTimeout| -> PollFlags {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, timeout).expect("poll");
        if n == 0 {
            PollFlags::empty()
        } else {
            fds[0].revents().unwrap()
        }
    };
    assert!(
        pollin(&l, PollTimeout::ZERO).is_empty(),
        "listener readable before any connection"
    );
    let mut c = connect(&stack, l.local_addr().unwrap());
    assert!(
        pollin(&l, POLL_BOUND).contains(PollFlags::POLLIN),
        "listener not readable with a connection pending"
    );
    let (mut s, _) = l.accept().unwrap();
    assert!(
        pollin(&l, PollTimeout::ZERO).is_empty(),
        "listener readable after accept"
    );
    assert!(
        pollin(&c, PollTimeout::ZERO).is_empty(),
        "stream readable before data"
    );
    s.write_all(b"x").unwrap();
    assert!(
        pollin(&c, POLL_BOUND).contains(PollFlags::POLLIN),
        "stream not readable with data"
    );
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
    assert!(pollin(&c, PollTimeout::ZERO).is_empty());
    drop(s);
    assert!(
        pollin(&c, POLL_BOUND).contains(PollFlags::POLLIN),
        "stream not readable at EOF"
    );
    assert_eq!(c.read(&mut b).unwrap(), 0);
}

#[test]
fn epoll_readiness_on_ioth_fds() {
    let _g = shared();
    let stack = kernel();
    let l = listener(&stack, 0);
    let mut c = connect(&stack, l.local_addr().unwrap());
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    // A second listener, without a pending connection, must stay silent.
    let l2 = listener(&stack, 0);
    ep.add(&l, EpollEvent::new(EpollFlags::EPOLLIN, 1)).unwrap();
    ep.add(&l2, EpollEvent::new(EpollFlags::EPOLLIN, 3))
        .unwrap();
    ep.add(&c, EpollEvent::new(EpollFlags::EPOLLIN, 2)).unwrap();
    let ready = |timeout: PollTimeout| -> Vec<u64> {
        let mut ev = [EpollEvent::empty(); 8];
        let n = ep.wait(&mut ev, timeout).expect("epoll_wait");
        let mut v: Vec<u64> = ev[..n].iter().map(|e| e.data()).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        ready(POLL_BOUND),
        vec![1],
        "pending connection: listener only"
    );
    let (mut s, _) = l.accept().unwrap();
    assert_eq!(ready(PollTimeout::ZERO), Vec::<u64>::new());
    s.write_all(b"ping").unwrap();
    assert_eq!(ready(POLL_BOUND), vec![2], "data: stream only");
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    assert_eq!(ready(PollTimeout::ZERO), Vec::<u64>::new());
}

// ---------------------------------------------------------------------------------------------
// Flags in `type`

#[test]
fn sock_nonblock_honoured() {
    let _g = shared();
    let stack = kernel();
    let blocking = stack.msocket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    assert!(!fl_flags(&blocking).contains(OFlag::O_NONBLOCK));

    let l = listener(&stack, libc::SOCK_NONBLOCK);
    assert!(fl_flags(&l).contains(OFlag::O_NONBLOCK));
    let e = l.accept().expect_err("accept without a connection");
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");

    let c: socket2::Socket = stack
        .msocket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0)
        .unwrap()
        .into();
    assert!(fl_flags(&c).contains(OFlag::O_NONBLOCK));
    match c.connect(&l.local_addr().unwrap().into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let mut fds = [PollFd::new(c.as_fd(), PollFlags::POLLOUT)];
            assert_eq!(poll(&mut fds, POLL_BOUND).unwrap(), 1);
            assert!(c.take_error().unwrap().is_none());
        }
        Err(e) => panic!("non-blocking connect: {e}"),
    }
    let mut c: TcpStream = c.into();
    let mut b = [0u8; 8];
    let e = c.read(&mut b).expect_err("read without data");
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");

    let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, POLL_BOUND).unwrap(), 1);
    let (mut s, _) = l.accept().unwrap();
    s.write_all(b"data").unwrap();
    let mut fds = [PollFd::new(c.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, POLL_BOUND).unwrap(), 1);
    assert_eq!(c.read(&mut b).unwrap(), 4);
    assert_eq!(&b[..4], b"data");
}

#[test]
fn sock_cloexec_honoured_both_ways() {
    // Execs a program, which would inherit other tests' fds made without SOCK_CLOEXEC.
    let _g = exclusive();
    let stack = kernel();
    for ty in [libc::SOCK_STREAM, libc::SOCK_DGRAM] {
        let with = stack
            .msocket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0)
            .unwrap();
        let without = stack.msocket(libc::AF_INET, ty, 0).unwrap();
        assert!(fd_flags(&with).contains(FdFlag::FD_CLOEXEC), "ty {ty}");
        assert!(!fd_flags(&without).contains(FdFlag::FD_CLOEXEC), "ty {ty}");
        // And what the flag means: a program we exec inherits exactly the fd without it.
        let inherited = |fd: i32| {
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("test -e /proc/self/fd/{fd}"))
                .status()
                .expect("run /bin/sh")
                .success()
        };
        assert!(!inherited(with.as_raw_fd()), "SOCK_CLOEXEC fd inherited");
        assert!(
            inherited(without.as_raw_fd()),
            "fd without SOCK_CLOEXEC lost"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Many sockets, many stacks, threads

#[test]
fn eight_threads_thousand_msockets_leave_no_fd() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1000;
    let _g = exclusive();
    let stack = kernel();
    let host = stack.pid().unwrap();
    let created_before = stack.stats().unwrap().sockets_created;
    let app_before = proc::self_fd_count();
    let host_before = proc::fd_count(Some(host)).unwrap();

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let stack = stack.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let ty = if (t + i) % 2 == 0 {
                        libc::SOCK_STREAM
                    } else {
                        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC
                    };
                    let s = stack
                        .msocket(libc::AF_INET, ty, 0)
                        .unwrap_or_else(|e| panic!("thread {t} socket {i}: {e}"));
                    let st = nix::sys::stat::fstat(&s).unwrap();
                    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFSOCK);
                    drop(s);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(stack.open_sockets(), 0);
    // One more round trip: the host has closed its copy of the last socket before it answers.
    let st = stack.stats().unwrap();
    let created = st.sockets_created - created_before;
    // Batching (StackBuilder::socket_batch): the sockets handed over ahead and not yet asked
    // for are made and held as spares, one fd each, until the stack goes.
    assert_eq!(created, (THREADS * PER_THREAD + st.spare_sockets) as u64);
    assert!(st.spare_sockets < 2 * 8, "{st:?}");
    assert_eq!(
        proc::self_fd_count(),
        app_before + st.spare_sockets,
        "application fds leaked"
    );
    let mut host_now = 0;
    let settled = proc::wait_until(BOUND, || {
        host_now = proc::fd_count(Some(host)).unwrap();
        host_now == host_before
    });
    assert!(settled, "host fds: {host_before} before, {host_now} after");
    tcp_echo(&stack, 100);
}

#[test]
fn two_stacks_of_one_plugin_are_two_hosts() {
    let _g = shared();
    let a = kernel();
    let b = kernel();
    let (pa, pb) = (a.pid().unwrap(), b.pid().unwrap());
    assert_ne!(pa, pb);
    for p in [pa, pb] {
        assert!(proc::alive(p), "host {p} not running");
        assert_eq!(proc::comm(p).as_deref(), Some(proc::HOST_COMM));
        assert_eq!(proc::ppid(p), Some(std::process::id()));
    }
    let hosts = proc::host_children();
    assert!(hosts.contains(&pa) && hosts.contains(&pb), "{hosts:?}");
    tcp_echo(&a, 1000);
    tcp_echo(&b, 1000);
    // A connection across the two stacks, too.
    let l = listener(&a, 0);
    let mut c = connect(&b, l.local_addr().unwrap());
    let (mut s, _) = l.accept().unwrap();
    c.write_all(b"a->b").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"a->b");
    for st in [a, b] {
        st.delete().map_err(ioth::Error::from).expect("delete");
    }
    assert!(proc::wait_gone(pa, BOUND) && proc::wait_gone(pb, BOUND));
}

#[test]
fn stack_created_in_exited_thread_still_serves() {
    let _g = shared();
    let (stack, tid) = std::thread::spawn(|| (kernel(), nix::unistd::gettid().as_raw()))
        .join()
        .unwrap();
    // Wait until the creating thread is fully gone from the kernel: were the host tied to that
    // thread (PR_SET_PDEATHSIG), it would have been signalled by now.
    let task = format!("/proc/self/task/{tid}");
    assert!(proc::wait_until(BOUND, || !std::path::Path::new(&task).exists()));
    let pid = stack.pid().unwrap();
    assert!(proc::alive(pid), "host died with its creating thread");
    tcp_echo(&stack, 1000);
    assert!(proc::alive(pid));
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

#[test]
fn delete_with_open_socket_is_busy_then_succeeds() {
    let _g = shared();
    let stack = kernel();
    let pid = stack.pid().unwrap();
    let sock = stack.msocket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    let (stack, e) = stack
        .delete()
        .expect_err("delete with an open socket")
        .into_parts();
    assert!(matches!(e, Error::Busy { open: 1, .. }), "{e:?}");
    assert_eq!(e.errno(), libc::EBUSY);
    assert!(e.to_string().contains("open socket"), "{e}");
    // Handed back intact.
    assert!(proc::alive(pid));
    tcp_echo(&stack, 100);
    drop(sock);
    assert_eq!(stack.open_sockets(), 0);
    stack.delete().map_err(ioth::Error::from).expect("delete");
    assert!(proc::wait_gone(pid, BOUND), "host {pid} not reaped");
}

/// `delete` in a function that returns `ioth::Result`: `?` gives the error (EBUSY), and a caller
/// who keeps the `DeleteError` gets the stack back to retry.
#[test]
fn delete_works_with_the_question_mark() {
    fn delete(s: Stack) -> ioth::Result<()> {
        s.delete()?;
        Ok(())
    }
    fn delete_io(s: Stack) -> std::io::Result<()> {
        s.delete()?;
        Ok(())
    }
    let _g = shared();
    let stack = kernel();
    let sock = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let e = delete(stack.clone()).expect_err("an open socket");
    assert_eq!(e.errno(), libc::EBUSY, "{e}");
    let e = delete_io(stack.clone()).expect_err("an open socket");
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<Error>());
    assert_eq!(inner.map(Error::errno), Some(libc::EBUSY), "{e}");
    let again = stack.delete().expect_err("still open");
    assert!(
        again.to_string().contains("cannot delete the stack"),
        "{again}"
    );
    let stack = again.into_stack();
    drop(sock);
    delete(stack).expect("deleted once its socket is closed");
}

/// A host gets the ioth variables hosts read (IOTH_LIBVDEPLUG, …), not the application's others
/// (an exec'd host: one forked by the fork server has the environment the fork server was
/// started with, filtered the same way).
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: reads a non-dumpable host's environ"
)]
fn hosts_get_only_the_ioth_variables_they_read() {
    let _g = exclusive();
    std::env::set_var("IOTH_UNRELATED_TO_HOSTS", "1");
    std::env::set_var("IOTH_LIBVDEPLUG", "libvdeplug.so.2");
    let stack = Stack::builder("kernel").fork_server(false).build().unwrap();
    std::env::remove_var("IOTH_UNRELATED_TO_HOSTS");
    std::env::remove_var("IOTH_LIBVDEPLUG");
    let pid = stack.pid().unwrap();
    let env = std::fs::read(format!("/proc/{pid}/environ")).expect("the host's environ");
    let vars: Vec<String> = env
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        vars.iter().any(|v| v == "IOTH_LIBVDEPLUG=libvdeplug.so.2"),
        "{vars:?}"
    );
    assert!(
        !vars.iter().any(|v| v.starts_with("IOTH_UNRELATED")),
        "{vars:?}"
    );
    drop(stack);
}

#[test]
fn dropping_last_handle_ends_and_reaps_host() {
    let _g = shared();
    let stack = kernel();
    let pid = stack.pid().unwrap();
    let clone = stack.clone();
    drop(stack);
    assert!(proc::alive(pid), "host ended while a clone lives");
    // An open socket holds the stack too.
    let sock = clone.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    drop(clone);
    assert!(proc::alive(pid), "host ended while a socket lives");
    assert_eq!(sock.stack().pid(), Some(pid));
    drop(sock);
    assert!(proc::wait_gone(pid, BOUND), "host {pid} not reaped");
}

/// Reverts the default stack even if the test fails.
struct DefaultGuard;

impl Drop for DefaultGuard {
    fn drop(&mut self) {
        ioth::set_default_stack(None);
    }
}

#[test]
fn default_stack_is_native_until_set() {
    // The only test of this file that touches the default stack.
    let _g = shared();
    let _revert = DefaultGuard;
    assert_eq!(ioth::default_stack().pid(), None);
    assert_eq!(ioth::default_stack().plugin(), "");
    let native = ioth::socket(
        ioth::socket2::Domain::IPV4,
        ioth::socket2::Type::STREAM,
        None,
    )
    .unwrap();
    assert_eq!(native.stack().pid(), None, "default socket not native");

    let stack = kernel();
    let pid = stack.pid().unwrap();
    let created = stack.stats().unwrap().sockets_created;
    ioth::set_default_stack(Some(&stack));
    assert!(ioth::default_stack().same(&stack));
    let s = ioth::msocket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    assert!(s.stack().same(&stack));
    assert_eq!(stack.open_sockets(), 1);
    assert_eq!(stack.stats().unwrap().sockets_created, created + 1);
    drop(s);

    ioth::set_default_stack(None);
    let s = ioth::msocket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    assert_eq!(s.stack().pid(), None);
    assert_eq!(stack.open_sockets(), 0);
    assert_eq!(stack.stats().unwrap().sockets_created, created + 1);
    // The default held a clone; reverting let it go, so this handle is the last one.
    drop(stack);
    assert!(
        proc::wait_gone(pid, BOUND),
        "host {pid} kept by the default"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error, and a witness stack unharmed

#[test]
fn unknown_plugin_is_not_found_and_names_the_paths() {
    let _g = shared();
    let w = Witness::new();
    let e = Stack::new("nosuchstack", &[] as &[&str]).expect_err("unknown plug-in");
    assert!(matches!(e, Error::PluginNotFound { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::ENOTSUP);
    let msg = e.to_string();
    assert!(msg.contains("ioth_nosuchstack.so"), "{msg}");
    assert!(msg.contains("looked for"), "{msg}");
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let p = std::path::Path::new(&home).join(".ioth/ioth_nosuchstack.so");
        assert!(msg.contains(&*p.to_string_lossy()), "{msg}");
    }
    w.check();
}

#[test]
fn names_with_slash_or_dotdot_are_invalid() {
    let _g = shared();
    let w = Witness::new();
    for name in ["../x", "a/b", "..", "/abs", "x/../kernel"] {
        let e = Stack::new(name, &[] as &[&str]).expect_err(name);
        assert!(matches!(e, Error::InvalidName { .. }), "{name}: {e:?}");
        assert_eq!(e.errno(), libc::EINVAL, "{name}");
        assert!(e.to_string().contains(name), "{e}");
    }
    w.check();
}

#[test]
fn empty_vnl_is_invalid() {
    let _g = shared();
    let w = Witness::new();
    let e = Stack::new("kernel", &[""]).expect_err("empty VNL");
    assert_eq!(e.errno(), libc::EINVAL, "{e:?}");
    let e = Stack::builder("kernel")
        .vnl("vde:///tmp/x")
        .vnl("")
        .build()
        .expect_err("empty VNL among others");
    assert_eq!(e.errno(), libc::EINVAL, "{e:?}");
    w.check();
}

#[test]
fn kernel_plugin_refuses_a_vnl() {
    let _g = shared();
    let w = Witness::new();
    let e = Stack::new("kernel", &["vde:///tmp/ioth-core-test-no-switch"]).expect_err("VNL");
    assert_eq!(e.errno(), libc::EINVAL, "{e:?}");
    assert!(e.to_string().contains("kernel"), "{e}");
    w.check();
}

/// "NAME,OPTIONS": the options reach the plug-in; ours take none (EINVAL with a message that
/// names the plug-in and the options), but an empty list is no options.
#[test]
fn stack_name_options_reach_the_plugin() {
    let _g = shared();
    let w = Witness::new();
    let e = Stack::new("kernel,promisc", &[] as &[&str]).expect_err("options");
    assert_eq!(e.errno(), libc::EINVAL, "{e:?}");
    assert!(e.to_string().contains("\"promisc\""), "{e}");
    let e = Stack::builder("kernel")
        .options("a=1")
        .build()
        .expect_err("options");
    assert_eq!(e.errno(), libc::EINVAL, "{e:?}");
    let s = Stack::new("kernel,", &[] as &[&str]).expect("an empty option list");
    assert_eq!(s.plugin(), "kernel");
    tcp_echo(&s, 1000);
    drop(s);
    w.check();
}

#[test]
fn invalid_domain_is_eafnosupport_and_stack_serves() {
    let _g = shared();
    let w = Witness::new();
    let stack = kernel();
    let e = stack
        .msocket(12345, libc::SOCK_STREAM, 0)
        .expect_err("bad domain");
    assert_eq!(e.errno(), libc::EAFNOSUPPORT, "{e:?}");
    assert_eq!(stack.open_sockets(), 0);
    let e = stack.msocket(libc::AF_INET, 9999, 0).expect_err("bad type");
    assert_eq!(e.errno(), libc::EINVAL, "{e:?}");
    tcp_echo(&stack, 1000);
    w.check();
}

/// Restores an environment variable even if the test fails.
struct EnvGuard(&'static str, Option<std::ffi::OsString>);

impl Drop for EnvGuard {
    fn drop(&mut self) {
        match &self.1 {
            Some(v) => std::env::set_var(self.0, v),
            None => std::env::remove_var(self.0),
        }
    }
}

#[test]
fn missing_host_binary_is_host_not_found() {
    // Changes the environment: no other test of this file may run meanwhile.
    let _g = exclusive();
    let w = Witness::new();
    let missing = "/nonexistent/ioth-core-test/ioth-host";
    {
        let _restore = EnvGuard("IOTH_HOST", std::env::var_os("IOTH_HOST"));
        std::env::set_var("IOTH_HOST", missing);
        let e = Stack::new("kernel", &[] as &[&str]).expect_err("missing host");
        assert!(matches!(e, Error::HostNotFound { .. }), "{e:?}");
        assert_eq!(e.errno(), libc::ENOENT);
        let msg = e.to_string();
        assert!(msg.contains(missing) && msg.contains("IOTH_HOST"), "{msg}");
        // What `fn main() -> Result` prints says what to do too.
        let dbg = format!("{e:?}");
        assert!(
            dbg.contains(missing) && dbg.contains("cargo install"),
            "{dbg}"
        );
        // Existing stacks do not need the binary.
        w.check();
    }
    w.check();
    tcp_echo(&kernel(), 100);
}

// ---------------------------------------------------------------------------------------------
// ioth::Socket on native fds

/// The methods of `ioth::Socket` (the proxied-fd tests use them on proxied fds) on a kernel
/// stack's native fds: accept, non-blocking, nodelay, shutdown, connected and unconnected UDP.
#[test]
fn socket_methods_on_native_fds() {
    let _g = shared();
    let st = kernel();
    let l = sock::listener(&st, stacks::addr("127.0.0.1:0"));
    assert!(!l.is_proxied() && l.proxy_id().is_none());
    l.set_nonblocking(true).unwrap();
    assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    let at = l.local_addr().unwrap();
    let srv = std::thread::spawn(move || {
        l.set_nonblocking(false).unwrap();
        let (c, peer) = sock::accept(&l);
        assert_eq!(c.peer_addr().unwrap(), peer);
        let mut all = Vec::new();
        (&c).read_to_end(&mut all).unwrap();
        (&c).write_all(&all).unwrap();
    });
    let c = sock::stream(&st, &at);
    c.set_nodelay(true).unwrap();
    assert!(c.nodelay().unwrap());
    c.connect(&at).unwrap();
    (&c).write_all(b"native").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = String::new();
    (&c).read_to_string(&mut back).unwrap();
    assert_eq!(back, "native");
    srv.join().unwrap();
    let u = st.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    u.bind(&stacks::addr("127.0.0.1:0")).unwrap();
    u.set_read_timeout(Some(sock::WAIT)).unwrap();
    let ua = u.local_addr().unwrap();
    let v = st.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    v.connect(&ua).unwrap();
    (&v).write_all(b"dgram").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = u.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"dgram"[..], v.local_addr().unwrap()));
    v.disconnect().unwrap();
    assert!(v.peer_addr().is_err());
    v.send_to(b"again", &ua).unwrap();
    assert_eq!(u.recv(&mut buf).unwrap(), 5);
}

// ---------------------------------------------------------------------------------------------
// Leftovers

#[test]
fn no_host_left_by_finished_tests() {
    // With the lock held exclusively no other test is running, and every finished one must have
    // ended and reaped its hosts. (Tests that start later are covered by the exit check.)
    let _g = exclusive();
    let mut left = Vec::new();
    let clean = proc::wait_until(BOUND, || {
        left = proc::host_children();
        left.is_empty()
    });
    assert!(clean, "ioth-host children left: {left:?}");
}
