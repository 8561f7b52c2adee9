//! Where the host binary and the plug-ins are, seen from the application.
//!
//! The host: `IOTH_HOST` if set; else next to the code of this library — the directory of
//! `libioth.so` (or of the executable that links the Rust crate), as `ioth/ioth-host` (installed
//! layout: `<prefix>/lib/ioth/ioth-host`) or `ioth-host` (cargo's build directory) — and the
//! executable's parent directory (cargo puts tests and examples one level below the binaries).
//!
//! Plug-ins: `IOTH_PLUGIN_PATH` (colon-separated absolute directories), then `~/.ioth`; the host
//! adds its own directory (the installation's plug-in directory) last. Never the current directory.
//!
//! In a secure-execution process (setuid, setgid, file capabilities: [`crate::env::secure`]) none
//! of that environment counts: the host is the one next to the real path of this library, and
//! the plug-ins are the installation's own.
#![allow(unsafe_code)]

use std::ffi::{c_void, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::{Error, Result};

/// The file this code was loaded from (`libioth.so`, or the executable).
fn own_object() -> Option<PathBuf> {
    // SAFETY: Dl_info is plain old data; zeroed is a valid value for dladdr to fill.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let addr = own_object as *const c_void;
    // SAFETY: addr is the address of a function of this object; info is writable.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the dynamic linker.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let p = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    p.canonicalize().ok().or(Some(p))
}

/// Candidate paths of `ioth-host`, in the order they are tried.
pub(crate) fn host_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = own_object().and_then(|p| p.parent().map(|d| d.to_path_buf())) {
        dirs.push(d);
    }
    // A setuid program's directory is not the installation's: only the library's own counts.
    let exe = if crate::env::secure() {
        Err(std::io::ErrorKind::PermissionDenied.into())
    } else {
        std::env::current_exe()
    };
    if let Ok(exe) = exe {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            if let Some(pd) = d.parent() {
                dirs.push(pd.to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        for c in [d.join("ioth").join("ioth-host"), d.join("ioth-host")] {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// The `ioth-host` binary to start.
pub(crate) fn host_binary() -> Result<PathBuf> {
    if let Some(p) = crate::env::var_os("IOTH_HOST").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::HostNotFound { searched: vec![p] })
        };
    }
    let candidates = host_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(Error::HostNotFound {
            searched: candidates,
        })
}

/// The directories the host searches for plug-ins before its own.
pub(crate) fn plugin_search_path() -> Vec<String> {
    let mut out: Vec<String> = crate::env::var("IOTH_PLUGIN_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(str::to_owned)
        .collect();
    if let Some(home) = crate::env::var_os("HOME").filter(|h| !h.is_empty()) {
        out.push(PathBuf::from(home).join(".ioth").display().to_string());
    }
    out
}
