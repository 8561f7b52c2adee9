//! `libioth.so`: the C ABI of the `ioth` crate, a drop-in for the original libioth
//! (`client/include/ioth.h`, SONAME `libioth.so.0`).
//!
//! The functions are those of `ioth::capi` (the `ioth` crate's feature `capi`, which works on
//! the crate's internals); this crate only makes the shared library of them: the
//! `#[no_mangle]` functions of that module are the library's exports, with the one C function,
//! `ioth_newstackl` (`src/newstackl.c`, compiled by `build.rs`, which also sets the SONAME).
//! Rust programs use the `ioth` crate itself and never build this one.

// Links the crate whose `extern "C"` functions this library exports.
pub use ioth::capi;
