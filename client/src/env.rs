//! The environment as the library reads it.
//!
//! In a secure-execution process (`AT_SECURE`: setuid, setgid, file capabilities, or a
//! security module's say-so) the caller's environment is not to be trusted, so the library
//! reads none of it, as `secure_getenv(3)`: `IOTH_*` and `HOME` count as unset, the host and the
//! plug-ins are only the installation's own (found from the real path of `libioth.so`), and the
//! host is started with none of them either.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::sync::OnceLock;

/// Whether the process runs in secure-execution mode (`getauxval(AT_SECURE)`).
pub(crate) fn secure() -> bool {
    static SECURE: OnceLock<bool> = OnceLock::new();
    // SAFETY: getauxval reads the process's auxiliary vector; it takes and returns integers.
    *SECURE.get_or_init(|| unsafe { libc::getauxval(libc::AT_SECURE) } != 0)
}

/// `var`'s value, or `None` if it is unset or the process is in secure-execution mode.
pub(crate) fn var_os(var: &str) -> Option<OsString> {
    if secure() {
        return None;
    }
    std::env::var_os(var)
}

/// `var`'s value as UTF-8 (see [`var_os`]).
pub(crate) fn var(var: &str) -> Option<String> {
    var_os(var).and_then(|v| v.into_string().ok())
}
