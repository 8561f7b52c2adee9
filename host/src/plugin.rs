//! Finding, loading and calling a plug-in with the seed's ABI. Runs in the host process only.
//!
//! The plug-in's shared object is never unloaded: the host exits instead, so no plug-in thread can
//! outlive its code.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};

use ioth_plugin_sdk::abi::{IothFunctions, NewStackFn, SLOT_NAMES};
use ioth_proto::WireError;
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

use crate::calls::Calls;
use crate::license;

/// The stack data `newstack` returned: one stack per host, so one global.
static STACKDATA: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// `getstackdata` as the ABI gives it to plug-ins.
unsafe extern "C" fn getstackdata() -> *mut c_void {
    STACKDATA.load(Ordering::Acquire)
}

fn err(errno: i32, message: impl Into<String>) -> WireError {
    WireError {
        errno,
        message: message.into(),
    }
}

fn last_errno(default: i32) -> i32 {
    match io::Error::last_os_error().raw_os_error() {
        Some(0) | None => default,
        Some(e) => e,
    }
}

fn clear_errno() {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = 0 };
}

/// Refuses names that could leave the plug-in directories.
pub fn check_name(name: &str) -> Result<(), WireError> {
    if name.is_empty() || name.contains('/') || name.contains("..") || name.contains('\0') {
        return Err(err(
            libc::EINVAL,
            format!(
                "invalid plug-in name {name:?}: it must not be empty or contain '/', '..' or NUL"
            ),
        ));
    }
    Ok(())
}

/// Finds `ioth_<name>.so`: first in `search` (the application's `IOTH_PLUGIN_PATH` and
/// `~/.ioth`), then in `own_dir`, the host binary's directory, which is the installation's plug-in
/// directory (`<prefix>/lib/ioth`) or a cargo build directory, where cargo names it
/// `libioth_<name>.so`. Never the current directory.
pub fn find(name: &str, search: &[PathBuf], own_dir: Option<&Path>) -> Result<PathBuf, WireError> {
    check_name(name)?;
    let file = format!("ioth_{name}.so");
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = search
        .iter()
        .filter(|d| d.is_absolute())
        .map(|d| d.join(&file))
        .collect();
    if let Some(d) = own_dir {
        candidates.push(d.join(&file));
        candidates.push(d.join(format!("lib{file}")));
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    Err(err(
        libc::ENOTSUP,
        format!(
            "plug-in {name:?} not found (looked for {})",
            tried.join(", ")
        ),
    ))
}

/// A loaded plug-in and its stack.
pub struct Plugin {
    /// Kept open for the life of the process (see the module doc).
    _lib: Library,
    name: String,
    f: Box<IothFunctions>,
    /// The plug-in's licence string.
    pub license: Option<String>,
    path: DataPath,
}

fn lookup(lib: &Library, name: &str, suffix: &str) -> Option<*const c_void> {
    let sym = format!("ioth_{name}_{suffix}\0");
    // SAFETY: we read the symbol's address only; its type is checked by the ABI contract of
    // the slot it is stored in.
    let s = unsafe { lib.get::<*const c_void>(sym.as_bytes()) }.ok()?;
    let p = *s;
    (!p.is_null()).then_some(p)
}

/// Addresses of libc's own socket functions, as the dynamic linker resolves them for plug-ins.
fn libc_address(name: &str) -> Option<*const c_void> {
    let this = Library::this();
    let sym = format!("{name}\0");
    // SAFETY: address lookup only.
    unsafe { this.get::<*const c_void>(sym.as_bytes()) }
        .ok()
        .map(|s| *s)
}

/// Loads the plug-in at `path` (named `name`) and creates its stack on `vnls`.
pub fn load(
    path: &Path,
    name: &str,
    vnls: &[String],
    app_license: Option<&str>,
) -> Result<Plugin, WireError> {
    // SAFETY: loading a plug-in runs its initialisers; that is what a plug-in is for, and it
    // runs in this host process alone.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
        err(
            libc::ENOTSUP,
            format!("cannot load plug-in {}: {e}", path.display()),
        )
    })?;
    let Some(newstack) = lookup(&lib, name, "newstack") else {
        return Err(err(
            libc::ENOENT,
            format!("plug-in {} has no ioth_{name}_newstack", path.display()),
        ));
    };
    let license = lookup(&lib, name, "license").and_then(|p| {
        // SAFETY: ioth_<name>_license is a `const char *` variable; p is its address.
        let s = unsafe { *(p as *const *const c_char) };
        // SAFETY: a non-null value points at a NUL-terminated string in the plug-in.
        (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
    });
    if !license::compatible(app_license, license.as_deref()) {
        return Err(err(
            libc::EPERM,
            format!(
                "licence refused: plug-in {name:?} is {:?}, the application declares {:?} \
                 (set it with ioth_set_license / StackBuilder::license)",
                license.as_deref().unwrap_or(""),
                app_license.unwrap_or("no licence")
            ),
        ));
    }
    let mut f = Box::<IothFunctions>::default();
    for (i, slot) in SLOT_NAMES.iter().enumerate().skip(1) {
        if let Some(p) = lookup(&lib, name, slot) {
            // SAFETY: ioth_<name>_<slot> has the slot's signature by the plug-in ABI.
            unsafe { f.set_slot(i, p) };
        }
    }
    f.getstackdata = Some(getstackdata);
    // SAFETY: the symbol is ioth_<name>_newstack, whose signature the ABI fixes.
    let newstack: NewStackFn =
        unsafe { std::mem::transmute::<*const c_void, NewStackFn>(newstack) };
    let cvnls: Vec<CString> = vnls
        .iter()
        .map(|v| CString::new(v.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| err(libc::EINVAL, "a VNL contains a NUL byte"))?;
    let mut vnlv: Vec<*const c_char> = cvnls.iter().map(|c| c.as_ptr()).collect();
    vnlv.push(std::ptr::null());
    clear_errno();
    // SAFETY: vnlv is a NULL-terminated vector of live C strings; f is a live, boxed
    // ioth_functions that stays at this address for the life of the process.
    let data = unsafe { newstack(vnlv.as_ptr(), &mut *f) };
    if data.is_null() {
        let e = last_errno(libc::EINVAL);
        // The optional `const char *ioth_<name>_newstack_error(void)` says why (SDK extension).
        let why = lookup(&lib, name, "newstack_error")
            .and_then(|p| {
                // SAFETY: ioth_<name>_newstack_error is a `const char *(void)` function by the
                // SDK's contract; it returns NULL or a NUL-terminated string that stays valid
                // until the next newstack call.
                let f = unsafe {
                    std::mem::transmute::<*const c_void, unsafe extern "C" fn() -> *const c_char>(p)
                };
                // SAFETY: see above: no arguments, returns NULL or a live C string.
                let s = unsafe { f() };
                // SAFETY: a non-null value is a NUL-terminated string in the plug-in.
                (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| io::Error::from_raw_os_error(e).to_string());
        return Err(err(
            e,
            format!("plug-in {name:?} failed to create the stack: {why}"),
        ));
    }
    STACKDATA.store(data, Ordering::Release);
    let mut plugin = Plugin {
        _lib: lib,
        name: name.to_owned(),
        f,
        license,
        path: DataPath::Native,
    };
    plugin.path = plugin.classify();
    Ok(plugin)
}

/// How the sockets of a plug-in reach the application (docs/proxied.md, "Kinds").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// Every socket-level function is libc's own or unset: the plug-in's fds are kernel sockets,
    /// handed to the application as they are.
    Native,
    /// The data functions are libc's or unset, some control function is the plug-in's own: the
    /// handle `socket`/`accept` return is the application's end of a pair the plug-in pumps
    /// itself; the host hands that very fd over and serves control calls.
    FdData,
    /// Some data function is the plug-in's own: the host makes a pair per socket and pumps
    /// between it and the plug-in's `read`/`write` ([`crate::pump`]).
    HostPump,
}

/// The data functions of `struct ioth_functions`: a plug-in that provides one of its own needs
/// the host's pump.
const DATA_SLOTS: [&str; 10] = [
    "read", "readv", "recv", "recvfrom", "recvmsg", "write", "writev", "send", "sendto", "sendmsg",
];

impl Plugin {
    /// The socket-level functions (close … sendmsg) that are set and are not libc's own.
    fn own_functions(&self) -> Vec<&'static str> {
        let slots = self.f.slots();
        SLOT_NAMES
            .iter()
            .zip(slots)
            .skip(4) // getstackdata, newstack, delstack, socket are the plug-in's by design
            .filter(|(name, addr)| {
                if addr.is_null() {
                    return false;
                }
                let alias = match **name {
                    "fcntl" => Some("fcntl64"),
                    _ => None,
                };
                let same = |n: &str| libc_address(n) == Some(*addr);
                !(same(name) || alias.is_some_and(same))
            })
            .map(|(name, _)| *name)
            .collect()
    }

    /// The plug-in's [`DataPath`], from its functions.
    fn classify(&self) -> DataPath {
        let own = self.own_functions();
        if own.iter().any(|f| DATA_SLOTS.contains(f)) {
            DataPath::HostPump
        } else if !own.is_empty() {
            DataPath::FdData
        } else {
            DataPath::Native
        }
    }

    /// How the plug-in's sockets reach the application.
    pub fn path(&self) -> DataPath {
        self.path
    }

    /// The plug-in's socket functions, to call from any thread of the host.
    pub fn calls(&self) -> Calls {
        Calls::new(&self.f)
    }

    /// Whether the plug-in's `close` is its own function (then it is called before the host
    /// closes an fd-data handle; libc's `close` or none would close the handle twice).
    pub fn own_close(&self) -> bool {
        self.calls().own_close(libc_address("close"))
    }

    /// Calls the plug-in's `socket`.
    pub fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd, WireError> {
        let Some(socket) = self.f.socket else {
            return Err(err(
                libc::ENOSYS,
                format!("plug-in {:?} has no socket function", self.name),
            ));
        };
        clear_errno();
        // SAFETY: socket has the socket(2) signature by the ABI; plain integers.
        let fd = unsafe { socket(domain, ty, protocol) };
        if fd < 0 {
            let e = last_errno(libc::EIO);
            return Err(err(
                e,
                format!("socket: {}", io::Error::from_raw_os_error(e)),
            ));
        }
        // SAFETY: a native plug-in's socket returns a new kernel fd that we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Calls the plug-in's `delstack`, if it has one.
    pub fn delstack(&self) -> Result<(), WireError> {
        let data = STACKDATA.swap(std::ptr::null_mut(), Ordering::AcqRel);
        let Some(del) = self.f.delstack else {
            return Ok(());
        };
        if data.is_null() {
            return Ok(());
        }
        clear_errno();
        // SAFETY: data is what newstack returned, handed back exactly once (swapped out above).
        if unsafe { del(data) } != 0 {
            let e = last_errno(libc::EIO);
            STACKDATA.store(data, Ordering::Release);
            return Err(err(
                e,
                format!("delstack: {}", io::Error::from_raw_os_error(e)),
            ));
        }
        Ok(())
    }
}
