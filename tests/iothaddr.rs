//! libiothaddr from C and C++: the build tree's `libiothaddr.so` has the original's SONAME and
//! exports exactly its four functions; `tests/c/iothaddr.c`, compiled against
//! `client/include/iothaddr.h` with gcc (`-Wall -Wextra -Werror -pedantic`) and with g++, links
//! with `-liothaddr`, records `NEEDED libiothaddr.so.0`, and gets the original's results (its
//! header's examples and independently computed vectors; the Rust crate's unit tests check the
//! same vectors).
//!
//! Needs gcc, g++ and the workspace built (`cargo build --workspace --all-targets`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ioth_tests::cprog::{profile_dir, repo_root, run_bounded, TempDir};

/// The functions the original `libiothaddr.so.0` exports.
const EXPORTS: &[&str] = &[
    "iothaddr_eui64",
    "iothaddr_hash",
    "iothaddr_hasheui64",
    "iothaddr_hashmac",
];

fn libiothaddr() -> PathBuf {
    let so = profile_dir().join("libiothaddr.so");
    assert!(
        so.is_file(),
        "{} missing: run `cargo build --workspace --all-targets`",
        so.display()
    );
    so
}

/// The output of a command that must succeed.
fn stdout_of(cmd: &mut Command) -> String {
    let (status, out, err) = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| s.success()),
        "{cmd:?} failed ({status:?}):\n{out}{err}"
    );
    out
}

/// `readelf -d` lines of `file` with `tag` (`SONAME`, `NEEDED`), the bracketed value of each.
fn dynamic(file: &Path, tag: &str) -> Vec<String> {
    let out = stdout_of(Command::new("readelf").arg("-d").arg(file));
    out.lines()
        .filter(|l| l.contains(&format!("({tag})")))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_owned()))
        .collect()
}

#[test]
fn soname_and_exports_are_the_originals() {
    let so = libiothaddr();
    assert_eq!(dynamic(&so, "SONAME"), ["libiothaddr.so.0"]);
    let nm = stdout_of(Command::new("nm").args(["-D", "--defined-only"]).arg(&so));
    let mut functions: Vec<&str> = nm
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            (kind == "T").then_some(name)
        })
        .collect();
    functions.sort_unstable();
    assert_eq!(functions, EXPORTS, "functions exported by {}", so.display());
}

/// Compiles `tests/c/iothaddr.c` with `compiler` (extra `args`) into `dir`, linked with
/// `-liothaddr` from the build tree and run from `dir/lib`, where `libiothaddr.so.0` links to the
/// build tree's file (what an installation's SONAME link is); runs it and expects `ok`.
fn build_and_run(compiler: &str, args: &[&str], dir: &Path) {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).expect("create lib dir");
    let so0 = lib.join("libiothaddr.so.0");
    if !so0.exists() {
        std::os::unix::fs::symlink(libiothaddr(), &so0).expect("symlink libiothaddr.so.0");
    }
    let exe = dir.join(format!("iothaddr-{compiler}"));
    let mut rpath = std::ffi::OsString::from("-Wl,-rpath,");
    rpath.push(&lib);
    stdout_of(
        Command::new(compiler)
            .args(args)
            .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-o"])
            .arg(&exe)
            .arg(repo_root().join("tests/c/iothaddr.c"))
            .arg("-I")
            .arg(repo_root().join("client/include"))
            .arg("-L")
            .arg(profile_dir())
            .arg("-liothaddr")
            .arg(rpath),
    );
    let needed = dynamic(&exe, "NEEDED");
    assert!(
        needed.iter().any(|n| n == "libiothaddr.so.0"),
        "{} does not record libiothaddr.so.0: {needed:?}",
        exe.display()
    );
    let out = stdout_of(Command::new(&exe).env_remove("LD_LIBRARY_PATH"));
    assert_eq!(out.lines().last(), Some("ok"), "{}:\n{out}", exe.display());
}

#[test]
fn c_program_gets_the_originals_results() {
    let tmp = TempDir::new("iothaddr-c");
    build_and_run("gcc", &["-std=c11"], tmp.path());
}

#[test]
fn cxx_program_gets_the_originals_results() {
    let tmp = TempDir::new("iothaddr-cxx");
    build_and_run("g++", &["-x", "c++", "-std=c++17"], tmp.path());
}
