//! libvdeplug (vdeplug4), loaded at run time. Runs in the host process.
//!
//! The library is `libvdeplug.so.2` (Debian package `libvdeplug2`), opened with dlopen the first
//! time a stack needs a VNL and never closed: the handle lives in a `static` for the life of the
//! process, so no connection outlives the code that serves it. Its path can be overridden with
//! `IOTH_LIBVDEPLUG` (a file name or path), which is also how tests simulate a missing library.
//!
//! `vde_open` is a macro in `libvdeplug.h`; the symbol is `vde_open_real`, called with
//! `LIBVDEPLUG_INTERFACE_VERSION` 1 and NULL open arguments.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::OnceLock;

use crate::error;
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

/// The soname we load (never the development-only `libvdeplug.so`).
pub const SONAME: &str = "libvdeplug.so.2";
/// `LIBVDEPLUG_INTERFACE_VERSION`.
const INTERFACE_VERSION: c_int = 1;
/// `VDE_ETHBUFSIZE`: the largest frame a VDE network carries (9216 + 14 + 4).
pub const ETHBUFSIZE: usize = 9216 + 14 + 4;

type OpenFn = unsafe extern "C" fn(*mut c_char, *mut c_char, c_int, *mut c_void) -> *mut c_void;
type SendFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int) -> isize;
type RecvFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, c_int) -> isize;
type FdFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// The six functions we use, resolved once.
struct Api {
    /// Keeps the functions below mapped; never dropped (it lives in a `static`).
    _lib: Library,
    open: OpenFn,
    send: SendFn,
    recv: RecvFn,
    datafd: FdFn,
    ctlfd: FdFn,
    close: CloseFn,
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn load() -> Result<Api, String> {
    let name = std::env::var("IOTH_LIBVDEPLUG").unwrap_or_else(|_| SONAME.to_owned());
    // SAFETY: loading libvdeplug runs its initialisers, which only register its own state; it
    // is the library this plug-in is written against.
    let lib = unsafe { Library::open(Some(&name), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
        format!(
            "VDE networks need libvdeplug ({name}), which could not be loaded: {e}; \
             install the package libvdeplug2 (Debian/Ubuntu: apt-get install libvdeplug2)"
        )
    })?;
    macro_rules! sym {
        ($name:literal, $ty:ty) => {{
            // SAFETY: the symbol has this C signature in libvdeplug.h (interface version 1).
            let s = unsafe { lib.get::<$ty>(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("{name} has no {}: {e}", $name))?;
            *s
        }};
    }
    Ok(Api {
        open: sym!("vde_open_real", OpenFn),
        send: sym!("vde_send", SendFn),
        recv: sym!("vde_recv", RecvFn),
        datafd: sym!("vde_datafd", FdFn),
        ctlfd: sym!("vde_ctlfd", FdFn),
        close: sym!("vde_close", CloseFn),
        _lib: lib,
    })
}

fn api() -> io::Result<&'static Api> {
    API.get_or_init(load)
        .as_ref()
        .map_err(|m| error(libc::ENOPKG, m.clone()))
}

/// Loads libvdeplug now (if not yet loaded); fails with `ENOPKG` and a message that names the
/// package when it is missing.
pub fn ensure_loaded() -> io::Result<()> {
    api().map(|_| ())
}

/// One open VDE connection (`VDECONN *`), closed on drop.
pub struct Conn {
    conn: NonNull<c_void>,
    api: &'static Api,
}

// SAFETY: a VDECONN is a heap object of libvdeplug with no thread affinity; `Conn` is its only
// handle and is not `Sync`, so one thread at a time uses it.
unsafe impl Send for Conn {}

impl Conn {
    /// `vde_open(url, descr, NULL)`: connects to the VDE network named by `url`.
    pub fn open(url: &str, descr: &str) -> io::Result<Conn> {
        let api = api()?;
        let bad = |what: &str| error(libc::EINVAL, format!("malformed VNL {url:?}: {what}"));
        // libvdeplug takes `char *`: give it buffers it may write to.
        let mut url_c = CString::new(url)
            .map_err(|_| bad("it contains a NUL byte"))?
            .into_bytes_with_nul();
        let mut descr_c = CString::new(descr)
            .map_err(|_| bad("bad description"))?
            .into_bytes_with_nul();
        // SAFETY: both are NUL-terminated, writable buffers alive for the call; NULL open args
        // are allowed (vde_open(3)).
        let p = unsafe {
            (api.open)(
                url_c.as_mut_ptr().cast(),
                descr_c.as_mut_ptr().cast(),
                INTERFACE_VERSION,
                std::ptr::null_mut(),
            )
        };
        let Some(conn) = NonNull::new(p) else {
            let e = io::Error::last_os_error();
            let errno = match e.raw_os_error() {
                Some(0) | None => libc::EIO,
                Some(n) => n,
            };
            return Err(error(
                errno,
                format!(
                    "cannot open VNL {url:?}: {}",
                    io::Error::from_raw_os_error(errno)
                ),
            ));
        };
        Ok(Conn { conn, api })
    }

    fn fd(&self, f: FdFn) -> Option<BorrowedFd<'_>> {
        // SAFETY: self.conn is an open VDECONN.
        let fd: RawFd = unsafe { f(self.conn.as_ptr()) };
        // SAFETY: the fd belongs to the connection and stays open until vde_close, which only
        // our Drop calls; the borrow cannot outlive &self.
        (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// `vde_datafd`: readable when a frame is waiting.
    pub fn datafd(&self) -> Option<BorrowedFd<'_>> {
        self.fd(self.api.datafd)
    }

    /// `vde_ctlfd`: hangs up when the switch closes the connection; absent for some networks
    /// (ptp, udp).
    pub fn ctlfd(&self) -> Option<BorrowedFd<'_>> {
        self.fd(self.api.ctlfd)
    }

    /// `vde_recv`: one frame into `buf`. A result shorter than an Ethernet header means
    /// "nothing for us" (libvdeplug returns 1 for a frame it dropped).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is writable for buf.len() bytes; self.conn is an open VDECONN.
        let n =
            unsafe { (self.api.recv)(self.conn.as_ptr(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// `vde_send`: one frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is readable for frame.len() bytes; self.conn is an open VDECONN.
        let n =
            unsafe { (self.api.send)(self.conn.as_ptr(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: self.conn is an open VDECONN, closed exactly once here.
        unsafe { (self.api.close)(self.conn.as_ptr()) };
    }
}
