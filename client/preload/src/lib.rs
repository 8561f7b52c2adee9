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

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

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

fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
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

#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let r = guarded(|| {
        if !ours(domain, protocol) {
            return None;
        }
        Some(
            match call(&RunRequest::Socket {
                domain,
                ty,
                protocol,
            }) {
                Ok((RunReply::Socket(i), mut fds)) => {
                    remember(&i);
                    hand_over(fds.pop().expect("fd count checked"), ty)
                }
                Ok((RunReply::Error(e), _)) => fail(e),
                Ok(_) => fail(libc::EPROTO),
                Err(e) => fail(e),
            },
        )
    });
    match r.flatten() {
        Some(fd) => fd,
        // SAFETY: libc's socket(2) with the caller's arguments.
        None => unsafe { (real().socket)(domain, ty, protocol) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let r = guarded(|| {
        let i = info(fd, false)?;
        // SAFETY: addr is readable for len bytes (bind(2)'s contract).
        Some(match unsafe { addr_bytes(addr, len) } {
            None => fail(libc::EINVAL),
            Some(a) => ret(control(&i, ControlOp::Bind(a))),
        })
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's bind(2) with the caller's arguments.
        None => unsafe { (real().bind)(fd, addr, len) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let r = guarded(|| {
        let i = info(fd, false)?;
        // SAFETY: addr is readable for len bytes (connect(2)'s contract).
        Some(match unsafe { addr_bytes(addr, len) } {
            None => fail(libc::EINVAL),
            Some(a) => ret(control(&i, ControlOp::Connect(a))),
        })
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's connect(2) with the caller's arguments.
        None => unsafe { (real().connect)(fd, addr, len) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let r = guarded(|| {
        let i = info(fd, false)?;
        Some(ret(control(&i, ControlOp::Listen(backlog))))
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's listen(2) with the caller's arguments.
        None => unsafe { (real().listen)(fd, backlog) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments, as accept(2) takes them.
    unsafe { accept4(fd, addr, len, 0) }
}

#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let r = guarded(|| {
        let i = info(fd, false)?;
        if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
            return Some(fail(libc::EINVAL));
        }
        loop {
            if !nonblocking(fd) {
                // Wait here, interruptibly, for a pending connection (the fd polls readable
                // exactly then).
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: p is one live pollfd.
                if unsafe { libc::poll(&mut p, 1, -1) } < 0 {
                    return Some(fail(errno()));
                }
            }
            match call(&RunRequest::Accept { ino: i.ino }) {
                Ok((RunReply::Accepted { info: n, peer }, mut fds)) => {
                    remember(&n);
                    // SAFETY: addr/len as accept(2) takes them.
                    unsafe { put_addr(&peer, addr, len) };
                    return Some(hand_over(fds.pop().expect("fd count checked"), flags));
                }
                Ok((RunReply::Error(libc::EAGAIN), _)) if !nonblocking(fd) => continue,
                Ok((RunReply::Error(e), _)) => return Some(fail(e)),
                Ok(_) => return Some(fail(libc::EPROTO)),
                Err(e) => return Some(fail(e)),
            }
        }
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's accept4(2) with the caller's arguments.
        None => unsafe { (real().accept4)(fd, addr, len, flags) },
    }
}

unsafe fn name(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, peer: bool) -> Option<c_int> {
    let r = guarded(|| {
        let i = info(fd, false)?;
        if addr.is_null() || len.is_null() {
            return Some(fail(libc::EFAULT));
        }
        let op = if peer {
            ControlOp::GetPeerName
        } else {
            ControlOp::GetSockName
        };
        Some(match control(&i, op) {
            Ok(b) => {
                // SAFETY: addr/len as getsockname(2) takes them (checked non-null).
                unsafe { put_addr(&b, addr, len) };
                0
            }
            Err(e) => fail(e),
        })
    });
    r.flatten()
}

#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments, as getsockname(2) takes them.
    match unsafe { name(fd, addr, len, false) } {
        Some(v) => v,
        // SAFETY: libc's getsockname(2) with the caller's arguments.
        None => unsafe { (real().getsockname)(fd, addr, len) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments, as getpeername(2) takes them.
    match unsafe { name(fd, addr, len, true) } {
        Some(v) => v,
        // SAFETY: libc's getpeername(2) with the caller's arguments.
        None => unsafe { (real().getpeername)(fd, addr, len) },
    }
}

/// Options that live on the fd itself (they bound the program's reads and writes).
fn fd_option(level: c_int, name: c_int) -> bool {
    level == libc::SOL_SOCKET
        && matches!(
            name,
            libc::SO_RCVTIMEO | libc::SO_SNDTIMEO | libc::SO_RCVBUF | libc::SO_SNDBUF
        )
}

#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    optname: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    let r = guarded(|| {
        let i = info(fd, false)?;
        if fd_option(level, optname) {
            return None;
        }
        if (len as usize) > MAX_SOCKOPT || (val.is_null() && len > 0) {
            return Some(fail(libc::EINVAL));
        }
        let value = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: val is readable for len bytes (setsockopt(2)'s contract), checked non-null.
            unsafe { std::slice::from_raw_parts(val.cast::<u8>(), len as usize) }.to_vec()
        };
        Some(ret(control(
            &i,
            ControlOp::SetSockOpt {
                level,
                name: optname,
                value,
            },
        )))
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's setsockopt(2) with the caller's arguments.
        None => unsafe { (real().setsockopt)(fd, level, optname, val, len) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    optname: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    let r = guarded(|| {
        let i = info(fd, false)?;
        if fd_option(level, optname) {
            return None;
        }
        if val.is_null() || len.is_null() {
            return Some(fail(libc::EFAULT));
        }
        // SAFETY: len is valid (checked non-null).
        let room = (unsafe { *len } as usize).min(MAX_SOCKOPT);
        let local = match (level, optname) {
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => Some(i.domain),
            (libc::SOL_SOCKET, libc::SO_TYPE) => Some(i.ty),
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => Some(i.protocol),
            _ => None,
        };
        let bytes = match local {
            Some(v) => Ok(v.to_ne_bytes().to_vec()),
            None => control(
                &i,
                ControlOp::GetSockOpt {
                    level,
                    name: optname,
                    len: room as u32,
                },
            ),
        };
        Some(match bytes {
            Ok(b) => {
                let n = b.len().min(room);
                // SAFETY: val is writable for *len bytes (getsockopt(2)'s contract); n ≤ that.
                unsafe {
                    std::ptr::copy_nonoverlapping(b.as_ptr(), val.cast::<u8>(), n);
                    *len = n as socklen_t;
                }
                0
            }
            Err(e) => fail(e),
        })
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's getsockopt(2) with the caller's arguments.
        None => unsafe { (real().getsockopt)(fd, level, optname, val, len) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    let r = guarded(|| {
        let i = info(fd, false)?;
        Some(ret(control(&i, ControlOp::Shutdown(how))))
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's shutdown(2) with the caller's arguments.
        None => unsafe { (real().shutdown)(fd, how) },
    }
}

/// Tells the runner that an fd of `ino` was closed here.
fn closed(ino: u64) {
    let _ = call(&RunRequest::Closed { ino });
}

#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let r = guarded(|| {
        let i = info(fd, false)?;
        // SAFETY: libc's close(2) of the caller's fd.
        let r = unsafe { (real().close)(fd) };
        let e = errno();
        closed(i.ino);
        set_errno(e);
        Some(r)
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's close(2) with the caller's argument.
        None => unsafe { (real().close)(fd) },
    }
}

/// `dup2`/`dup3` over an fd of the stack: the runner hears that it was closed.
fn dup_over(old: c_int, new: c_int, f: impl FnOnce() -> c_int) -> c_int {
    let over = if old == new {
        None
    } else {
        guarded(|| info(new, false)).flatten()
    };
    let r = f();
    if r >= 0 {
        if let Some(i) = over {
            let e = errno();
            guarded(|| closed(i.ino));
            set_errno(e);
        }
    }
    r
}

#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: libc's dup2(2) with the caller's arguments.
    dup_over(old, new, || unsafe { (real().dup2)(old, new) })
}

#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: libc's dup3(2) with the caller's arguments.
    dup_over(old, new, || unsafe { (real().dup3)(old, new, flags) })
}

/// Largest UDP payloads (IPv4, IPv6).
fn too_big(i: &SockInfo, n: usize, dest: &[u8]) -> bool {
    if i.ty != libc::SOCK_DGRAM || !matches!(i.domain, libc::AF_INET | libc::AF_INET6) {
        return false;
    }
    let v4 = match dest
        .get(..2)
        .map(|f| u16::from_ne_bytes([f[0], f[1]]) as c_int)
    {
        Some(libc::AF_INET) => true,
        // A v4-mapped destination (::ffff:a.b.c.d) is IPv4 on the wire.
        Some(libc::AF_INET6) => dest
            .get(8..20)
            .is_some_and(|a| a[..10] == [0; 10] && a[10..] == [0xff, 0xff]),
        _ => false,
    };
    n > if v4 { 65507 } else { 65527 }
}

/// Sends one framed record: the header for `dest`, then the payload parts.
fn send_framed(
    fd: c_int,
    i: &SockInfo,
    dest: &[u8],
    parts: &[libc::iovec],
    flags: c_int,
) -> ssize_t {
    let hdr = match header_from_sockaddr(dest) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let total: usize = parts.iter().map(|p| p.iov_len).sum();
    if too_big(i, total, dest) {
        return fail(libc::EMSGSIZE);
    }
    let mut iov = Vec::with_capacity(parts.len() + 1);
    iov.push(libc::iovec {
        iov_base: hdr.as_ptr() as *mut c_void,
        iov_len: HDR_LEN,
    });
    iov.extend_from_slice(parts);
    // SAFETY: msghdr is plain old data; zeroed is an empty header.
    let mut m: msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov.as_mut_ptr();
    m.msg_iovlen = iov.len();
    // SAFETY: m points at iov, whose entries point at hdr (live here) and the caller's buffers.
    let n = unsafe { (real().sendmsg)(fd, &m, flags | libc::MSG_NOSIGNAL) };
    if n < 0 {
        n
    } else {
        (n as usize).saturating_sub(HDR_LEN) as ssize_t
    }
}

/// Receives one framed record into `parts`; the source's address bytes. A record shorter
/// than the header (the stack is gone: EOF) gives 0.
fn recv_framed(
    fd: c_int,
    parts: &[libc::iovec],
    flags: c_int,
) -> Result<(usize, Vec<u8>, c_int), c_int> {
    let mut hdr = [0u8; HDR_LEN];
    let mut iov = Vec::with_capacity(parts.len() + 1);
    iov.push(libc::iovec {
        iov_base: hdr.as_mut_ptr().cast(),
        iov_len: HDR_LEN,
    });
    iov.extend_from_slice(parts);
    // SAFETY: msghdr is plain old data; zeroed is an empty header.
    let mut m: msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov.as_mut_ptr();
    m.msg_iovlen = iov.len();
    // SAFETY: m points at iov, whose entries point at hdr (live here) and the caller's buffers.
    let n = unsafe { (real().recvmsg)(fd, &mut m, flags) };
    if n < 0 {
        return Err(errno());
    }
    let n = n as usize;
    if n < HDR_LEN {
        return Ok((0, Vec::new(), 0));
    }
    let from = sockaddr_from_header(&hdr).unwrap_or_default();
    Ok((n - HDR_LEN, from, m.msg_flags))
}

/// The address a plain receive reports on `i` when its records carry none.
fn implicit_source(i: &SockInfo) -> Option<Vec<u8>> {
    if i.domain == libc::AF_NETLINK {
        Some(sockaddr_nl())
    } else if i.ty != libc::SOCK_STREAM && i.connected {
        Some(i.peer.clone())
    } else {
        None
    }
}

#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    let r = guarded(|| {
        let i = info_now(fd)?;
        if !i.framed() {
            // SAFETY: libc's send(2) on the caller's buffer (the address is the peer's, or
            // meaningless on the pair).
            return Some(unsafe { (real().send)(fd, buf, n, flags | libc::MSG_NOSIGNAL) });
        }
        // SAFETY: addr is readable for alen bytes (sendto(2)'s contract).
        let Some(dest) = (unsafe { addr_bytes(addr, alen) }) else {
            return Some(fail(if addr.is_null() {
                libc::EDESTADDRREQ
            } else {
                libc::EINVAL
            }));
        };
        let part = libc::iovec {
            iov_base: buf as *mut c_void,
            iov_len: n,
        };
        Some(send_framed(fd, &i, &dest, &[part], flags))
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's sendto(2) with the caller's arguments.
        None => unsafe { (real().sendto)(fd, buf, n, flags, addr, alen) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    let r = guarded(|| {
        let i = info_now(fd)?;
        Some(if i.framed() {
            fail(libc::EDESTADDRREQ)
        } else {
            // SAFETY: libc's send(2) with the caller's arguments.
            unsafe { (real().send)(fd, buf, n, flags | libc::MSG_NOSIGNAL) }
        })
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's send(2) with the caller's arguments.
        None => unsafe { (real().send)(fd, buf, n, flags) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    let r = guarded(|| {
        let i = info_now(fd)?;
        if i.framed() {
            let part = libc::iovec {
                iov_base: buf,
                iov_len: n,
            };
            return Some(match recv_framed(fd, &[part], flags) {
                Ok((got, from, _)) => {
                    // SAFETY: addr/alen as recvfrom(2) takes them.
                    unsafe { put_addr(&from, addr, alen) };
                    got as ssize_t
                }
                Err(e) => fail(e),
            });
        }
        // SAFETY: libc's recv(2) into the caller's buffer.
        let got = unsafe { (real().recv)(fd, buf, n, flags) };
        if got >= 0 && !alen.is_null() {
            match implicit_source(&i) {
                // SAFETY: addr/alen as recvfrom(2) takes them.
                Some(src) => unsafe { put_addr(&src, addr, alen) },
                // SAFETY: alen is valid (checked).
                None => unsafe { *alen = 0 },
            }
        }
        Some(got)
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's recvfrom(2) with the caller's arguments.
        None => unsafe { (real().recvfrom)(fd, buf, n, flags, addr, alen) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, as recv(2) takes them (no address wanted).
    unsafe {
        recvfrom(
            fd,
            buf,
            n,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// The iovecs of a C `msghdr`.
///
/// # Safety
/// `m` is a valid msghdr whose `msg_iov` holds `msg_iovlen` entries.
unsafe fn iovecs(m: &msghdr) -> Vec<libc::iovec> {
    if m.msg_iov.is_null() || m.msg_iovlen == 0 {
        return Vec::new();
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(m.msg_iov, m.msg_iovlen) }.to_vec()
}

#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    let r = guarded(|| {
        let i = info_now(fd)?;
        if msg.is_null() {
            return Some(fail(libc::EFAULT));
        }
        // SAFETY: msg is a valid msghdr (sendmsg(2)'s contract), checked non-null.
        let m = unsafe { &*msg };
        // SAFETY: as above.
        let parts = unsafe { iovecs(m) };
        if i.framed() {
            // SAFETY: msg_name is readable for msg_namelen bytes (sendmsg(2)'s contract).
            let Some(dest) = (unsafe { addr_bytes(m.msg_name.cast(), m.msg_namelen) }) else {
                return Some(fail(libc::EDESTADDRREQ));
            };
            return Some(send_framed(fd, &i, &dest, &parts, flags));
        }
        // The pair has no addresses: a copy of the header without one.
        let mut plain = *m;
        plain.msg_name = std::ptr::null_mut();
        plain.msg_namelen = 0;
        // SAFETY: libc's sendmsg(2) on the caller's header, its name left out.
        Some(unsafe { (real().sendmsg)(fd, &plain, flags | libc::MSG_NOSIGNAL) })
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's sendmsg(2) with the caller's arguments.
        None => unsafe { (real().sendmsg)(fd, msg, flags) },
    }
}

#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let r = guarded(|| {
        let i = info_now(fd)?;
        if msg.is_null() {
            return Some(fail(libc::EFAULT));
        }
        // SAFETY: msg is a valid msghdr (recvmsg(2)'s contract), checked non-null.
        let m = unsafe { &mut *msg };
        let put_name = |m: &mut msghdr, src: Option<Vec<u8>>| {
            if m.msg_name.is_null() {
                m.msg_namelen = 0;
                return;
            }
            match src {
                Some(b) => {
                    let n = b.len().min(m.msg_namelen as usize);
                    // SAFETY: msg_name is writable for msg_namelen bytes (recvmsg(2)'s
                    // contract); n ≤ that.
                    unsafe {
                        std::ptr::copy_nonoverlapping(b.as_ptr(), m.msg_name.cast::<u8>(), n)
                    };
                    m.msg_namelen = b.len() as socklen_t;
                }
                None => m.msg_namelen = 0,
            }
        };
        if i.framed() {
            // SAFETY: as above.
            let parts = unsafe { iovecs(m) };
            return Some(match recv_framed(fd, &parts, flags) {
                Ok((got, from, fl)) => {
                    put_name(m, Some(from));
                    m.msg_controllen = 0;
                    m.msg_flags = fl;
                    got as ssize_t
                }
                Err(e) => fail(e),
            });
        }
        let (name, namelen) = (m.msg_name, m.msg_namelen);
        m.msg_name = std::ptr::null_mut();
        m.msg_namelen = 0;
        // SAFETY: libc's recvmsg(2) on the caller's header, its name left out.
        let got = unsafe { (real().recvmsg)(fd, m, flags) };
        m.msg_name = name;
        m.msg_namelen = namelen;
        if got >= 0 {
            put_name(m, implicit_source(&i));
        }
        Some(got)
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's recvmsg(2) with the caller's arguments.
        None => unsafe { (real().recvmsg)(fd, msg, flags) },
    }
}

/// `ioctl(fd, request, arg)`. glibc declares it variadic; on the ABIs Linux runs on a third
/// argument arrives where a fixed pointer argument would, which is what every ioctl passes.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: *mut c_void) -> c_int {
    let r = guarded(|| {
        let i = info(fd, false)?;
        if (0x890b..=0x89ff).contains(&req) {
            // SIOCGIF*/SIOCSIF*/routing ioctls: the kernel would answer for the machine.
            return Some(fail(libc::ENODEV));
        }
        if req == libc::FIONREAD as c_ulong && inet_dgram(&i) {
            let i = info(fd, true)?;
            // SAFETY: libc's ioctl(2) with the caller's arguments.
            let r = unsafe { (real().ioctl)(fd, req, arg) };
            if r == 0 && i.framed() && !arg.is_null() {
                // SAFETY: FIONREAD's argument is an int the kernel just wrote.
                unsafe {
                    let v = arg.cast::<c_int>();
                    *v = (*v - HDR_LEN as c_int).max(0);
                }
            }
            return Some(r);
        }
        None
    });
    match r.flatten() {
        Some(v) => v,
        // SAFETY: libc's ioctl(2) with the caller's arguments.
        None => unsafe { (real().ioctl)(fd, req, arg) },
    }
}
