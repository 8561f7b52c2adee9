//! The original's `<ioth.h>` surface, from an *installed* ioth: `make install PROFILE=debug` into
//! a temporary prefix, then `tests/c/surface.c` compiled with `-Wall -Werror` against that prefix
//! alone — as C, as C++, and as C with nlinline's own headers (Debian's `nlinline-dev`) included
//! before and after `<ioth.h>` — and run in a private network namespace (`unshare -n`; root).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ioth_tests::cprog::{self, must_run, repo_root, TempDir};

/// Compiles surface.c with `compiler` and `flags` against `prefix`, runs it under `unshare -n`.
fn build_and_run(prefix: &Path, dir: &Path, name: &str, compiler: &str, flags: &[&str]) {
    let exe = dir.join(name);
    let lib = prefix.join("lib");
    let mut rpath = std::ffi::OsString::from("-Wl,-rpath,");
    rpath.push(&lib);
    let mut cmd = Command::new(compiler);
    if compiler == "g++" {
        cmd.args(["-x", "c++"]);
    }
    must_run(
        cmd.args(["-Wall", "-Wextra", "-Werror"])
            .args(flags)
            .arg("-o")
            .arg(&exe)
            .arg(repo_root().join("tests/c/surface.c"))
            .arg("-I")
            .arg(prefix.join("include"))
            .arg("-L")
            .arg(&lib)
            .arg("-lioth")
            .arg(&rpath),
    );
    let (status, out, err) = cprog::run_bounded(
        Command::new("unshare").arg("-n").arg(&exe),
        Duration::from_secs(60),
    );
    assert!(
        status.is_some_and(|s| s.success()) && out.lines().last() == Some("ok"),
        "{name}: {status:?}\n--- stdout\n{out}--- stderr\n{err}"
    );
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: runs its programs under `unshare -n`"
)]
fn installed_header_has_the_originals_surface() {
    let tmp = TempDir::new("header");
    let prefix = tmp.path().join("prefix");
    let target_dir = cprog::profile_dir()
        .parent()
        .expect("profile dir has a parent")
        .to_path_buf();
    let mut t = std::ffi::OsString::from("TARGET_DIR=");
    t.push(&target_dir);
    let mut p = std::ffi::OsString::from("PREFIX=");
    p.push(&prefix);
    must_run(
        Command::new("make")
            .arg("-C")
            .arg(repo_root())
            .args(["install", "PROFILE=debug", "STRIP="])
            .arg(&t)
            .arg(&p),
    );
    build_and_run(&prefix, tmp.path(), "surface", "gcc", &[]);
    build_and_run(
        &prefix,
        tmp.path(),
        "surface-pedantic",
        "gcc",
        &["-std=c11", "-pedantic"],
    );
    build_and_run(
        &prefix,
        tmp.path(),
        "surface-gnu",
        "gcc",
        &["-D_GNU_SOURCE"],
    );
    build_and_run(&prefix, tmp.path(), "surface-cxx", "g++", &[]);
    build_and_run(
        &prefix,
        tmp.path(),
        "surface-nlinline-first",
        "gcc",
        &["-DNLINLINE_FIRST"],
    );
    build_and_run(
        &prefix,
        tmp.path(),
        "surface-nlinline-after",
        "gcc",
        &["-DNLINLINE_AFTER"],
    );
}
