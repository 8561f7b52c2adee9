//! Finding, loading and calling a plug-in. Runs in the host process only.
//!
//! Both forms of `newstack` found in the wild load unchanged: the original's
//! `void *ioth_NAME_newstack(const char *vnlv[], const char *options, struct ioth_functions *f)`
//! and the older `void *ioth_NAME_newstack(const char *vnlv[], struct ioth_functions *f)`. A
//! symbol does not say which one a plug-in has, so one call serves both ([`call_newstack`]):
//! with no options the host passes `f` as the second *and* the third argument. A two-argument
//! plug-in reads its `f` from the second; a three-argument one reads the options from the
//! second, and there they are `""`, because the first field of `f` is `getstackdata`, which
//! points at a function whose address ends in a zero byte ([`getstackdata_entry`]), and on a
//! little-endian machine that byte comes first. With options the three-argument form is called
//! with them; a two-argument plug-in would take the options for its `f`, so they are handed over
//! in a buffer as large as `struct ioth_functions`, and a plug-in that wrote into it is refused
//! (`EINVAL`: it takes no options).
//!
//! The plug-in's shared object is never unloaded: the host exits instead, so no plug-in thread can
//! outlive its code.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use crate::error::HostError;
use ioth_plugin_sdk::abi::{GetStackDataFn, IothFunctions, NewStackFn, SLOT_NAMES};
use ioth_plugin_sdk::errno;
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

use crate::builtin::{self, Builtin};
use crate::calls::Calls;
use crate::license;

/// The stack data `newstack` returned: one stack per host, so one global.
static STACKDATA: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// `getstackdata`, called through [`getstackdata_entry`].
extern "C" fn getstackdata() -> *mut c_void {
    STACKDATA.load(Ordering::Acquire)
}

// The entry point of `getstackdata` that plug-ins receive: a jump to [`getstackdata`] at an
// address aligned to 256 bytes, so that its lowest byte is zero (see the module doc).
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.ioth_getstackdata_entry,\"ax\",@progbits",
    ".balign 256",
    ".globl ioth_host_getstackdata_entry",
    ".hidden ioth_host_getstackdata_entry",
    ".type ioth_host_getstackdata_entry,@function",
    "ioth_host_getstackdata_entry:",
    "jmp {target}",
    ".size ioth_host_getstackdata_entry, . - ioth_host_getstackdata_entry",
    ".popsection",
    target = sym getstackdata,
);
#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".pushsection .text.ioth_getstackdata_entry,\"ax\",%progbits",
    ".balign 256",
    ".globl ioth_host_getstackdata_entry",
    ".hidden ioth_host_getstackdata_entry",
    ".type ioth_host_getstackdata_entry,%function",
    "ioth_host_getstackdata_entry:",
    "b {target}",
    ".size ioth_host_getstackdata_entry, . - ioth_host_getstackdata_entry",
    ".popsection",
    target = sym getstackdata,
);

extern "C" {
    /// The 256-byte-aligned entry of [`getstackdata`] (defined by the `global_asm!` above).
    fn ioth_host_getstackdata_entry() -> *mut c_void;
}

/// The `getstackdata` plug-ins get: an address whose lowest byte is zero.
fn getstackdata_entry() -> GetStackDataFn {
    let f: GetStackDataFn = ioth_host_getstackdata_entry;
    assert_eq!(
        f as usize & 0xff,
        0,
        "getstackdata entry must be 256-byte aligned"
    );
    f
}

/// Refuses names that could leave the plug-in directories.
pub fn check_name(name: &str) -> Result<(), HostError> {
    if name.is_empty() || name.contains('/') || name.contains("..") || name.contains('\0') {
        return Err(HostError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// The file names tried for plug-in `name` in one directory, in order: the original's
/// `ioth_<name>-r.so` (a reentrant build) then `ioth_<name>.so`.
fn file_names(name: &str) -> [String; 2] {
    [format!("ioth_{name}-r.so"), format!("ioth_{name}.so")]
}

/// Where a plug-in was found: a file to load, or a stack linked into the host ([`builtin`]).
#[derive(Clone)]
pub enum Found {
    /// `ioth_<name>.so` (or cargo's `libioth_<name>.so`) at this path.
    File(PathBuf),
    /// A built-in stack.
    Builtin(&'static Builtin),
}

impl Found {
    /// What the application is told it got (`StackReady`'s `plugin_path`): the file, or the
    /// host binary for a built-in stack.
    pub fn describe(&self) -> String {
        match self {
            Found::File(p) => p.display().to_string(),
            Found::Builtin(b) => {
                let exe = crate::own_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "ioth-host".into());
                format!("{exe} (built-in {})", b.name)
            }
        }
    }
}

/// Finds the plug-in `name`: in each directory of `search` (the application's
/// `IOTH_PLUGIN_PATH` and `~/.ioth`), then among the stacks built into the host ([`builtin`]),
/// then in `own_dir`, the host binary's directory, which is the installation's plug-in
/// directory (`<libdir>/ioth`) or a cargo build directory, where cargo names it
/// `libioth_<name>.so`; in each directory `ioth_<name>-r.so` before `ioth_<name>.so`. Never the
/// current directory.
pub fn find(name: &str, search: &[PathBuf], own_dir: Option<&Path>) -> Result<Found, HostError> {
    check_name(name)?;
    let mut tried = Vec::new();
    let try_files = |candidates: Vec<PathBuf>, tried: &mut Vec<String>| {
        for c in candidates {
            if c.is_file() {
                return Some(c);
            }
            tried.push(c.display().to_string());
        }
        None
    };
    let mut first: Vec<PathBuf> = Vec::new();
    for d in search.iter().filter(|d| d.is_absolute()) {
        first.extend(file_names(name).iter().map(|f| d.join(f)));
    }
    if let Some(p) = try_files(first, &mut tried) {
        return Ok(Found::File(p));
    }
    if let Some(b) = builtin::find(name) {
        return Ok(Found::Builtin(b));
    }
    if let Some(d) = own_dir {
        let mut last: Vec<PathBuf> = file_names(name).iter().map(|f| d.join(f)).collect();
        last.push(d.join(format!("libioth_{name}.so")));
        if let Some(p) = try_files(last, &mut tried) {
            return Ok(Found::File(p));
        }
    }
    let builtins = builtin::names();
    if !builtins.is_empty() {
        tried.push(format!(
            "the host's built-in stacks ({})",
            builtins.join(", ")
        ));
    }
    Err(HostError::PluginNotFound {
        name: name.to_owned(),
        tried: tried.join(", "),
    })
}

/// Calls `newstack` in the form that serves both ABIs (see the module doc): `Err` when a
/// two-argument plug-in was given options.
///
/// # Safety
/// `newstack` is a plug-in's `ioth_<name>_newstack` (either form); `vnlv` is a NULL-terminated
/// vector of live C strings; `f` is a live, boxed `ioth_functions` whose `getstackdata` is
/// [`getstackdata_entry`], at a fixed address for the life of the process.
unsafe fn call_newstack(
    newstack: NewStackFn,
    vnlv: *const *const c_char,
    options: &CStr,
    f: &mut IothFunctions,
) -> Result<*mut c_void, ()> {
    let fp: *mut IothFunctions = f;
    if options.is_empty() {
        debug_assert!(f.getstackdata.is_some_and(|g| g as usize & 0xff == 0));
        // SAFETY: the caller's contract. Read as a C string, `fp` is "" (its first byte is the
        // low byte of getstackdata, zero); a two-argument plug-in takes it as its `f`.
        return Ok(unsafe { newstack(vnlv, fp.cast::<c_char>(), fp) });
    }
    // The options, zero-padded to the size of ioth_functions: what a two-argument plug-in would
    // write into if it took them for its `f`.
    // Never freed: a plug-in may keep the pointer (one stack per host, so one buffer).
    let bytes = options.to_bytes_with_nul();
    let buf: &'static mut [u8] = Vec::leak(vec![0u8; bytes.len().max(size_of::<IothFunctions>())]);
    buf[..bytes.len()].copy_from_slice(bytes);
    let before = buf.to_vec();
    // SAFETY: the caller's contract; buf is a live NUL-terminated string, large enough to be
    // written as an ioth_functions by a plug-in that mistakes it for one.
    let data = unsafe { newstack(vnlv, buf.as_ptr().cast::<c_char>(), fp) };
    if *buf != before[..] {
        return Err(());
    }
    Ok(data)
}

/// A loaded plug-in and its stack.
pub struct Plugin {
    /// Kept open for the life of the process (see the module doc).
    symbols: Symbols,
    name: String,
    f: Box<IothFunctions>,
    /// The plug-in's licence string.
    pub license: Option<String>,
    path: DataPath,
}

/// Where a plug-in's symbols come from.
enum Symbols {
    /// A loaded shared object.
    Lib(Library),
    /// A stack linked into the host.
    Builtin(&'static Builtin),
}

fn lookup(lib: &Symbols, name: &str, suffix: &str) -> Option<*const c_void> {
    let p = match lib {
        Symbols::Lib(lib) => {
            let sym = format!("ioth_{name}_{suffix}\0");
            // SAFETY: we read the symbol's address only; its type is checked by the ABI
            // contract of the slot it is stored in.
            let s = unsafe { lib.get::<*const c_void>(sym.as_bytes()) }.ok()?;
            *s
        }
        Symbols::Builtin(b) => b.symbol(suffix)?,
    };
    (!p.is_null()).then_some(p)
}

/// The value of the plug-in's `const char *ioth_<name>_<suffix>` variable, if it has one.
fn string_var(lib: &Symbols, name: &str, suffix: &str) -> Option<String> {
    lookup(lib, name, suffix).and_then(|p| {
        // SAFETY: ioth_<name>_<suffix> is a `const char *` variable by the plug-in ABI; p is
        // its address.
        let s = unsafe { *(p as *const *const c_char) };
        // SAFETY: a non-null value points at a NUL-terminated string in the plug-in.
        (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
    })
}

/// Addresses of libc's own socket functions, as the dynamic linker resolves them for plug-ins.
fn libc_address(name: &str) -> Option<*const c_void> {
    if let Some((_, a)) = libc_table().iter().find(|(n, _)| *n == name) {
        return a.map(|a| a as *const c_void);
    }
    lookup_libc(name).map(|a| a as *const c_void)
}

/// `name` as the dynamic linker resolves it in this process (libc's, for the slot names).
fn lookup_libc(name: &str) -> Option<usize> {
    let this = Library::this();
    let sym = format!("{name}\0");
    // SAFETY: address lookup only.
    unsafe { this.get::<*const c_void>(sym.as_bytes()) }
        .ok()
        .map(|s| *s as usize)
}

/// [`lookup_libc`] of every slot name (and `fcntl64`), once per process: the fork server fills
/// it before its first fork ([`prepare`]), so that the hosts it forks inherit it (the same
/// libc is mapped at the same addresses in them).
fn libc_table() -> &'static [(&'static str, Option<usize>)] {
    static TABLE: OnceLock<Vec<(&'static str, Option<usize>)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        SLOT_NAMES
            .iter()
            .copied()
            .chain(["fcntl64"])
            .map(|n| (n, lookup_libc(n)))
            .collect()
    })
}

/// Looks up what every host's classification of its plug-in uses ([`libc_table`]), so that
/// the fork server does it once for all the hosts it forks.
pub fn prepare() {
    let _ = libc_table();
}

/// The errno of a failed `dlopen` of the plug-in at `path`: `errno` as the dynamic linker left
/// it (0: none), `reason` its `dlerror()` text. Out of fds or memory and a permission refused
/// keep their errno; a library the plug-in needs that cannot be found is `ELIBACC` (the file
/// itself exists: it was found); anything else (not an ELF object, wrong class or machine, a
/// truncated file, an undefined symbol) is `ELIBBAD`, a shared library that cannot be used.
pub fn load_errno(errno: i32, reason: &str, path: &Path) -> i32 {
    match errno {
        libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EACCES | libc::EPERM => return errno,
        _ => {}
    }
    if reason.contains("failed to map segment") || reason.contains("cannot allocate memory") {
        return libc::ENOMEM;
    }
    // glibc: "<file>: cannot open shared object file: <strerror>"; when the file named is not
    // the plug-in, it is a dependency.
    let own = path.display().to_string();
    if let Some(lib) = reason.split(": cannot open shared object file").next() {
        if reason.contains(": cannot open shared object file") && lib.trim() != own {
            return libc::ELIBACC;
        }
    }
    libc::ELIBBAD
}

/// Loads the plug-in `found` (named `name`) and creates its stack on `vnls` with `options`
/// (handed to its `newstack` verbatim).
pub fn load(
    found: &Found,
    name: &str,
    options: &str,
    vnls: &[String],
    app_license: Option<&str>,
) -> Result<Plugin, HostError> {
    let lib = match found {
        Found::File(path) => {
            ioth_plugin_sdk::errno::clear();
            // SAFETY: loading a plug-in runs its initialisers; that is what a plug-in is for,
            // and it runs in this host process alone.
            let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
                let errno = ioth_plugin_sdk::errno::last_or(0);
                let reason = e.to_string();
                HostError::CannotLoad {
                    path: path.display().to_string(),
                    errno: load_errno(errno, &reason, path),
                    reason,
                }
            })?;
            Symbols::Lib(lib)
        }
        Found::Builtin(b) => Symbols::Builtin(b),
    };
    let Some(newstack) = lookup(&lib, name, "newstack") else {
        return Err(HostError::NoNewstack {
            path: found.describe(),
            name: name.to_owned(),
        });
    };
    let license = string_var(&lib, name, "license");
    if !license::compatible(app_license, license.as_deref()) {
        return Err(HostError::LicenseRefused {
            name: name.to_owned(),
            plugin: license.as_deref().unwrap_or("").to_owned(),
            app: app_license.unwrap_or("no licence").to_owned(),
        });
    }
    let mut f = Box::<IothFunctions>::default();
    for (i, slot) in SLOT_NAMES.iter().enumerate().skip(1) {
        if let Some(p) = lookup(&lib, name, slot) {
            // SAFETY: ioth_<name>_<slot> has the slot's signature by the plug-in ABI.
            unsafe { f.set_slot(i, p) };
        }
    }
    f.getstackdata = Some(getstackdata_entry());
    // SAFETY: the symbol is ioth_<name>_newstack, of one of the two forms the ABI allows;
    // call_newstack calls it in a way that is right for both.
    let newstack: NewStackFn =
        unsafe { std::mem::transmute::<*const c_void, NewStackFn>(newstack) };
    let coptions = CString::new(options)
        .map_err(|_| HostError::InvalidArgument("the stack options contain a NUL byte".into()))?;
    let cvnls: Vec<CString> = vnls
        .iter()
        .map(|v| CString::new(v.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| HostError::InvalidArgument("a VNL contains a NUL byte".into()))?;
    let mut vnlv: Vec<*const c_char> = cvnls.iter().map(|c| c.as_ptr()).collect();
    vnlv.push(std::ptr::null());
    errno::clear();
    // SAFETY: vnlv is a NULL-terminated vector of live C strings; f is a live, boxed
    // ioth_functions that stays at this address for the life of the process, its getstackdata
    // the aligned entry.
    let data =
        unsafe { call_newstack(newstack, vnlv.as_ptr(), &coptions, &mut f) }.map_err(|()| {
            HostError::InvalidArgument(format!(
                "plug-in {name:?} takes no options: its newstack has the two-argument form \
                 (the stack name gave {options:?})"
            ))
        })?;
    if data.is_null() {
        let e = errno::last_or(libc::EINVAL);
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
        return Err(HostError::Os {
            errno: e,
            message: format!("plug-in {name:?} failed to create the stack: {why}"),
        });
    }
    STACKDATA.store(data, Ordering::Release);
    let mut plugin = Plugin {
        symbols: lib,
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

    /// The plug-in's `ioth_<name>_sandbox` declaration (docs/security.md), if it has one.
    pub fn sandbox_declaration(&self) -> Option<String> {
        string_var(&self.symbols, &self.name, "sandbox")
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
    pub fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd, HostError> {
        let Some(socket) = self.f.socket else {
            return Err(HostError::Os {
                errno: libc::ENOSYS,
                message: format!("plug-in {:?} has no socket function", self.name),
            });
        };
        errno::clear();
        // SAFETY: socket has the socket(2) signature by the ABI; plain integers.
        let fd = unsafe { socket(domain, ty, protocol) };
        if fd < 0 {
            let e = errno::last_or(libc::EIO);
            return Err(HostError::call("socket", io::Error::from_raw_os_error(e)));
        }
        // SAFETY: a native plug-in's socket returns a new kernel fd that we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Calls the plug-in's `delstack`, if it has one.
    pub fn delstack(&self) -> Result<(), HostError> {
        let data = STACKDATA.swap(std::ptr::null_mut(), Ordering::AcqRel);
        let Some(del) = self.f.delstack else {
            return Ok(());
        };
        if data.is_null() {
            return Ok(());
        }
        errno::clear();
        // SAFETY: data is what newstack returned, handed back exactly once (swapped out above).
        if unsafe { del(data) } != 0 {
            let e = errno::last_or(libc::EIO);
            STACKDATA.store(data, Ordering::Release);
            return Err(HostError::call("delstack", io::Error::from_raw_os_error(e)));
        }
        Ok(())
    }
}
