//! `libioth_preload.so`: loaded by `ioth-run` (or `ioth_run`) into a dynamically linked program
//! on a proxied stack (smoltcp), it puts the program's `AF_INET`, `AF_INET6`, `AF_PACKET` and
//! `AF_NETLINK`/`NETLINK_ROUTE` sockets on the stack (docs/run.md).
//!
//! - `socket` asks the runner (the process that holds the stack; its socket is named by
//!   `IOTH_RUN_SOCKET`), which makes the socket on the stack and hands its fd back: one end of
//!   a socketpair the stack pumps (docs/proxied.md), so `read`/`write`/`poll`/`epoll`, `fcntl`
//!   and `dup` need nothing.
//! - A socket is named by its fd's inode number, the same in every process holding it, so the
//!   calls below work on fds inherited through `fork` and `exec` alike. Each thread of each
//!   process has a connection of its own to the runner (a new one after `fork`).
//! - `bind`, `connect`, `listen`, `accept`/`accept4`, `getsockname`, `getpeername`,
//!   `setsockopt`, `getsockopt`, `shutdown` on such an fd go to the runner, which makes them on
//!   the stack; a blocking `accept` first waits here for its fd to turn readable (so a signal
//!   interrupts it with `EINTR`).
//! - `sendto`/`recvfrom`/`sendmsg`/`recvmsg`/`send`/`recv` add and strip the 28-byte address
//!   header of unconnected datagram sockets and report the right addresses (the peer of a
//!   connected one, the kernel's `sockaddr_nl` for netlink); `ioctl(FIONREAD)` leaves the
//!   header out; the interface ioctls (`SIOCGIF*`, `SIOCSIF*`) fail with `ENODEV` rather than
//!   answer for the machine's interfaces.
//! - `close` and `dup2`/`dup3` over such an fd tell the runner, which releases the socket once
//!   no process holds it.
//!
//! Everything else — other families, every other fd — goes to libc (`dlsym(RTLD_NEXT)`). The
//! library's own work (its connection, its allocations' system calls) runs with a per-thread
//! guard set, so that what it calls reaches libc directly.
//!
//! This crate is the only place of the runner's design with FFI: every `unsafe` block says why
//! it is sound.
#![allow(clippy::missing_safety_doc)]

mod control;
mod data;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, c_ulong, c_void, CStr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::OnceLock;

use ioth_plugin_sdk::proxied::header::{header_from_sockaddr, sockaddr_from_header, HDR_LEN};
use ioth_proto::run::{RunReply, RunRequest, SockInfo, RUN_SOCKET_ENV};
use ioth_proto::{Channel, ControlOp, MAX_SOCKADDR, MAX_SOCKOPT};
use libc::{msghdr, size_t, sockaddr, socklen_t, ssize_t};

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type AddrFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type NameFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type IntFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type SetOptFn = unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int;
type GetOptFn = unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type Dup3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type SendToFn = unsafe extern "C" fn(
    c_int,
    *const c_void,
    size_t,
    c_int,
    *const sockaddr,
    socklen_t,
) -> ssize_t;
type RecvFromFn = unsafe extern "C" fn(
    c_int,
    *mut c_void,
    size_t,
    c_int,
    *mut sockaddr,
    *mut socklen_t,
) -> ssize_t;
type SendMsgFn = unsafe extern "C" fn(c_int, *const msghdr, c_int) -> ssize_t;
type RecvMsgFn = unsafe extern "C" fn(c_int, *mut msghdr, c_int) -> ssize_t;
type SendFn = unsafe extern "C" fn(c_int, *const c_void, size_t, c_int) -> ssize_t;
type RecvFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, c_int) -> ssize_t;
type IoctlFn = unsafe extern "C" fn(c_int, c_ulong, *mut c_void) -> c_int;

/// libc's own functions.
struct Real {
    socket: SocketFn,
    bind: AddrFn,
    connect: AddrFn,
    listen: IntFn,
    accept4: Accept4Fn,
    getsockname: NameFn,
    getpeername: NameFn,
    setsockopt: SetOptFn,
    getsockopt: GetOptFn,
    shutdown: IntFn,
    close: CloseFn,
    dup2: IntFn,
    dup3: Dup3Fn,
    sendto: SendToFn,
    recvfrom: RecvFromFn,
    sendmsg: SendMsgFn,
    recvmsg: RecvMsgFn,
    send: SendFn,
    recv: RecvFn,
    ioctl: IoctlFn,
}

/// The next definition of `name` after this library (libc's), as a function pointer of type `T`.
fn next<T: Copy>(name: &CStr) -> T {
    // SAFETY: dlsym takes a NUL-terminated name; RTLD_NEXT searches the objects after this one.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if p.is_null() {
        // Without libc's socket calls nothing can work; say so and stop (no unwinding over
        // the C boundary).
        let msg = b"libioth_preload: a socket function of libc is missing\n";
        // SAFETY: write(2) of a static buffer to stderr.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        std::process::abort();
    }
    assert_eq!(size_of::<T>(), size_of::<*mut c_void>());
    // SAFETY: p is the address of libc's function `name`, whose C prototype is T (each use
    // below pairs a name with its glibc prototype); T is a function pointer, as large as p.
    unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) }
}

fn real() -> &'static Real {
    static REAL: OnceLock<Real> = OnceLock::new();
    REAL.get_or_init(|| Real {
        socket: next(c"socket"),
        bind: next(c"bind"),
        connect: next(c"connect"),
        listen: next(c"listen"),
        accept4: next(c"accept4"),
        getsockname: next(c"getsockname"),
        getpeername: next(c"getpeername"),
        setsockopt: next(c"setsockopt"),
        getsockopt: next(c"getsockopt"),
        shutdown: next(c"shutdown"),
        close: next(c"close"),
        dup2: next(c"dup2"),
        dup3: next(c"dup3"),
        sendto: next(c"sendto"),
        recvfrom: next(c"recvfrom"),
        sendmsg: next(c"sendmsg"),
        recvmsg: next(c"recvmsg"),
        send: next(c"send"),
        recv: next(c"recv"),
        ioctl: next(c"ioctl"),
    })
}

thread_local! {
    /// Set while this library does its own work on the thread.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// This thread's connection to the runner, with the pid it was made in.
    static CONN: RefCell<Option<(u32, Channel)>> = const { RefCell::new(None) };
    /// What this thread learned of socket inodes: the stack's (with their fixed facts) or not.
    static KNOWN: RefCell<HashMap<u64, Option<SockInfo>>> = RefCell::new(HashMap::new());
}

/// Runs `f` with the guard set; `None` if the guard was set already (or the thread is being
/// torn down): the caller then goes to libc.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    let entered = BUSY
        .try_with(|b| {
            if b.get() {
                false
            } else {
                b.set(true);
                true
            }
        })
        .unwrap_or(false);
    if !entered {
        return None;
    }
    let r = f();
    let _ = BUSY.try_with(|b| b.set(false));
    Some(r)
}

use ioth_plugin_sdk::errno::set as set_errno;

fn fail<T: From<i8>>(e: c_int) -> T {
    set_errno(e);
    T::from(-1)
}

/// One request to the runner, on this thread's connection (made now if needed); `Err(errno)`
/// if the runner cannot be reached (`ENETDOWN`).
fn call(req: &RunRequest) -> Result<(RunReply, Vec<OwnedFd>), c_int> {
    let pid = std::process::id();
    let r = CONN.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_some_and(|(p, _)| *p != pid) {
            // Inherited from the parent: ours is a copy; closing it leaves the parent's.
            *c = None;
        }
        if c.is_none() {
            *c = Some((pid, connect_runner()?));
        }
        let (_, chan) = c.as_mut().expect("set above");
        let r = chan
            .send(req, &[])
            .and_then(|()| chan.recv::<RunReply>())
            .map_err(|_| libc::ENETDOWN);
        match r {
            Ok((reply, fds)) if fds.len() == reply.fd_count() => Ok((reply, fds)),
            _ => {
                *c = None;
                Err(libc::ENETDOWN)
            }
        }
    });
    r.unwrap_or(Err(libc::ENETDOWN))
}

fn connect_runner() -> Result<Channel, c_int> {
    let path = std::env::var_os(RUN_SOCKET_ENV).ok_or_else(|| {
        warn_once("IOTH_RUN_SOCKET is not set: refusing the stack's sockets");
        libc::ENETDOWN
    })?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    // SAFETY: sockaddr_un is plain old data; zeroed is a valid empty address.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= sun.sun_path.len() {
        return Err(libc::ENAMETOOLONG);
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: libc's socket(2) with integer arguments.
    let fd =
        unsafe { (real().socket)(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fd is the socket just made, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sun is a live sockaddr_un of the given size.
    let r = unsafe {
        (real().connect)(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            size_of::<libc::sockaddr_un>() as socklen_t,
        )
    };
    if r < 0 {
        return Err(libc::ENETDOWN);
    }
    Ok(Channel::from_fd(fd))
}

/// This thread's `errno` after a failed call.
fn errno() -> c_int {
    ioth_plugin_sdk::errno::last_or(libc::EIO)
}

fn warn_once(msg: &str) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::AcqRel) {
        eprintln!("libioth_preload: {msg}");
    }
}

/// The inode of `fd` if it is a socket of family `AF_UNIX` (as the stack's fds are).
fn unix_socket_ino(fd: c_int) -> Option<u64> {
    // SAFETY: stat is plain old data; fstat fills it for a valid fd and fails otherwise.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    let mut dom: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: dom and len are live and writable, len says dom's size.
    let r = unsafe {
        (real().getsockopt)(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut dom as *mut c_int).cast(),
            &mut len,
        )
    };
    (r == 0 && dom == libc::AF_UNIX).then_some(st.st_ino)
}

/// The stack's socket behind `fd`, if it is one. `fresh`: ask the runner even if this thread
/// knows it (for the connected state of a datagram socket, which any process may change).
fn info(fd: c_int, fresh: bool) -> Option<SockInfo> {
    let ino = unix_socket_ino(fd)?;
    if !fresh {
        if let Some(k) = KNOWN
            .try_with(|k| k.borrow().get(&ino).cloned())
            .ok()
            .flatten()
        {
            return k;
        }
    }
    let got = match call(&RunRequest::Info { ino }) {
        Ok((RunReply::Info(i), _)) => i,
        _ => return None,
    };
    let _ = KNOWN.try_with(|k| k.borrow_mut().insert(ino, got.clone()));
    got
}

fn remember(i: &SockInfo) {
    let _ = KNOWN.try_with(|k| k.borrow_mut().insert(i.ino, Some(i.clone())));
}

/// Whether a datagram socket's connected state can change (so that it must be asked afresh).
fn inet_dgram(i: &SockInfo) -> bool {
    i.ty != libc::SOCK_STREAM && matches!(i.domain, libc::AF_INET | libc::AF_INET6)
}

/// `info`, fresh for an INET datagram socket.
fn info_now(fd: c_int) -> Option<SockInfo> {
    let i = info(fd, false)?;
    if inet_dgram(&i) {
        info(fd, true)
    } else {
        Some(i)
    }
}

/// Address bytes from a C `(addr, len)`.
///
/// # Safety
/// `addr` is null or readable for `len` bytes.
unsafe fn addr_bytes(addr: *const sockaddr, len: socklen_t) -> Option<Vec<u8>> {
    if addr.is_null() || (len as usize) < 2 || len as usize > MAX_SOCKADDR {
        return None;
    }
    // SAFETY: the caller's contract: addr is readable for len bytes.
    Some(unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len as usize) }.to_vec())
}

/// Writes `b` to a C `(addr, *len)` as the kernel does: truncated to `*len`, `*len` set to the
/// whole length. Nothing if `addr` or `len` is null.
///
/// # Safety
/// `len` is null or valid; `addr` is null or writable for `*len` bytes.
unsafe fn put_addr(b: &[u8], addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: len is valid (caller).
    let room = unsafe { *len } as usize;
    // SAFETY: addr is writable for room bytes (caller); we copy at most that many.
    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), addr.cast::<u8>(), b.len().min(room)) };
    // SAFETY: as above.
    unsafe { *len = b.len() as socklen_t };
}

/// The kernel's netlink address (port 0: the kernel).
fn sockaddr_nl() -> Vec<u8> {
    let mut b = vec![0u8; size_of::<libc::sockaddr_nl>()];
    b[..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
    b
}

/// A control call; its reply bytes, or -1 with errno.
fn control(i: &SockInfo, op: ControlOp) -> Result<Vec<u8>, c_int> {
    match call(&RunRequest::Control { ino: i.ino, op }) {
        Ok((RunReply::Control(b), _)) => Ok(b),
        Ok((RunReply::Connected(n), _)) => {
            remember(&n);
            Ok(Vec::new())
        }
        Ok((RunReply::Error(e), _)) => Err(e),
        Ok(_) => Err(libc::EPROTO),
        Err(e) => Err(e),
    }
}

fn ret(r: Result<Vec<u8>, c_int>) -> c_int {
    match r {
        Ok(_) => 0,
        Err(e) => fail(e),
    }
}

/// Whether a family goes to the stack.
fn ours(domain: c_int, protocol: c_int) -> bool {
    match domain {
        libc::AF_INET | libc::AF_INET6 | libc::AF_PACKET => true,
        libc::AF_NETLINK => protocol == libc::NETLINK_ROUTE,
        _ => false,
    }
}

/// Sets or clears `FD_CLOEXEC`.
fn cloexec(fd: c_int, on: bool) {
    // SAFETY: fcntl on an fd this library just received; integer arguments.
    unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) };
}

fn nonblocking(fd: c_int) -> bool {
    // SAFETY: fcntl F_GETFL with integer arguments.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    fl >= 0 && fl & libc::O_NONBLOCK != 0
}

/// A received fd handed to the program: close-on-exec only if asked, non-blocking if asked.
fn hand_over(fd: OwnedFd, flags: c_int) -> c_int {
    let raw = fd.into_raw_fd();
    cloexec(raw, flags & libc::SOCK_CLOEXEC != 0);
    if flags & libc::SOCK_NONBLOCK != 0 {
        // SAFETY: fcntl on the fd just received; integer arguments.
        unsafe {
            let fl = libc::fcntl(raw, libc::F_GETFL);
            libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
    raw
}
