//! The ioth plug-in ABI, and a small SDK to write plug-ins in Rust.
//!
//! A plug-in for stack `foo` is a shared object `ioth_foo.so` exporting
//!
//! ```c
//! void *ioth_foo_newstack(const char *vnlv[], const char *options, struct ioth_functions *f);
//! int ioth_foo_delstack(void *stackdata);          /* optional */
//! const char *ioth_foo_license;                      /* optional, SPDX */
//! int ioth_foo_socket(int domain, int type, int protocol); /* optional: any ioth_foo_<fn> is
//!                                                               assigned to f-><fn> implicitly */
//! const char *ioth_foo_newstack_error(void);         /* optional extension: why the last
//!                                                       newstack failed, or NULL */
//! ```
//!
//! [`abi`] holds the C types (`struct ioth_functions` in the original's field order); the host uses
//! them to load any plug-in, C or Rust, through one code path. [`export_native_stack!`] turns a Rust
//! type implementing [`NativeStack`] (kernel sockets) into exactly that ABI, and
//! [`export_proxied_stack!`] one implementing [`ProxiedStack`] (sockets served by the plug-in
//! through socketpairs). [`proxied`] is the contract of proxied fds, shared with the host and
//! the client library.
//!
//! This crate runs inside the host process, in the plug-in's own shared object.
#![deny(missing_docs)]

pub mod abi;
pub mod cstr;
pub mod errno;
pub mod event;
mod native;
pub mod proxied;
#[cfg(feature = "vde")]
pub mod vde;

pub use cstr::refuse_options;
pub use native::{errno_of, error, NativeStack, PluginState};
pub use proxied::{ProxiedStack, ProxiedState};

/// Makes a panic anywhere in this plug-in (any of its threads: an event loop, a pump) end the
/// host at once, with the panic's message on stderr and exit status 101, so that the
/// application sees `ENETDOWN` instead of a stack whose thread silently died. A Rust plug-in
/// has a Rust runtime of its own, whose panic hook the host's cannot reach: call this from
/// `newstack` ([`export_native_stack!`] does).
pub fn end_host_on_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("ioth plug-in (host pid {}): {info}", std::process::id());
            #[allow(unsafe_code)]
            // SAFETY: _exit(2) only ends the process.
            unsafe {
                libc::_exit(101)
            }
        }));
    });
}

/// Exports a [`NativeStack`] implementation as the plug-in `ioth_<name>.so`.
///
/// ```ignore
/// ioth_plugin_sdk::export_native_stack!("kernel", KernelStack, license = "SPDX-License-Identifier: LGPL-2.1-or-later");
/// ```
///
/// This generates `ioth_<name>_newstack`, `ioth_<name>_delstack`, `ioth_<name>_socket`,
/// `ioth_<name>_newstack_error` (the message of a failed `newstack`, which the host forwards to
/// the application with the errno) and, when a licence is given, `ioth_<name>_license`. All other
/// functions of `struct ioth_functions` are libc's own: the sockets are kernel sockets ("native"
/// fds), used with plain syscalls.
#[macro_export]
macro_rules! export_native_stack {
    ($name:literal, $ty:ty $(, license = $lic:literal)?) => {
        const _: () = {
            static STATE: $crate::PluginState = $crate::PluginState::new();

            #[export_name = concat!("ioth_", $name, "_newstack")]
            unsafe extern "C" fn __ioth_newstack(
                vnlv: *const *const ::std::ffi::c_char,
                options: *const ::std::ffi::c_char,
                f: *mut $crate::abi::IothFunctions,
            ) -> *mut ::std::ffi::c_void {
                // SAFETY: the host passes a NULL-terminated vector of C strings, the options
                // string and a valid ioth_functions, as the ABI requires.
                unsafe { STATE.newstack::<$ty>(vnlv, options, f, __ioth_socket) }
            }

            #[export_name = concat!("ioth_", $name, "_delstack")]
            unsafe extern "C" fn __ioth_delstack(stackdata: *mut ::std::ffi::c_void) -> ::std::ffi::c_int {
                // SAFETY: stackdata is the pointer our newstack returned, given back once.
                unsafe { $crate::PluginState::delstack::<$ty>(stackdata) }
            }

            #[export_name = concat!("ioth_", $name, "_newstack_error")]
            extern "C" fn __ioth_newstack_error() -> *const ::std::ffi::c_char {
                STATE.newstack_error()
            }

            unsafe extern "C" fn __ioth_socket(
                domain: ::std::ffi::c_int,
                ty: ::std::ffi::c_int,
                protocol: ::std::ffi::c_int,
            ) -> ::std::ffi::c_int {
                STATE.socket::<$ty>(domain, ty, protocol)
            }

            $(
                #[export_name = concat!("ioth_", $name, "_license")]
                static __IOTH_LICENSE: $crate::abi::LicenseStr =
                    $crate::abi::LicenseStr::new(concat!($lic, "\0"));
            )?
        };
    };
}

/// Exports a [`ProxiedStack`] implementation as the plug-in `ioth_<name>.so`.
///
/// ```ignore
/// ioth_plugin_sdk::export_proxied_stack!("smoltcp", Smol, license = "SPDX-License-Identifier: LGPL-2.1-or-later");
/// ```
///
/// This generates `ioth_<name>_newstack`, `_delstack`, `_newstack_error`, the licence when
/// given, and the functions `newstack` puts in `struct ioth_functions`: `socket`, `close`,
/// `bind`, `connect`, `listen`, `accept`, `getsockname`, `getpeername`, `setsockopt`,
/// `getsockopt` and `shutdown` call the stack; the data functions, `ioctl` and `fcntl` are
/// libc's own (they act on the application's end of the pair, a real socket). No panic
/// crosses the boundary: a panicking call fails with `EIO` (and [`end_host_on_panic`] ends
/// the host for a panic on another thread).
#[macro_export]
macro_rules! export_proxied_stack {
    ($name:literal, $ty:ty $(, license = $lic:literal)?) => {
        #[allow(unsafe_code)]
        const _: () = {
            use ::std::ffi::{c_char, c_int, c_void};
            use $crate::__libc::{sockaddr, socklen_t};
            static STATE: $crate::ProxiedState<$ty> = $crate::ProxiedState::new();

            #[export_name = concat!("ioth_", $name, "_newstack")]
            unsafe extern "C" fn __ioth_newstack(
                vnlv: *const *const c_char,
                options: *const c_char,
                f: *mut $crate::abi::IothFunctions,
            ) -> *mut c_void {
                // SAFETY: the host passes a NULL-terminated vector of C strings, the options
                // string and a valid ioth_functions, as the ABI requires.
                unsafe {
                    STATE.newstack(vnlv, options, f, |f| {
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
                    })
                }
            }

            #[export_name = concat!("ioth_", $name, "_delstack")]
            unsafe extern "C" fn __ioth_delstack(stackdata: *mut c_void) -> c_int {
                // SAFETY: stackdata is the pointer our newstack returned, given back once.
                unsafe { STATE.delstack(stackdata) }
            }

            #[export_name = concat!("ioth_", $name, "_newstack_error")]
            extern "C" fn __ioth_newstack_error() -> *const c_char {
                STATE.newstack_error()
            }

            unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
                STATE.socket(domain, ty, protocol)
            }
            unsafe extern "C" fn close(fd: c_int) -> c_int {
                STATE.close(fd)
            }
            unsafe extern "C" fn bind(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
                // SAFETY: the host passes an address readable for len bytes (bind(2)).
                unsafe { STATE.bind(fd, a, len) }
            }
            unsafe extern "C" fn connect(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
                // SAFETY: the host passes an address readable for len bytes (connect(2)).
                unsafe { STATE.connect(fd, a, len) }
            }
            unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
                STATE.listen(fd, backlog)
            }
            unsafe extern "C" fn accept(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
                // SAFETY: the host passes NULL or a buffer of *len bytes (accept(2)).
                unsafe { STATE.accept(fd, a, len) }
            }
            unsafe extern "C" fn getsockname(
                fd: c_int,
                a: *mut sockaddr,
                len: *mut socklen_t,
            ) -> c_int {
                // SAFETY: the host passes a buffer of *len bytes (getsockname(2)).
                unsafe { STATE.getsockname(fd, a, len) }
            }
            unsafe extern "C" fn getpeername(
                fd: c_int,
                a: *mut sockaddr,
                len: *mut socklen_t,
            ) -> c_int {
                // SAFETY: the host passes a buffer of *len bytes (getpeername(2)).
                unsafe { STATE.getpeername(fd, a, len) }
            }
            unsafe extern "C" fn setsockopt(
                fd: c_int,
                level: c_int,
                name: c_int,
                v: *const c_void,
                len: socklen_t,
            ) -> c_int {
                // SAFETY: the host passes a value readable for len bytes (setsockopt(2)).
                unsafe { STATE.setsockopt(fd, level, name, v, len) }
            }
            unsafe extern "C" fn getsockopt(
                fd: c_int,
                level: c_int,
                name: c_int,
                v: *mut c_void,
                len: *mut socklen_t,
            ) -> c_int {
                // SAFETY: the host passes a buffer of *len bytes (getsockopt(2)).
                unsafe { STATE.getsockopt(fd, level, name, v, len) }
            }
            unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
                STATE.shutdown(fd, how)
            }

            $(
                #[export_name = concat!("ioth_", $name, "_license")]
                static __IOTH_LICENSE: $crate::abi::LicenseStr =
                    $crate::abi::LicenseStr::new(concat!($lic, "\0"));
            )?
        };
    };
}

#[doc(hidden)]
pub use libc as __libc;
