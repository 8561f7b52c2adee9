//! The plug-in's C ABI (the seed's `struct ioth_functions`): `ioth_smoltcp_newstack`,
//! `ioth_smoltcp_delstack`, `ioth_smoltcp_license`, `ioth_smoltcp_newstack_error`, and the
//! socket and control functions `newstack` puts in `struct ioth_functions`. Runs in the host
//! process, on the host's thread. All the `unsafe` of C pointers is here.
//!
//! The data functions (`read` … `sendmsg`), `ioctl` and `fcntl` are libc's own: they act on the
//! application's end of the pair, a real socket ("proxied, fd data", docs/proxied.md). Every
//! other call finds its stack by the handle (the application end's fd number), so one process
//! may hold several stacks; only `socket` needs `getstackdata`. No panic crosses this boundary:
//! each function runs under `catch_unwind` and fails with `EIO` if the plug-in panicked.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ioth_plugin_sdk::abi::{GetStackDataFn, IothFunctions, LicenseStr};
use libc::{sockaddr, socklen_t};

use crate::stack::{Core, Shared, Stack};
use crate::{tcp, udp};

/// The host's `getstackdata`.
static GETSTACKDATA: AtomicUsize = AtomicUsize::new(0);
/// Why the last `newstack` failed.
static NEWSTACK_ERROR: Mutex<Option<CString>> = Mutex::new(None);
/// Every live stack of this process (the host has one; a test may have several).
static STACKS: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());
/// Longest address accepted from the caller.
const MAX_ADDR: usize = 128;
/// Longest option value accepted from the caller.
const MAX_OPT: usize = 256;

#[export_name = "ioth_smoltcp_license"]
static LICENSE: LicenseStr = LicenseStr::new("SPDX-License-Identifier: LGPL-2.1-or-later\0");

/// What the host's sandbox must leave (docs/security.md): write access to the places its VNLs
/// name (a `switch://` switch in the host creates a socket per port). No capability.
#[export_name = "ioth_smoltcp_sandbox"]
static SANDBOX: LicenseStr = LicenseStr::new("write=@vnl\0");

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = e };
}

fn errno_of(e: &io::Error) -> c_int {
    e.raw_os_error()
        .or_else(|| (e.get_ref().is_some()).then(|| ioth_plugin_sdk::errno_of(e)))
        .or_else(|| match e.kind() {
            io::ErrorKind::WouldBlock => Some(libc::EAGAIN),
            io::ErrorKind::InvalidInput => Some(libc::EINVAL),
            _ => None,
        })
        .unwrap_or(libc::EIO)
}

/// Runs `f`, turning an error or a panic into `-1` with errno.
fn guard(f: impl FnOnce() -> io::Result<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_errno(errno_of(&e));
            -1
        }
        Err(_) => {
            set_errno(libc::EIO);
            -1
        }
    }
}

/// The stack that owns handle `fd`.
fn stack_of(fd: RawFd) -> io::Result<Arc<Shared>> {
    let stacks: Vec<Arc<Shared>> = STACKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    stacks
        .into_iter()
        .find(|s| s.lock().handles.contains_key(&fd))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
}

/// Runs a control call on the stack of `fd` under its mutex, then wakes its event loop.
fn with_core<T>(fd: RawFd, f: impl FnOnce(&mut Core) -> io::Result<T>) -> io::Result<T> {
    let shared = stack_of(fd)?;
    let r = f(&mut shared.lock());
    shared.wake.signal();
    r
}

/// The caller's address bytes.
///
/// # Safety
/// `a` is NULL or readable for `len` bytes.
unsafe fn addr_in<'a>(a: *const sockaddr, len: socklen_t) -> io::Result<&'a [u8]> {
    if a.is_null() {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    let len = (len as usize).min(MAX_ADDR);
    // SAFETY: the caller guarantees `a` is readable for `len` bytes (at most MAX_ADDR used).
    Ok(unsafe { std::slice::from_raw_parts(a.cast::<u8>(), len) })
}

/// Copies `v` to a caller's `(buf, *len)` pair, truncating, and sets `*len` to `v`'s length
/// (`full_len`) or to what was copied.
///
/// # Safety
/// `len` is NULL or points to a socklen_t; `buf` is NULL or writable for `*len` bytes.
unsafe fn copy_out(v: &[u8], buf: *mut u8, len: *mut socklen_t, full_len: bool) -> io::Result<()> {
    if len.is_null() {
        return if buf.is_null() {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EFAULT))
        };
    }
    // SAFETY: len is non-null and points to a socklen_t (caller's contract).
    let room = unsafe { *len } as usize;
    let n = room.min(v.len());
    if !buf.is_null() && n > 0 {
        // SAFETY: buf is writable for `room` >= n bytes; v is readable for n bytes; they are
        // distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), buf, n) };
    }
    // SAFETY: as above.
    unsafe { *len = if full_len { v.len() } else { n } as socklen_t };
    Ok(())
}

/// `void *ioth_smoltcp_newstack(const char *vnlv[], const char *options,
/// struct ioth_functions *f)`. The stack takes no options (`EINVAL`).
///
/// # Safety
/// `vnlv` is NULL or a NULL-terminated array of C strings; `options` is NULL or a C string; `f`
/// points to a valid `ioth_functions` that outlives the stack.
#[export_name = "ioth_smoltcp_newstack"]
pub unsafe extern "C" fn newstack(
    vnlv: *const *const c_char,
    options: *const c_char,
    f: *mut IothFunctions,
) -> *mut c_void {
    ioth_plugin_sdk::end_host_on_panic();
    let r = catch_unwind(AssertUnwindSafe(|| -> io::Result<*mut c_void> {
        if f.is_null() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: the caller's contract, passed on; read before `f` is written (with no
        // options the host passes `f` itself as `options`).
        let (vnls, options) = unsafe {
            (
                ioth_plugin_sdk::cstr::vector(vnlv)?,
                ioth_plugin_sdk::cstr::string(options)?,
            )
        };
        ioth_plugin_sdk::refuse_options("smoltcp", options)?;
        let stack = Stack::new(&vnls)?;
        STACKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stack.shared.clone());
        // SAFETY: f is valid and ours for the duration of newstack (caller's contract).
        let f = unsafe { &mut *f };
        if let Some(g) = f.getstackdata {
            GETSTACKDATA.store(g as usize, Ordering::Release);
        }
        f.set_libc_functions();
        f.socket = Some(socket);
        f.close = Some(close);
        f.bind = Some(bind);
        f.connect = Some(connect);
        f.listen = Some(listen);
        f.accept = Some(accept);
        f.getsockname = Some(getsockname);
        f.getpeername = Some(getpeername);
        f.setsockopt = Some(setsockopt);
        f.getsockopt = Some(getsockopt);
        f.shutdown = Some(shutdown);
        Ok(Box::into_raw(Box::new(stack)).cast())
    }));
    let e = match r {
        Ok(Ok(p)) => {
            *NEWSTACK_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return p;
        }
        Ok(Err(e)) => e,
        Err(_) => io::Error::other("the plug-in panicked in newstack"),
    };
    let msg = CString::new(e.to_string().replace('\0', " ")).unwrap_or_default();
    *NEWSTACK_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    set_errno(errno_of(&e));
    std::ptr::null_mut()
}

/// `const char *ioth_smoltcp_newstack_error(void)`: why the last `newstack` failed, or NULL.
#[export_name = "ioth_smoltcp_newstack_error"]
pub extern "C" fn newstack_error() -> *const c_char {
    NEWSTACK_ERROR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(std::ptr::null(), |c| c.as_ptr())
}

/// `int ioth_smoltcp_delstack(void *stackdata)`: stops the event loop, closes everything.
///
/// # Safety
/// `stackdata` is a pointer `newstack` returned, not yet deleted.
#[export_name = "ioth_smoltcp_delstack"]
pub unsafe extern "C" fn delstack(stackdata: *mut c_void) -> c_int {
    if stackdata.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    guard(|| {
        // SAFETY: stackdata came from Box::into_raw(Box<Stack>) in newstack, given back once.
        let mut stack = unsafe { Box::from_raw(stackdata.cast::<Stack>()) };
        STACKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| !Arc::ptr_eq(s, &stack.shared));
        stack.stop();
        Ok(0)
    })
}

/// The stack `getstackdata` names (for `socket`).
fn current_stack() -> io::Result<Arc<Shared>> {
    let g = GETSTACKDATA.load(Ordering::Acquire);
    if g == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENETDOWN));
    }
    // SAFETY: g was stored from the host's getstackdata function pointer in newstack.
    let g: GetStackDataFn = unsafe { std::mem::transmute::<usize, GetStackDataFn>(g) };
    // SAFETY: getstackdata takes no arguments and returns our stack pointer or NULL.
    let p = unsafe { g() };
    // SAFETY: p is NULL or the Box<Stack> newstack returned, alive until delstack.
    let stack = unsafe { p.cast::<Stack>().as_ref() }
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENETDOWN))?;
    Ok(stack.shared.clone())
}

unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    guard(|| {
        let shared = current_stack()?;
        let r = shared.lock().socket(domain, ty, protocol);
        shared.wake.signal();
        r
    })
}

unsafe extern "C" fn close(fd: c_int) -> c_int {
    guard(|| with_core(fd, |c| c.close(fd)).map(|()| 0))
}

unsafe extern "C" fn bind(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
    guard(|| {
        // SAFETY: the caller passes an address readable for len bytes (bind(2)).
        let a = unsafe { addr_in(a, len) }?;
        with_core(fd, |c| c.bind(fd, a)).map(|()| 0)
    })
}

unsafe extern "C" fn connect(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
    guard(|| {
        // SAFETY: the caller passes an address readable for len bytes (connect(2)).
        let a = unsafe { addr_in(a, len) }?;
        with_core(fd, |c| {
            let (_, s) = c.sock(fd)?;
            match s.kind {
                crate::stack::Kind::Tcp(_) => tcp::connect(c, fd, a),
                crate::stack::Kind::Udp(_) => udp::connect(c, fd, a),
                crate::stack::Kind::Netlink(_) => Ok(()),
                crate::stack::Kind::Packet(_) | crate::stack::Kind::RawIp(_) => {
                    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
                }
            }
        })
        .map(|()| 0)
    })
}

unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    guard(|| with_core(fd, |c| tcp::listen(c, fd, backlog)).map(|()| 0))
}

unsafe extern "C" fn accept(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    guard(|| {
        let (h, peer) = with_core(fd, |c| tcp::accept(c, fd))?;
        // SAFETY: the caller passes NULL or a buffer of *len bytes (accept(2)).
        unsafe { copy_out(&peer, a.cast(), len, true) }?;
        Ok(h)
    })
}

unsafe extern "C" fn getsockname(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    guard(|| {
        let v = with_core(fd, |c| c.getsockname(fd))?;
        // SAFETY: the caller passes a buffer of *len bytes (getsockname(2)).
        unsafe { copy_out(&v, a.cast(), len, true) }?;
        Ok(0)
    })
}

unsafe extern "C" fn getpeername(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    guard(|| {
        let v = with_core(fd, |c| c.getpeername(fd))?;
        // SAFETY: the caller passes a buffer of *len bytes (getpeername(2)).
        unsafe { copy_out(&v, a.cast(), len, true) }?;
        Ok(0)
    })
}

unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    v: *const c_void,
    len: socklen_t,
) -> c_int {
    guard(|| {
        let len = (len as usize).min(MAX_OPT);
        let v: &[u8] = if v.is_null() || len == 0 {
            &[]
        } else {
            // SAFETY: the caller passes a value readable for len bytes (setsockopt(2)).
            unsafe { std::slice::from_raw_parts(v.cast::<u8>(), len) }
        };
        with_core(fd, |c| c.setsockopt(fd, level, name, v)).map(|()| 0)
    })
}

unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    v: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    guard(|| {
        let val = with_core(fd, |c| c.getsockopt(fd, level, name))?;
        // SAFETY: the caller passes a buffer of *len bytes (getsockopt(2)).
        unsafe { copy_out(&val, v.cast(), len, false) }?;
        Ok(0)
    })
}

unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    guard(|| with_core(fd, |c| c.shutdown(fd, how)).map(|()| 0))
}
