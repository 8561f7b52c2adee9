//! This thread's `errno`, for code on either side of the plug-in C ABI: the SDK's exported
//! functions set it, the host clears it before a plug-in call and reads it after one; and the
//! `io::Error` of an errno, which both sides return from their socket code (the host's pump,
//! the smoltcp plug-in).

use std::ffi::c_int;
use std::io;

/// The `io::Error` of errno `e` (its `raw_os_error()` is `e`).
pub fn io_error(e: c_int) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// Sets this thread's `errno` to `e`.
pub fn set(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// Clears this thread's `errno` (before a call whose failure is told by it alone).
pub fn clear() {
    set(0);
}

/// This thread's `errno`, or `default` if it is 0.
pub fn last_or(default: c_int) -> c_int {
    match io::Error::last_os_error().raw_os_error() {
        Some(0) | None => default,
        Some(e) => e,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn set_clear_and_read() {
        super::set(libc::EBUSY);
        assert_eq!(super::last_or(1), libc::EBUSY);
        super::clear();
        assert_eq!(super::last_or(1), 1);
    }

    #[test]
    fn io_error_carries_the_errno() {
        let e = super::io_error(libc::ECONNREFUSED);
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
