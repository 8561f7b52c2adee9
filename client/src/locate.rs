//! Where the host binary and the plug-ins are, seen from the application.
//!
//! The host (`ioth-host`), the first that exists of:
//! 1. `IOTH_HOST`, if set (and only it: a missing file is [`Error::HostNotFound`]);
//! 2. next to the code of this library — the directory of `libioth.so` (or of the executable
//!    that links the Rust crate), as `ioth/ioth-host` (installed layout:
//!    `<libdir>/ioth/ioth-host`) or `ioth-host` (cargo's build directory) — and the executable's
//!    parent directory (cargo puts tests and examples one level below the binaries);
//! 3. `ioth-host` in a directory of `PATH` (`make install` links `<bindir>/ioth-host` to
//!    `<libdir>/ioth/ioth-host`; `cargo install ioth-host` puts it in `~/.cargo/bin`);
//! 4. the standard plug-in directories: `/usr/local/lib/ioth`, `/usr/lib/ioth`,
//!    `/usr/lib/<multiarch>/ioth` (e.g. `/usr/lib/x86_64-linux-gnu/ioth`).
//!
//! A host found on `PATH` through `make install`'s link still loads the plug-ins of its
//! installation: it resolves its own real path (`/proc/self/exe`) to find them.
//!
//! Plug-ins: `IOTH_PLUGIN_PATH` (colon-separated absolute directories), then `~/.ioth`; the host
//! adds its built-in stacks and its own directory (the installation's plug-in directory) last.
//! Never the current directory.
//!
//! In a secure-execution process (setuid, setgid, file capabilities: [`crate::env::secure`]) none
//! of that environment counts: the host is the one next to the real path of this library (never
//! one from `PATH`), and the plug-ins are the installation's own.
#![allow(unsafe_code)]

use std::ffi::{c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The one thing to do when no host is found, as [`Error::HostNotFound`] says it.
pub(crate) const HOST_HINT: &str = "install the host once with `cargo install ioth-host` \
    (from the ioth sources: `cargo install --path host`, or `make && sudo make install`), \
    or set IOTH_HOST to its path";

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
    let p = PathBuf::from(OsStr::from_bytes(name.to_bytes()));
    p.canonicalize().ok().or(Some(p))
}

/// The Debian multiarch tuple of this build (`x86_64-linux-gnu`), if it has one.
fn multiarch() -> Option<&'static str> {
    if cfg!(not(all(target_os = "linux", target_env = "gnu"))) {
        return None;
    }
    Some(match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "x86" => "i386-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => return None,
    })
}

/// The standard plug-in directories, in the order they are tried.
pub(crate) fn standard_dirs() -> Vec<PathBuf> {
    let mut out = vec![
        PathBuf::from("/usr/local/lib/ioth"),
        PathBuf::from("/usr/lib/ioth"),
    ];
    if let Some(m) = multiarch() {
        out.push(Path::new("/usr/lib").join(m).join("ioth"));
    }
    out
}

/// Candidate paths of `ioth-host`, in the order they are tried (`IOTH_HOST` aside).
pub(crate) fn host_candidates() -> Vec<PathBuf> {
    let secure = crate::env::secure();
    let mut dirs = Vec::new();
    if let Some(d) = own_object().and_then(|p| p.parent().map(|d| d.to_path_buf())) {
        dirs.push(d);
    }
    // A setuid program's directory is not the installation's: only the library's own counts.
    let exe = if secure {
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
    let mut add = |c: PathBuf| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    for d in dirs {
        add(d.join("ioth").join("ioth-host"));
        add(d.join("ioth-host"));
    }
    if secure {
        return out;
    }
    // PATH: only absolute directories (an empty or relative entry would be the current one).
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path).filter(|d| d.is_absolute()) {
            add(d.join("ioth-host"));
        }
    }
    for d in standard_dirs() {
        add(d.join("ioth-host"));
    }
    out
}

/// Whether `p` is a regular file (after symbolic links) that someone may execute.
fn executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `ioth-host` binary to start. The search ([`find_host_binary`]) is remembered for as long
/// as `IOTH_HOST` and `PATH` keep their values and the binary it found stays executable: a new
/// stack then costs one `stat` here instead of one per candidate.
pub(crate) fn host_binary() -> Result<PathBuf> {
    type Key = (Option<std::ffi::OsString>, Option<std::ffi::OsString>);
    static FOUND: std::sync::Mutex<Option<(Key, PathBuf)>> = std::sync::Mutex::new(None);
    let key: Key = (crate::env::var_os("IOTH_HOST"), std::env::var_os("PATH"));
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, p)) = found.as_ref() {
        if *k == key && executable(p) {
            return Ok(p.clone());
        }
    }
    let p = find_host_binary()?;
    *found = Some((key, p.clone()));
    Ok(p)
}

fn find_host_binary() -> Result<PathBuf> {
    if let Some(p) = crate::env::var_os("IOTH_HOST").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::HostNotFound {
                searched: vec![p],
                hint: HOST_HINT,
            })
        };
    }
    let candidates = host_candidates();
    candidates
        .iter()
        .find(|p| executable(p))
        .cloned()
        .ok_or(Error::HostNotFound {
            searched: candidates,
            hint: HOST_HINT,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_dirs_are_absolute_and_end_in_ioth() {
        for d in standard_dirs() {
            assert!(d.is_absolute() && d.ends_with("ioth"), "{}", d.display());
        }
        assert_eq!(standard_dirs()[0], Path::new("/usr/local/lib/ioth"));
    }

    #[test]
    fn candidates_end_with_path_then_standard_dirs() {
        let c = host_candidates();
        let std_hosts: Vec<PathBuf> = standard_dirs()
            .iter()
            .map(|d| d.join("ioth-host"))
            .collect();
        assert!(c.ends_with(&std_hosts), "{c:?}");
        if let Some(first) = std::env::var_os("PATH")
            .and_then(|p| std::env::split_paths(&p).find(|d| d.is_absolute()))
        {
            assert!(c.contains(&first.join("ioth-host")), "{c:?}");
        }
    }
}
