//! The C strings `newstack` receives: the VNL vector and the options string. Used by every
//! plug-in this SDK builds, native or with its own socket functions.
#![allow(unsafe_code)]

use std::ffi::{c_char, CStr};
use std::io;

fn invalid(what: &str) -> io::Error {
    crate::error(libc::EINVAL, format!("{what} is not valid UTF-8"))
}

/// The strings of a NULL-terminated `const char *vnlv[]` (NULL itself: none).
///
/// # Safety
/// `vnlv` is NULL or a NULL-terminated array of pointers to NUL-terminated strings that stay
/// alive and unchanged for `'a`.
pub unsafe fn vector<'a>(vnlv: *const *const c_char) -> io::Result<Vec<&'a str>> {
    let mut out = Vec::new();
    if vnlv.is_null() {
        return Ok(out);
    }
    for i in 0.. {
        // SAFETY: the array is NULL-terminated (caller's contract); we stop at the NULL.
        let p = unsafe { *vnlv.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: p is a live NUL-terminated string (caller's contract).
        let s = unsafe { CStr::from_ptr(p) };
        out.push(s.to_str().map_err(|_| invalid("a VNL"))?);
    }
    Ok(out)
}

/// The string at `p` (NULL: `""`).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that stays alive and unchanged for `'a`.
pub unsafe fn string<'a>(p: *const c_char) -> io::Result<&'a str> {
    if p.is_null() {
        return Ok("");
    }
    // SAFETY: p is a live NUL-terminated string (caller's contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| invalid("the options"))
}

/// For a plug-in that understands no options: `Ok` when `options` is empty (or only commas,
/// as in `"kernel,"`), else `EINVAL` with a message naming the plug-in and what it was given.
pub fn refuse_options(plugin: &str, options: &str) -> io::Result<()> {
    if options.split(',').all(|o| o.trim().is_empty()) {
        return Ok(());
    }
    Err(crate::error(
        libc::EINVAL,
        format!("plug-in {plugin:?} takes no options (the stack name gave {options:?})"),
    ))
}
