//! The control calls on the stack's sockets (`socket`, `bind`, `connect`, `listen`, `accept`,
//! the names, the options, `shutdown`, `close`, `dup2`/`dup3`): made by the runner, each an
//! exported symbol that takes the place of libc's.

use super::*;

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
