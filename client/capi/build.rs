//! Compiles the C part of `libioth.so`: `ioth_newstackl`, which is C-variadic and so cannot be
//! defined in stable Rust (see `src/newstackl.c`), and gives the library its SONAME.
//!
//! Two things make the C symbol part of the cdylib's API, and both are needed (checked with
//! `nm -D`, and by the `capi` tests):
//! - `+whole-archive`: no Rust code calls `ioth_newstackl`, so the linker would not even pull
//!   its object out of the static library;
//! - a version script naming it: rustc links a cdylib with its own version script that exports
//!   only Rust's `#[no_mangle]` items (`local: *`). rustc's default linker on Linux, rust-lld,
//!   merges a second script; GNU ld (bfd) refuses to combine two anonymous scripts.

use std::path::PathBuf;

/// The C functions of `src/*.c` that `libioth.so` exports.
const C_EXPORTS: &[&str] = &["ioth_newstackl"];

fn main() {
    println!("cargo:rerun-if-changed=src/newstackl.c");
    println!("cargo:rerun-if-changed=../include/ioth.h");
    cc::Build::new()
        .file("src/newstackl.c")
        .include("../include")
        .warnings(true)
        .extra_warnings(true)
        .link_lib_modifier("+whole-archive")
        .compile("ioth_newstackl");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    soname("libioth.so", "libioth.so.0");
    let map = out.join("c_exports.map");
    let body = format!("{{ global: {}; }};\n", C_EXPORTS.join("; "));
    std::fs::write(&map, body).expect("write the version script");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
}

include!("../build-support/soname.rs");
