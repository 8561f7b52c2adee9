//! `libiothaddr.so`: the C ABI of the `iothaddr` crate, a drop-in for the original libiothaddr
//! (`client/include/iothaddr.h`, SONAME `libiothaddr.so.0`).
//!
//! Exports exactly `iothaddr_hash`, `iothaddr_hashmac`, `iothaddr_eui64` and
//! `iothaddr_hasheui64`, with the original's signatures and results; `iothaddr_otiptime` is an
//! inline function of the header. The functions have no error return: a NULL address, MAC or name
//! pointer makes a call do nothing (the original would crash), a NULL password means no password.
//! No panic crosses the boundary (none is expected: the computation only indexes fixed arrays).
//!
//! This is the only unsafe code of iothaddr: reading the caller's strings and reading and writing
//! its 16-byte address and 6-byte MAC buffers, which may have any alignment.

use std::ffi::{c_char, c_void, CStr};
use std::net::Ipv6Addr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use iothaddr::{eui64, Digest};

/// Runs `f`, swallowing a panic: these functions return nothing, so a caller's buffers are left
/// as they were if something went wrong before they were written.
fn guard(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// The bytes of a C string, `None` for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
unsafe fn c_bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per this function's contract, p is a live NUL-terminated string.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// Reads the 16 bytes of the `struct in6_addr` at `addr`.
///
/// # Safety
/// `addr` is non-NULL and points to 16 readable bytes.
unsafe fn read_addr(addr: *const c_void) -> Ipv6Addr {
    // SAFETY: per this function's contract; read_unaligned because a void * has no alignment.
    Ipv6Addr::from(unsafe { std::ptr::read_unaligned(addr.cast::<[u8; 16]>()) })
}

/// Writes `a` into the 16 bytes at `addr`.
///
/// # Safety
/// `addr` is non-NULL and points to 16 writable bytes.
unsafe fn write_addr(addr: *mut c_void, a: Ipv6Addr) {
    // SAFETY: per this function's contract; write_unaligned because a void * has no alignment.
    unsafe { std::ptr::write_unaligned(addr.cast::<[u8; 16]>(), a.octets()) }
}

/// `void iothaddr_hash(void *addr, const char *name, const char *passwd, uint32_t otiptime)`:
/// replaces the IPv6 address at `addr` (a prefix) with the hash-based address of `name`,
/// `passwd` (NULL: none) and `otiptime` (0: none). Does nothing if `addr` or `name` is NULL.
///
/// # Safety
/// `addr` is NULL or points to 16 writable bytes; `name` and `passwd` are NULL or
/// NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn iothaddr_hash(
    addr: *mut c_void,
    name: *const c_char,
    passwd: *const c_char,
    otiptime: u32,
) {
    guard(|| {
        if addr.is_null() {
            return;
        }
        // SAFETY: name and passwd are NULL or strings, per the contract.
        let (Some(name), passwd) = (unsafe { c_bytes(name) }, unsafe { c_bytes(passwd) }) else {
            return;
        };
        let d = Digest::new(name, passwd, otiptime);
        // SAFETY: addr is non-NULL (checked) and points to 16 bytes, per the contract.
        unsafe { write_addr(addr, d.addr(read_addr(addr))) };
    });
}

/// `void iothaddr_hashmac(void *mac, const char *name, const char *passwd)`: writes the
/// hash-based MAC address of `name` and `passwd` (NULL: none) into the 6 bytes at `mac`. Does
/// nothing if `mac` or `name` is NULL.
///
/// # Safety
/// `mac` is NULL or points to 6 writable bytes; `name` and `passwd` are NULL or NUL-terminated
/// strings.
#[no_mangle]
pub unsafe extern "C" fn iothaddr_hashmac(
    mac: *mut c_void,
    name: *const c_char,
    passwd: *const c_char,
) {
    guard(|| {
        if mac.is_null() {
            return;
        }
        // SAFETY: name and passwd are NULL or strings, per the contract.
        let (Some(name), passwd) = (unsafe { c_bytes(name) }, unsafe { c_bytes(passwd) }) else {
            return;
        };
        let m = Digest::new(name, passwd, 0).mac();
        // SAFETY: mac is non-NULL (checked) and points to 6 writable bytes, per the contract.
        unsafe { std::ptr::write_unaligned(mac.cast::<[u8; 6]>(), m) };
    });
}

/// `void iothaddr_eui64(void *addr, void *mac)`: turns the IPv6 address at `addr` (a prefix)
/// into the EUI-64 address of the 6-byte MAC address at `mac`. Does nothing if either is NULL.
///
/// # Safety
/// `addr` is NULL or points to 16 writable bytes; `mac` is NULL or points to 6 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn iothaddr_eui64(addr: *mut c_void, mac: *mut c_void) {
    guard(|| {
        if addr.is_null() || mac.is_null() {
            return;
        }
        // SAFETY: mac is non-NULL (checked) and points to 6 readable bytes, per the contract.
        let m = unsafe { std::ptr::read_unaligned(mac.cast::<[u8; 6]>()) };
        // SAFETY: addr is non-NULL (checked) and points to 16 bytes, per the contract.
        unsafe { write_addr(addr, eui64(read_addr(addr), m)) };
    });
}

/// `void iothaddr_hasheui64(void *addr, const char *name, const char *passwd)`: turns the IPv6
/// address at `addr` (a prefix) into the EUI-64 address of the hash-based MAC address of `name`
/// and `passwd` (NULL: none). Does nothing if `addr` or `name` is NULL.
///
/// # Safety
/// `addr` is NULL or points to 16 writable bytes; `name` and `passwd` are NULL or
/// NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn iothaddr_hasheui64(
    addr: *mut c_void,
    name: *const c_char,
    passwd: *const c_char,
) {
    guard(|| {
        if addr.is_null() {
            return;
        }
        // SAFETY: name and passwd are NULL or strings, per the contract.
        let (Some(name), passwd) = (unsafe { c_bytes(name) }, unsafe { c_bytes(passwd) }) else {
            return;
        };
        let m = Digest::new(name, passwd, 0).mac();
        // SAFETY: addr is non-NULL (checked) and points to 16 bytes, per the contract.
        unsafe { write_addr(addr, eui64(read_addr(addr), m)) };
    });
}
