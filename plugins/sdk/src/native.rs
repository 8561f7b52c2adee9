//! Rust plug-ins whose sockets are kernel sockets.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::abi::{GetStackDataFn, IothFunctions, SocketFn};

/// A stack whose sockets are kernel sockets (native fds): the host hands the very fd to the
/// application, which then uses it with plain syscalls.
pub trait NativeStack: Send + Sync + Sized + 'static {
    /// Creates the stack, one interface per VNL. `options` is what follows the first comma of
    /// the stack name (`"vdestack,a,b=1"` gives `"a,b=1"`; `""` when none), verbatim: a plug-in
    /// refuses what it does not understand with `EINVAL` ([`crate::refuse_options`]). Runs in the
    /// host process.
    fn new(vnls: &[&str], options: &str) -> io::Result<Self>;
    /// Creates a socket of this stack, as socket(2).
    fn socket(&self, domain: c_int, ty: c_int, protocol: c_int) -> io::Result<OwnedFd>;
    /// Deletes the stack (`delstack`); the default just drops it.
    fn delete(self) -> io::Result<()> {
        Ok(())
    }
}

/// An errno with a message for the application (see [`error`]).
#[derive(Debug)]
struct ErrnoMessage {
    errno: c_int,
    message: String,
}

impl std::fmt::Display for ErrnoMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrnoMessage {}

/// An error that carries both `errno` (what the C ABI reports) and a message that says what was
/// wrong. When [`NativeStack::new`] fails with it, the message reaches the application through
/// `ioth_<name>_newstack_error` (see [`crate::export_native_stack!`]).
pub fn error(errno: c_int, message: impl Into<String>) -> io::Error {
    io::Error::new(
        io::Error::from_raw_os_error(errno).kind(),
        ErrnoMessage {
            errno,
            message: message.into(),
        },
    )
}

/// Per-plug-in state behind [`crate::export_native_stack!`]: the host's `getstackdata`, and the
/// message of the last failed `newstack`.
pub struct PluginState {
    getstackdata: AtomicUsize,
    newstack_error: Mutex<Option<CString>>,
}

/// The errno of `e`: its OS error code, or the one an [`error`] carries, or for an error made
/// from a kind alone `EAGAIN` (`WouldBlock`) or `EINVAL` (`InvalidInput`); `EIO` otherwise.
pub fn errno_of(e: &io::Error) -> c_int {
    e.raw_os_error()
        .or_else(|| {
            e.get_ref()
                .and_then(|i| i.downcast_ref::<ErrnoMessage>())
                .map(|m| m.errno)
        })
        .or(match e.kind() {
            io::ErrorKind::WouldBlock => Some(libc::EAGAIN),
            io::ErrorKind::InvalidInput => Some(libc::EINVAL),
            _ => None,
        })
        .unwrap_or(libc::EIO)
}

impl PluginState {
    /// An empty state, for a `static`.
    pub const fn new() -> PluginState {
        PluginState {
            getstackdata: AtomicUsize::new(0),
            newstack_error: Mutex::new(None),
        }
    }

    fn set_newstack_error(&self, message: Option<String>) {
        let c = message.map(|m| CString::new(m.replace('\0', " ")).unwrap_or_default());
        *self
            .newstack_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = c;
    }

    /// `ioth_<name>_newstack_error`: why the last `newstack` failed, or NULL. The string stays
    /// valid until the next `newstack` call.
    pub fn newstack_error(&self) -> *const c_char {
        self.newstack_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(std::ptr::null(), |c| c.as_ptr())
    }

    /// `newstack` of the ABI (the original's three-argument form) for stack type `T`.
    ///
    /// # Safety
    /// `vnlv` is NULL or a NULL-terminated array of C strings; `options` is NULL or a C string;
    /// `f` points to a valid `ioth_functions` that outlives the stack.
    pub unsafe fn newstack<T: NativeStack>(
        &self,
        vnlv: *const *const c_char,
        options: *const c_char,
        f: *mut IothFunctions,
        socket: SocketFn,
    ) -> *mut c_void {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            self.newstack_with(
                vnlv,
                options,
                f,
                |vnls, options| Ok(Box::into_raw(Box::new(T::new(vnls, options)?)).cast()),
                |f| {
                    f.set_libc_functions();
                    f.socket = Some(socket);
                },
            )
        }
    }

    /// The part of `newstack` every Rust plug-in shares: reads the VNLs and options, clears the
    /// last error, makes a panic end the host, runs `make` under `catch_unwind`; on success
    /// keeps the host's `getstackdata`, lets `install` fill `f` and returns the stack pointer;
    /// on failure keeps the message for `newstack_error`, sets errno and returns NULL.
    ///
    /// # Safety
    /// As [`PluginState::newstack`].
    pub(crate) unsafe fn newstack_with(
        &self,
        vnlv: *const *const c_char,
        options: *const c_char,
        f: *mut IothFunctions,
        make: impl FnOnce(&[&str], &str) -> io::Result<*mut c_void>,
        install: impl FnOnce(&mut IothFunctions),
    ) -> *mut c_void {
        if f.is_null() {
            crate::errno::set(libc::EINVAL);
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, passed on. Both are read before `f` is written: with
        // no options the host passes `f` itself as `options` (host/src/plugin.rs).
        let args = unsafe { (crate::cstr::vector(vnlv), crate::cstr::string(options)) };
        let (vnls, options) = match args {
            (Ok(v), Ok(o)) => (v, o),
            _ => {
                crate::errno::set(libc::EINVAL);
                return std::ptr::null_mut();
            }
        };
        self.set_newstack_error(None);
        crate::end_host_on_panic();
        match catch_unwind(AssertUnwindSafe(|| make(&vnls, options))) {
            Ok(Ok(stack)) => {
                // SAFETY: f is valid and exclusively ours for the duration of newstack.
                let f = unsafe { &mut *f };
                if let Some(g) = f.getstackdata {
                    self.getstackdata.store(g as usize, Ordering::Release);
                }
                install(f);
                stack
            }
            Ok(Err(e)) => {
                self.set_newstack_error(Some(e.to_string()));
                crate::errno::set(errno_of(&e));
                std::ptr::null_mut()
            }
            Err(_) => {
                self.set_newstack_error(Some("the plug-in panicked in newstack".into()));
                crate::errno::set(libc::EIO);
                std::ptr::null_mut()
            }
        }
    }

    /// `delstack` of the ABI for stack type `T`.
    ///
    /// # Safety
    /// `stackdata` is a pointer returned by [`PluginState::newstack`] for the same `T`, not yet
    /// deleted.
    pub unsafe fn delstack<T: NativeStack>(stackdata: *mut c_void) -> c_int {
        if stackdata.is_null() {
            crate::errno::set(libc::EINVAL);
            return -1;
        }
        // SAFETY: per the contract, stackdata came from Box::into_raw of a T and is given back once.
        let stack = unsafe { Box::from_raw(stackdata.cast::<T>()) };
        match catch_unwind(AssertUnwindSafe(|| stack.delete())) {
            Ok(Ok(())) => 0,
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

    /// The stack this plug-in created, through the host's `getstackdata`.
    fn stack<T: NativeStack>(&self) -> Option<&T> {
        // SAFETY: for a NativeStack plug-in, stackdata is the Box<T> newstack returned.
        unsafe { self.stackdata::<T>() }
    }

    /// The host's `getstackdata()` as a `&T`.
    ///
    /// # Safety
    /// The plug-in's `newstack` returns `Box<T>` pointers, alive until `delstack`.
    pub(crate) unsafe fn stackdata<T>(&self) -> Option<&T> {
        let g = self.getstackdata.load(Ordering::Acquire);
        if g == 0 {
            return None;
        }
        // SAFETY: g was stored from the host's getstackdata function pointer in newstack.
        let g: GetStackDataFn = unsafe { std::mem::transmute::<usize, GetStackDataFn>(g) };
        // SAFETY: getstackdata takes no arguments and returns our stack pointer or NULL.
        let p = unsafe { g() };
        // SAFETY: p is NULL or the Box<T> newstack returned, alive until delstack.
        unsafe { p.cast::<T>().as_ref() }
    }

    /// `socket` of the ABI for stack type `T`.
    pub fn socket<T: NativeStack>(&self, domain: c_int, ty: c_int, protocol: c_int) -> c_int {
        let Some(stack) = self.stack::<T>() else {
            crate::errno::set(libc::ENETDOWN);
            return -1;
        };
        match catch_unwind(AssertUnwindSafe(|| stack.socket(domain, ty, protocol))) {
            Ok(Ok(fd)) => fd.into_raw_fd(),
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
}

impl Default for PluginState {
    fn default() -> Self {
        Self::new()
    }
}
