//! The crate as a user outside this workspace gets it: a crate of its own (a temporary
//! directory, its own `[workspace]`) that depends on `ioth` by path, the host installed the
//! documented way (`make install` into a temporary prefix, its `bin/` on `PATH`), run with no
//! `IOTH_*` variable: it finds `<prefix>/bin/ioth-host` on `PATH`, whose stacks are built in
//! and whose plug-in directory is `<prefix>/lib/ioth` (the link's target).
//!
//! Slow (it compiles ioth and its dependencies for the new crate, into `target/outside`, which
//! later runs reuse): `#[ignore]`d, run by `make test-outside` (CI).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ioth_tests::cprog::{profile_dir, repo_root, run_bounded, TempDir};

#[test]
#[ignore = "slow: compiles a crate outside the workspace; make test-outside"]
fn a_crate_outside_the_workspace_finds_the_installed_host() {
    let tmp = TempDir::new("outside");
    let prefix = tmp.path().join("prefix");
    let target_dir = profile_dir().parent().expect("target dir").to_path_buf();
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(repo_root())
        .args(["install", "PROFILE=debug"])
        .arg(format!("TARGET_DIR={}", target_dir.display()))
        .arg(format!("PREFIX={}", prefix.display()));
    let (st, out, err) = run_bounded(&mut make, Duration::from_secs(120));
    assert!(
        st.is_some_and(|s| s.success()),
        "make install: {out}\n{err}"
    );

    // The crate, as a user writes it.
    let app = tmp.path().join("app");
    std::fs::create_dir_all(app.join("src")).expect("mkdir app");
    let manifest = format!(
        "[package]\nname = \"outside\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nioth = {{ path = \"{}\" }}\n\n[workspace]\n",
        repo_root().join("client").display()
    );
    std::fs::write(app.join("Cargo.toml"), manifest).expect("write Cargo.toml");
    std::fs::copy(
        repo_root().join("tests/outside/main.rs"),
        app.join("src/main.rs"),
    )
    .expect("copy main.rs");
    // The workspace's lock file: the same versions, all in the local registry cache.
    std::fs::copy(repo_root().join("Cargo.lock"), app.join("Cargo.lock")).expect("copy lock");
    let outside_target = target_dir.join("outside");
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build
        .current_dir(&app)
        .args(["build", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", &outside_target);
    let (st, out, err) = run_bounded(&mut build, Duration::from_secs(900));
    assert!(st.is_some_and(|s| s.success()), "cargo build: {out}\n{err}");

    // Run it as a user's shell would: no IOTH_*, the prefix's bin first on PATH.
    let exe = outside_target.join("debug").join("outside");
    let path = format!(
        "{}:{}",
        prefix.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir home");
    let mut run = Command::new(&exe);
    run.env_clear()
        .env("PATH", &path)
        .env("HOME", &home)
        .current_dir(tmp.path());
    let (st, out, err) = run_bounded(&mut run, Duration::from_secs(60));
    assert!(
        st.is_some_and(|s| s.success()) && out.lines().last() == Some("ok"),
        "{}: {st:?}\n{out}\n{err}",
        exe.display()
    );
    let plugindir = prefix.join("lib").join("ioth");
    let host = out
        .lines()
        .find_map(|l| l.strip_prefix("host="))
        .expect("host= line");
    assert_eq!(Path::new(host), plugindir.join("ioth-host"), "{out}");
    // The host found through bin/'s link searches its installation's plug-in directory.
    let missing = out
        .lines()
        .find_map(|l| l.strip_prefix("missing="))
        .expect("missing= line");
    assert!(
        missing.contains(&plugindir.join("ioth_nonexistent.so").display().to_string()),
        "{missing}"
    );
}
