//! Rust plug-ins whose sockets are proxied fds: the [`ProxiedStack`] trait and the state behind
//! [`crate::export_proxied_stack!`], which turns an implementation into the plug-in C ABI (its
//! own `socket` and control functions, libc's data functions).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use libc::{sockaddr, socklen_t};

use super::{Handle, MAX_ADDRLEN, MAX_OPTLEN};
use crate::abi::IothFunctions;
use crate::{errno_of, PluginState};

/// A stack whose sockets are proxied fds (docs/proxied.md): [`ProxiedStack::socket`] makes a
/// pair, serves one end itself and hands the other to the host ([`Handle::give`]); the host
/// sends that end to the application, which uses it with plain data calls, and forwards the
/// control calls here with its [`Handle`]. Every method runs on a host thread; a stack serves
/// its pairs from threads of its own.
pub trait ProxiedStack: Send + Sync + Sized + 'static {
    /// Creates the stack, one interface per VNL; `options` as for [`crate::NativeStack::new`].
    fn new(vnls: &[&str], options: &str) -> io::Result<Self>;
    /// Whether `h` is a socket of this stack (a process may hold several stacks).
    fn owns(&self, h: Handle) -> bool;
    /// `socket(2)`: a new socket, as the handle of its application end.
    fn socket(&self, domain: c_int, ty: c_int, protocol: c_int) -> io::Result<Handle>;
    /// `close(2)`: the host is done with `h` (it closes the fd after this returns).
    fn close(&self, h: Handle) -> io::Result<()>;
    /// `bind(2)` to the `sockaddr` bytes `addr` (at most [`MAX_ADDRLEN`]).
    fn bind(&self, h: Handle, addr: &[u8]) -> io::Result<()>;
    /// `connect(2)` to `addr`; a stream socket answers `EINPROGRESS` and fills the pair
    /// ([`super::filler`]) until the connection is made.
    fn connect(&self, h: Handle, addr: &[u8]) -> io::Result<()>;
    /// `listen(2)`.
    fn listen(&self, h: Handle, backlog: c_int) -> io::Result<()>;
    /// `accept(2)`, non-blocking: the new socket's handle and the peer's `sockaddr` bytes.
    fn accept(&self, h: Handle) -> io::Result<(Handle, Vec<u8>)>;
    /// `getsockname(2)`: the `sockaddr` bytes.
    fn getsockname(&self, h: Handle) -> io::Result<Vec<u8>>;
    /// `getpeername(2)`: the `sockaddr` bytes.
    fn getpeername(&self, h: Handle) -> io::Result<Vec<u8>>;
    /// `setsockopt(2)` with the value's bytes (at most [`MAX_OPTLEN`]).
    fn setsockopt(&self, h: Handle, level: c_int, name: c_int, value: &[u8]) -> io::Result<()>;
    /// `getsockopt(2)`: the value's bytes (the caller truncates them to its buffer).
    fn getsockopt(&self, h: Handle, level: c_int, name: c_int) -> io::Result<Vec<u8>>;
    /// `shutdown(2)`.
    fn shutdown(&self, h: Handle, how: c_int) -> io::Result<()>;
    /// `delstack`: stops the stack; its sockets are gone afterwards.
    fn delete(&self) -> io::Result<()>;
}

/// Per-plug-in state behind [`crate::export_proxied_stack!`]: what every Rust plug-in keeps
/// ([`PluginState`]) and the live stacks, to find the one a handle belongs to.
pub struct ProxiedState<T> {
    base: PluginState,
    stacks: Mutex<Vec<Arc<T>>>,
}

/// Runs `f`, turning an error or a panic into `-1` with errno.
fn guard(f: impl FnOnce() -> io::Result<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            crate::errno::set(errno_of(&e));
            -1
        }
        Err(_) => {
            crate::errno::set(libc::EIO);
            -1
        }
    }
}

fn err(e: c_int) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// The caller's bytes at `p` (`EFAULT` for NULL with a length), at most `max`.
///
/// # Safety
/// `p` is NULL or readable for `len` bytes.
unsafe fn bytes_in<'a>(p: *const c_void, len: socklen_t, max: usize) -> io::Result<&'a [u8]> {
    let len = (len as usize).min(max);
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(err(libc::EFAULT));
    }
    // SAFETY: the caller guarantees `p` is readable for `len` bytes (at most `max` used).
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// Copies `v` to a caller's `(buf, *len)` pair, truncating, and sets `*len` to `v`'s length
/// (`full_len`, as the address calls) or to what was copied (as `getsockopt`).
///
/// # Safety
/// `len` is NULL or points to a socklen_t; `buf` is NULL or writable for `*len` bytes.
unsafe fn copy_out(v: &[u8], buf: *mut u8, len: *mut socklen_t, full_len: bool) -> io::Result<()> {
    if len.is_null() {
        return if buf.is_null() {
            Ok(())
        } else {
            Err(err(libc::EFAULT))
        };
    }
    // SAFETY: len is non-null and points to a socklen_t (caller's contract).
    let room = unsafe { *len } as usize;
    let n = room.min(v.len());
    if n > 0 && !buf.is_null() {
        // SAFETY: buf is writable for `room` >= n bytes; v is readable for n bytes; they are
        // distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), buf, n) };
    }
    // SAFETY: as above.
    unsafe { *len = if full_len { v.len() } else { n } as socklen_t };
    Ok(())
}

impl<T: ProxiedStack> ProxiedState<T> {
    /// An empty state, for a `static`.
    pub const fn new() -> ProxiedState<T> {
        ProxiedState {
            base: PluginState::new(),
            stacks: Mutex::new(Vec::new()),
        }
    }

    fn stacks(&self) -> std::sync::MutexGuard<'_, Vec<Arc<T>>> {
        self.stacks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stack that owns `h`.
    fn owner(&self, h: Handle) -> io::Result<Arc<T>> {
        let stacks = self.stacks().clone();
        stacks
            .into_iter()
            .find(|s| s.owns(h))
            .ok_or_else(|| err(libc::EBADF))
    }

    /// Runs `f` on the stack of handle `fd`.
    fn on<R>(&self, fd: c_int, f: impl FnOnce(&T, Handle) -> io::Result<R>) -> io::Result<R> {
        let h = Handle::from_raw(fd);
        f(&*self.owner(h)?, h)
    }

    /// `newstack`: makes a `T`, fills `f` with `install` (the macro's functions, over libc's
    /// data functions).
    ///
    /// # Safety
    /// As [`PluginState::newstack`].
    pub unsafe fn newstack(
        &self,
        vnlv: *const *const c_char,
        options: *const c_char,
        f: *mut IothFunctions,
        install: impl FnOnce(&mut IothFunctions),
    ) -> *mut c_void {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            self.base.newstack_with(
                vnlv,
                options,
                f,
                |vnls, options| {
                    let stack = Arc::new(T::new(vnls, options)?);
                    self.stacks().push(stack.clone());
                    Ok(Box::into_raw(Box::new(stack)).cast())
                },
                |f| {
                    f.set_libc_functions();
                    install(f);
                },
            )
        }
    }

    /// `newstack_error`.
    pub fn newstack_error(&self) -> *const c_char {
        self.base.newstack_error()
    }

    /// `delstack`.
    ///
    /// # Safety
    /// `stackdata` is a pointer [`ProxiedState::newstack`] returned, not yet deleted.
    pub unsafe fn delstack(&self, stackdata: *mut c_void) -> c_int {
        if stackdata.is_null() {
            crate::errno::set(libc::EINVAL);
            return -1;
        }
        // SAFETY: stackdata came from Box::into_raw(Box<Arc<T>>) in newstack, given back once.
        let stack = unsafe { Box::from_raw(stackdata.cast::<Arc<T>>()) };
        self.stacks().retain(|s| !Arc::ptr_eq(s, &stack));
        guard(|| stack.delete().map(|()| 0))
    }

    /// `socket`, on the stack the host's `getstackdata` names.
    pub fn socket(&self, domain: c_int, ty: c_int, protocol: c_int) -> c_int {
        guard(|| {
            // SAFETY: this plug-in's newstack returns Box<Arc<T>> pointers.
            let stack = unsafe { self.base.stackdata::<Arc<T>>() }
                .cloned()
                .ok_or_else(|| err(libc::ENETDOWN))?;
            stack.socket(domain, ty, protocol).map(Handle::raw)
        })
    }

    /// `close`.
    pub fn close(&self, fd: c_int) -> c_int {
        guard(|| self.on(fd, |s, h| s.close(h)).map(|()| 0))
    }

    /// `bind`.
    ///
    /// # Safety
    /// `a` is NULL or readable for `len` bytes.
    pub unsafe fn bind(&self, fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
        guard(|| {
            // SAFETY: the caller's contract.
            let a = unsafe { bytes_in(a.cast(), len, MAX_ADDRLEN) }?;
            self.on(fd, |s, h| s.bind(h, a)).map(|()| 0)
        })
    }

    /// `connect`.
    ///
    /// # Safety
    /// `a` is NULL or readable for `len` bytes.
    pub unsafe fn connect(&self, fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
        guard(|| {
            // SAFETY: the caller's contract.
            let a = unsafe { bytes_in(a.cast(), len, MAX_ADDRLEN) }?;
            self.on(fd, |s, h| s.connect(h, a)).map(|()| 0)
        })
    }

    /// `listen`.
    pub fn listen(&self, fd: c_int, backlog: c_int) -> c_int {
        guard(|| self.on(fd, |s, h| s.listen(h, backlog)).map(|()| 0))
    }

    /// `accept`.
    ///
    /// # Safety
    /// `len` is NULL or points to a socklen_t; `a` is NULL or writable for `*len` bytes.
    pub unsafe fn accept(&self, fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
        guard(|| {
            let (n, peer) = self.on(fd, |s, h| s.accept(h))?;
            // SAFETY: the caller's contract.
            unsafe { copy_out(&peer, a.cast(), len, true) }?;
            Ok(n.raw())
        })
    }

    /// `getsockname`.
    ///
    /// # Safety
    /// As [`ProxiedState::accept`].
    pub unsafe fn getsockname(&self, fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
        guard(|| {
            let v = self.on(fd, |s, h| s.getsockname(h))?;
            // SAFETY: the caller's contract.
            unsafe { copy_out(&v, a.cast(), len, true) }?;
            Ok(0)
        })
    }

    /// `getpeername`.
    ///
    /// # Safety
    /// As [`ProxiedState::accept`].
    pub unsafe fn getpeername(&self, fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
        guard(|| {
            let v = self.on(fd, |s, h| s.getpeername(h))?;
            // SAFETY: the caller's contract.
            unsafe { copy_out(&v, a.cast(), len, true) }?;
            Ok(0)
        })
    }

    /// `setsockopt`.
    ///
    /// # Safety
    /// `v` is NULL or readable for `len` bytes.
    pub unsafe fn setsockopt(
        &self,
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *const c_void,
        len: socklen_t,
    ) -> c_int {
        guard(|| {
            // SAFETY: the caller's contract.
            let v = unsafe { bytes_in(v, len, MAX_OPTLEN) }?;
            self.on(fd, |s, h| s.setsockopt(h, level, name, v))
                .map(|()| 0)
        })
    }

    /// `getsockopt`.
    ///
    /// # Safety
    /// `len` is NULL or points to a socklen_t; `v` is NULL or writable for `*len` bytes.
    pub unsafe fn getsockopt(
        &self,
        fd: c_int,
        level: c_int,
        name: c_int,
        v: *mut c_void,
        len: *mut socklen_t,
    ) -> c_int {
        guard(|| {
            let val = self.on(fd, |s, h| s.getsockopt(h, level, name))?;
            // SAFETY: the caller's contract.
            unsafe { copy_out(&val, v.cast(), len, false) }?;
            Ok(0)
        })
    }

    /// `shutdown`.
    pub fn shutdown(&self, fd: c_int, how: c_int) -> c_int {
        guard(|| self.on(fd, |s, h| s.shutdown(h, how)).map(|()| 0))
    }
}

impl<T: ProxiedStack> Default for ProxiedState<T> {
    fn default() -> Self {
        Self::new()
    }
}
