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
//! type implementing [`NativeStack`] into exactly that ABI.
//!
//! This crate runs inside the host process, in the plug-in's own shared object.
#![deny(missing_docs)]

pub mod abi;
pub mod cstr;
pub mod errno;
mod native;
#[cfg(feature = "vde")]
pub mod vde;

pub use cstr::refuse_options;
pub use native::{errno_of, error, NativeStack, PluginState};

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
