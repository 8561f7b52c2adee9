//! Gives `libiothaddr.so` the SONAME of the original library, `libiothaddr.so.0`, so that programs
//! linked against either record the same `NEEDED` entry (check with `readelf -d`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    soname("libiothaddr.so", "libiothaddr.so.0");
}

include!("../build-support/soname.rs");
