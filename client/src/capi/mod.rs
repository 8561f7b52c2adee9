//! The C ABI of `libioth.so`: a drop-in for the original libioth (`include/ioth.h`).
//!
//! Runs in the application. Every function sets `errno` and returns -1 (or NULL) on error, as the
//! original; no panic crosses the boundary ([`guard`]). A `struct ioth *` is an opaque handle
//! of a [`Stack`], never dereferenced: the stacks live in a registry of the handles
//! `ioth_newstack*` gave out and `ioth_delstack` has not taken back, so an unknown or already
//! deleted handle fails with `EINVAL` instead of touching freed memory. Every call clones the
//! [`Stack`] it works on (a reference count), so a stack another thread deletes meanwhile — the
//! default stack included — stays valid until the call returns. NULL as a stack argument means
//! the default stack; deleting the default stack makes the process's own kernel stack the
//! default again.
#![allow(unsafe_code)]

mod berkeley;
mod data;
pub(crate) mod fdtable;
mod ifaddrs;

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};
use std::os::fd::IntoRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use crate::{Error, Stack};

/// What a C `struct ioth *` points to: one byte of its own (so that live handles are distinct
/// addresses), never read. The stack itself is in [`Registry`].
pub struct Ioth {
    _own: u8,
}

/// The live handles and the C default stack.
struct Registry {
    /// Handle address → stack.
    stacks: HashMap<usize, Stack>,
    /// The handle `ioth_set_defstack` chose (`None`: the native kernel stack).
    default: Option<usize>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// The registry, locked. Never held across a call to a host.
fn registry() -> MutexGuard<'static, Option<Registry>> {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(|| Registry {
        stacks: HashMap::new(),
        default: None,
    });
    g
}

/// The stack of live handle `p`; `EINVAL` if `p` is not one.
fn lookup(reg: &Registry, p: *mut Ioth) -> Result<Stack, c_int> {
    reg.stacks.get(&(p as usize)).cloned().ok_or(libc::EINVAL)
}

pub(crate) use ioth_plugin_sdk::errno::set as set_errno;

/// Runs `f`, turning an `Err(errno)` or a panic into `errno` and the C error value `fail`.
pub(crate) fn guard<R>(fail: R, f: impl FnOnce() -> Result<R, c_int>) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            set_errno(e);
            fail
        }
        Err(_) => {
            set_errno(libc::EIO);
            fail
        }
    }
}

/// The stack a C caller names: `p`, or the default stack when `p` is NULL; `EINVAL` if `p` is
/// not a live handle. A clone: it stays valid whatever other threads do meanwhile.
///
/// # Safety
/// None needed: `p` is only compared, never dereferenced (the function stays `unsafe` for its
/// callers' sake).
pub(crate) unsafe fn stack_arg(p: *mut Ioth) -> Result<Stack, c_int> {
    let g = registry();
    let reg = g.as_ref().expect("initialised by registry()");
    if p.is_null() {
        return match reg.default {
            Some(d) => lookup(reg, d as *mut Ioth),
            None => Ok(crate::default_stack()),
        };
    }
    lookup(reg, p)
}

/// A C string argument as UTF-8; `EINVAL` if it is not.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char) -> Result<Option<&'a str>, c_int> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: per the contract, p is a NUL-terminated string that outlives the call.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map(Some)
        .map_err(|_| libc::EINVAL)
}

/// Reports a Rust API error on stderr when `IOTH_DEBUG` is set, and gives its errno.
pub(crate) fn errno_of(e: Error) -> c_int {
    if crate::env::var_os("IOTH_DEBUG").is_some() {
        eprintln!("ioth: {e}");
    }
    e.errno()
}

/// `struct ioth *ioth_newstackv(const char *stack, const char *vnlv[])`.
///
/// # Safety
/// `stack` is NULL or a C string; `vnlv` is NULL or a NULL-terminated array of C strings.
#[no_mangle]
pub unsafe extern "C" fn ioth_newstackv(
    stack: *const c_char,
    vnlv: *const *const c_char,
) -> *mut Ioth {
    guard(std::ptr::null_mut(), || {
        // SAFETY: caller's contract.
        let name = unsafe { str_arg(stack) }?.unwrap_or("");
        let mut vnls = Vec::new();
        if !vnlv.is_null() {
            for i in 0.. {
                // SAFETY: vnlv is NULL-terminated (caller's contract); we stop at NULL.
                let p = unsafe { *vnlv.add(i) };
                if p.is_null() {
                    break;
                }
                // SAFETY: p is a C string (caller's contract).
                vnls.push(unsafe { str_arg(p) }?.unwrap_or_default());
            }
        }
        let stack = Stack::new(name, &vnls).map_err(errno_of)?;
        let p = Box::into_raw(Box::new(Ioth { _own: 0 }));
        let mut g = registry();
        g.as_mut()
            .expect("initialised by registry()")
            .stacks
            .insert(p as usize, stack);
        Ok(p)
    })
}

/// `struct ioth *ioth_newstack(const char *stack, const char *vnl)`: one interface, or none if
/// `vnl` is NULL.
///
/// # Safety
/// `stack` and `vnl` are NULL or C strings.
#[no_mangle]
pub unsafe extern "C" fn ioth_newstack(stack: *const c_char, vnl: *const c_char) -> *mut Ioth {
    let vnlv = [vnl, std::ptr::null()];
    // SAFETY: vnlv is NULL-terminated; the strings are the caller's.
    unsafe { ioth_newstackv(stack, vnlv.as_ptr()) }
}

/// `int ioth_delstack(struct ioth *iothstack)`: `EBUSY` while sockets are open; `EINVAL` for
/// NULL or a handle that is not live (never created, or deleted already).
///
/// The handle leaves the registry before the host is asked to end, so that no other call can
/// pick it up meanwhile; a failed deletion (`EBUSY`, …) puts it back unchanged. Calls that
/// cloned the stack before keep it until they return.
///
/// # Safety
/// None needed: `p` is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn ioth_delstack(p: *mut Ioth) -> c_int {
    guard(-1, || {
        let (stack, was_default) = {
            let mut g = registry();
            let reg = g.as_mut().expect("initialised by registry()");
            let stack = reg.stacks.remove(&(p as usize)).ok_or(libc::EINVAL)?;
            let was_default = reg.default == Some(p as usize);
            if was_default {
                reg.default = None;
                crate::set_default_stack(None);
            }
            (stack, was_default)
        };
        if let Err((stack, e)) = stack.delete().map_err(crate::DeleteError::into_parts) {
            let mut g = registry();
            let reg = g.as_mut().expect("initialised by registry()");
            if was_default && reg.default.is_none() {
                reg.default = Some(p as usize);
                crate::set_default_stack(Some(&stack));
            }
            reg.stacks.insert(p as usize, stack);
            return Err(errno_of(e));
        }
        // SAFETY: p came from Box::into_raw in ioth_newstackv and left the registry above, so
        // it is freed exactly once, here.
        drop(unsafe { Box::from_raw(p) });
        Ok(0)
    })
}

/// `void ioth_set_defstack(struct ioth *iothstack)`: NULL reverts to the native kernel stack;
/// a handle that is not live leaves the default unchanged (and sets `errno` to `EINVAL`).
///
/// # Safety
/// None needed: `p` is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn ioth_set_defstack(p: *mut Ioth) {
    guard((), || {
        let mut g = registry();
        let reg = g.as_mut().expect("initialised by registry()");
        if p.is_null() {
            reg.default = None;
            crate::set_default_stack(None);
            return Ok(());
        }
        let stack = lookup(reg, p)?;
        reg.default = Some(p as usize);
        crate::set_default_stack(Some(&stack));
        Ok(())
    })
}

/// `struct ioth *ioth_get_defstack(void)`: NULL means the native kernel stack.
#[no_mangle]
pub extern "C" fn ioth_get_defstack() -> *mut Ioth {
    let g = registry();
    g.as_ref()
        .and_then(|r| r.default)
        .map_or(std::ptr::null_mut(), |d| d as *mut Ioth)
}

/// `void ioth_set_license(const char *license)`.
///
/// # Safety
/// `license` is NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn ioth_set_license(license: *const c_char) {
    guard((), || {
        // SAFETY: caller's contract.
        let l = unsafe { str_arg(license) }?;
        crate::set_license(l);
        Ok(())
    })
}

/// `int ioth_msocket(struct ioth *iothstack, int domain, int type, int protocol)`.
///
/// # Safety
/// `p` is NULL or a live pointer from `ioth_newstack*`.
#[no_mangle]
pub unsafe extern "C" fn ioth_msocket(
    p: *mut Ioth,
    domain: c_int,
    ty: c_int,
    protocol: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(p) }?;
        let sock = stack.msocket(domain, ty, protocol).map_err(errno_of)?;
        let (fd, hold, proxy) = sock.into_parts();
        let raw = fd.into_raw_fd();
        fdtable::insert(raw, hold, proxy);
        Ok(raw)
    })
}

/// `int ioth_socket(int domain, int type, int protocol)`: on the default stack.
#[no_mangle]
pub extern "C" fn ioth_socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // SAFETY: NULL selects the default stack.
    unsafe { ioth_msocket(std::ptr::null_mut(), domain, ty, protocol) }
}

/// `int ioth_close(int fd)`: closes an ioth fd and releases its hold on its stack. The last fd
/// of a proxied socket also tells its host, which closes the plug-in's side (a dead host is not
/// waited for).
#[no_mangle]
pub extern "C" fn ioth_close(fd: c_int) -> c_int {
    guard(-1, || {
        let entry = fdtable::remove(fd).ok_or(libc::EBADF)?;
        // SAFETY: fd is an ioth socket the C program hands back to be closed.
        let r = unsafe { libc::close(fd) };
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        drop(entry);
        if r < 0 {
            return Err(e);
        }
        Ok(0)
    })
}

/// `pid_t ioth_stack_pid(struct ioth *iothstack)` (extension): the host's pid, 0 for the native
/// stack; `EINVAL` for NULL or a handle that is not live.
///
/// # Safety
/// None needed: `p` is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn ioth_stack_pid(p: *mut Ioth) -> libc::pid_t {
    guard(-1, || {
        if p.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: p is only looked up.
        let pid = unsafe { stack_arg(p) }?.pid();
        Ok(pid.map_or(0, |p| p as libc::pid_t))
    })
}

/// `pid_t ioth_run(struct ioth *stack, const char *resolvconf, char *const argv[])`
/// (extension): starts program `argv[0]` (searched in `PATH`) with arguments `argv` (NULL
/// terminated) and the application's environment, every socket it creates on `stack` (NULL:
/// the default stack), as `ioth-run` does (docs/run.md); `resolvconf`, unless NULL, is the text
/// the program sees as `/etc/resolv.conf`. Returns the program's pid at once: the application
/// reaps it (waitpid). -1 with errno: `EINVAL` (bad handle or argv), `ENOEXEC` (a static
/// program on a proxied stack), `ENOENT` (not found), or what entering the stack failed with.
///
/// # Safety
/// `argv` is a NULL-terminated array of NUL-terminated strings; `resolvconf` is NULL or a
/// NUL-terminated string; `stack` is only looked up.
#[no_mangle]
pub unsafe extern "C" fn ioth_run(
    stack: *mut Ioth,
    resolvconf: *const c_char,
    argv: *const *const c_char,
) -> libc::pid_t {
    guard(-1, || {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: stack is only looked up.
        let stack = unsafe { stack_arg(stack) }?;
        if argv.is_null() {
            return Err(libc::EINVAL);
        }
        let mut args = Vec::new();
        for i in 0.. {
            // SAFETY: argv is NULL-terminated (the caller's contract): entries up to the NULL
            // are readable.
            let a = unsafe { *argv.add(i) };
            if a.is_null() {
                break;
            }
            // SAFETY: each entry is a NUL-terminated string (the caller's contract).
            let a = unsafe { std::ffi::CStr::from_ptr(a) };
            args.push(std::ffi::OsStr::from_bytes(a.to_bytes()).to_owned());
        }
        let Some((prog, rest)) = args.split_first() else {
            return Err(libc::EINVAL);
        };
        let mut cmd = crate::run::Command::new(&stack, prog);
        cmd.args(rest);
        if !resolvconf.is_null() {
            // SAFETY: resolvconf is a NUL-terminated string (the caller's contract).
            let text = unsafe { std::ffi::CStr::from_ptr(resolvconf) };
            cmd.resolv_conf(&text.to_string_lossy());
        }
        let child = cmd.spawn().map_err(|e| e.errno())?;
        Ok(child.detach() as libc::pid_t)
    })
}
