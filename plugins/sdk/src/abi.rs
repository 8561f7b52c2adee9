//! The C types of the plug-in ABI, laid out as the original `ioth.h` declares them.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_ulong, c_void};

use libc::{iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

/// `void *newstack(const char *vnlv[], const char *options, struct ioth_functions *f)`: the
/// original's form (its header's `newstack_prototype`, used by its own modules and by third-party
/// plug-ins). `options` is what follows the first comma of the stack name (`""` when none).
pub type NewStackFn =
    unsafe extern "C" fn(*const *const c_char, *const c_char, *mut IothFunctions) -> *mut c_void;
/// `void *newstack(const char *vnlv[], struct ioth_functions *f)`: the older two-argument form,
/// which the host also loads (see `host/src/plugin.rs` for how one call serves both).
pub type NewStack2Fn =
    unsafe extern "C" fn(*const *const c_char, *mut IothFunctions) -> *mut c_void;
/// `int delstack(void *stackdata)`.
pub type DelStackFn = unsafe extern "C" fn(*mut c_void) -> c_int;
/// `void *getstackdata(void)`.
pub type GetStackDataFn = unsafe extern "C" fn() -> *mut c_void;
/// `int socket(int domain, int type, int protocol)`.
pub type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;

/// `struct ioth_functions`, field for field in the original's order. Every field is one function
/// pointer (NULL when unset).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
#[allow(missing_docs)]
pub struct IothFunctions {
    pub getstackdata: Option<GetStackDataFn>,
    pub newstack: Option<NewStackFn>,
    pub delstack: Option<DelStackFn>,
    pub socket: Option<SocketFn>,
    pub close: Option<unsafe extern "C" fn(c_int) -> c_int>,
    pub bind: Option<unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int>,
    pub connect: Option<unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int>,
    pub listen: Option<unsafe extern "C" fn(c_int, c_int) -> c_int>,
    pub accept: Option<unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int>,
    pub getsockname: Option<unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int>,
    pub getpeername: Option<unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int>,
    pub setsockopt:
        Option<unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int>,
    pub getsockopt:
        Option<unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int>,
    pub shutdown: Option<unsafe extern "C" fn(c_int, c_int) -> c_int>,
    pub ioctl: Option<unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int>,
    pub fcntl: Option<unsafe extern "C" fn(c_int, c_int, ...) -> c_int>,
    pub read: Option<unsafe extern "C" fn(c_int, *mut c_void, size_t) -> ssize_t>,
    pub readv: Option<unsafe extern "C" fn(c_int, *const iovec, c_int) -> ssize_t>,
    pub recv: Option<unsafe extern "C" fn(c_int, *mut c_void, size_t, c_int) -> ssize_t>,
    pub recvfrom: Option<
        unsafe extern "C" fn(
            c_int,
            *mut c_void,
            size_t,
            c_int,
            *mut sockaddr,
            *mut socklen_t,
        ) -> ssize_t,
    >,
    pub recvmsg: Option<unsafe extern "C" fn(c_int, *mut msghdr, c_int) -> ssize_t>,
    pub write: Option<unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t>,
    pub writev: Option<unsafe extern "C" fn(c_int, *const iovec, c_int) -> ssize_t>,
    pub send: Option<unsafe extern "C" fn(c_int, *const c_void, size_t, c_int) -> ssize_t>,
    pub sendto: Option<
        unsafe extern "C" fn(
            c_int,
            *const c_void,
            size_t,
            c_int,
            *const sockaddr,
            socklen_t,
        ) -> ssize_t,
    >,
    pub sendmsg: Option<unsafe extern "C" fn(c_int, *const msghdr, c_int) -> ssize_t>,
}

/// The field names of [`IothFunctions`], in order: the `<fn>` of the implicit `ioth_<name>_<fn>`
/// symbols (except `getstackdata`, which the host provides).
pub const SLOT_NAMES: [&str; SLOTS] = [
    "getstackdata",
    "newstack",
    "delstack",
    "socket",
    "close",
    "bind",
    "connect",
    "listen",
    "accept",
    "getsockname",
    "getpeername",
    "setsockopt",
    "getsockopt",
    "shutdown",
    "ioctl",
    "fcntl",
    "read",
    "readv",
    "recv",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "send",
    "sendto",
    "sendmsg",
];

/// Number of fields of [`IothFunctions`].
pub const SLOTS: usize = 26;

const _: () = assert!(size_of::<IothFunctions>() == SLOTS * size_of::<*const c_void>());

impl IothFunctions {
    /// The fields as untyped addresses (null when unset), in [`SLOT_NAMES`] order.
    pub fn slots(&self) -> [*const c_void; SLOTS] {
        // SAFETY: IothFunctions is repr(C) with SLOTS fields, each an Option of an extern fn
        // pointer, which has the size and layout of a nullable pointer (asserted above).
        unsafe { std::mem::transmute::<IothFunctions, [*const c_void; SLOTS]>(*self) }
    }

    /// Sets field `index` (in [`SLOT_NAMES`] order) to `addr`.
    ///
    /// # Safety
    /// `addr` must be null or the address of a C function with the signature of that field.
    pub unsafe fn set_slot(&mut self, index: usize, addr: *const c_void) {
        let mut slots = self.slots();
        slots[index] = addr;
        // SAFETY: same layout as above; the caller vouches for the signature of `addr`.
        *self = unsafe { std::mem::transmute::<[*const c_void; SLOTS], IothFunctions>(slots) };
    }

    /// Sets every socket-level field (close … sendmsg) to libc's own function: the plug-in's sockets
    /// are kernel sockets.
    pub fn set_libc_functions(&mut self) {
        self.close = Some(libc::close);
        self.bind = Some(libc::bind);
        self.connect = Some(libc::connect);
        self.listen = Some(libc::listen);
        self.accept = Some(libc::accept);
        self.getsockname = Some(libc::getsockname);
        self.getpeername = Some(libc::getpeername);
        self.setsockopt = Some(libc::setsockopt);
        self.getsockopt = Some(libc::getsockopt);
        self.shutdown = Some(libc::shutdown);
        self.ioctl = Some(libc::ioctl);
        self.fcntl = Some(libc::fcntl);
        self.read = Some(libc::read);
        self.readv = Some(libc::readv);
        self.recv = Some(libc::recv);
        self.recvfrom = Some(libc::recvfrom);
        self.recvmsg = Some(libc::recvmsg);
        self.write = Some(libc::write);
        self.writev = Some(libc::writev);
        self.send = Some(libc::send);
        self.sendto = Some(libc::sendto);
        self.sendmsg = Some(libc::sendmsg);
    }
}

/// The value of an exported `const char *ioth_<name>_license`.
#[repr(transparent)]
pub struct LicenseStr(*const c_char);

// SAFETY: the pointer refers to a 'static, immutable, NUL-terminated string.
unsafe impl Sync for LicenseStr {}

impl LicenseStr {
    /// From a `'static` string that ends with a NUL byte (any exported `const char *`
    /// constant of a plug-in: the licence, the sandbox declaration).
    pub const fn new(s: &'static str) -> LicenseStr {
        let b = s.as_bytes();
        assert!(
            !b.is_empty() && b[b.len() - 1] == 0,
            "licence must end with \\0"
        );
        LicenseStr(b.as_ptr().cast())
    }
}
