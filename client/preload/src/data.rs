//! The data calls on the stack's sockets (`sendto`, `send`, `recvfrom`, `recv`, `sendmsg`,
//! `recvmsg`) and `ioctl`: the 28-byte address header of unconnected datagram sockets added and
//! stripped, the addresses reported, the interface ioctls refused.

use super::*;

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
