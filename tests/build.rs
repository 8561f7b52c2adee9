//! Sets `cfg(ioth_root)` when the tests are built by root: tests that need root carry
//! `#[cfg_attr(not(ioth_root), ignore = "needs root: …")]`, so that without root `cargo test`
//! reports them as ignored instead of passing without doing anything.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ioth_root)");
    // The effective uid, from the kernel's own account of this process (no unsafe, no crate).
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        });
    if euid.as_deref() == Some("0") {
        println!("cargo::rustc-cfg=ioth_root");
    }
    // Built by another user (sudo, su) with the same target directory: decide again.
    for var in ["USER", "LOGNAME", "SUDO_UID"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
