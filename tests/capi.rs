//! The C ABI end to end: C programs (`tests/c/`) compiled by gcc against `client/include/ioth.h`,
//! linked to the build tree's `libioth.so`, run as their own processes with a temporary `HOME`
//! and no `IOTH_*` variable; a C plug-in written as the original libioth README shows; and
//! `make install` into a temporary prefix.
//!
//! Every program prints `ok` as its last line when all its checks passed (a failed check prints
//! file, line and errno on stderr and exits with status 1). Programs that leave a stack open at
//! exit print its host's pid: the host must end by itself once its application has gone.
//!
//! Needs gcc and the workspace built (`cargo build --workspace --all-targets`): the programs use
//! `ioth-host` and the plug-ins of the same build.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ioth_tests::cprog::{must_run, repo_root};

/// How long one C program may run.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long a host may take to leave after its application has exited.
const HOST_EXIT_LIMIT: Duration = Duration::from_secs(5);

/// The functions of `ioth.h` implemented elsewhere (`capi/netlink.rs`), not checked here.
const NETLINK_FUNCTIONS: &[&str] = &[
    "ioth_if_nametoindex",
    "ioth_linksetupdown",
    "ioth_ipaddr_add",
    "ioth_ipaddr_del",
    "ioth_iproute_add",
    "ioth_iproute_del",
    "ioth_iplink_add",
    "ioth_iplink_del",
    "ioth_linksetaddr",
    "ioth_linkgetaddr",
    "ioth_linksetmtu",
    "ioth_getifaddrs",
    "ioth_freeifaddrs",
];

/// The cargo profile directory of this build (`target/debug`): `libioth.so`, `ioth-host` and the
/// plug-ins. Found from this test's executable (`target/debug/deps/capi-<hash>`), else from
/// `CARGO_TARGET_DIR`, else `<workspace>/target`.
fn profile_dir() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent().and_then(Path::parent) {
            candidates.push(d.to_path_buf());
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug"));
    }
    candidates.push(repo_root().join("target").join("debug"));
    candidates
        .iter()
        .find(|d| d.join("libioth.so").is_file() && d.join("ioth-host").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "libioth.so and ioth-host not found in {candidates:?}: \
                 run `cargo build --workspace --all-targets` first"
            )
        })
}

fn c_source(name: &str) -> PathBuf {
    repo_root().join("tests").join("c").join(name)
}

/// A directory under the system temp dir, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ioth-capi-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p.canonicalize().expect("canonical temp dir"))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles the C program `tests/c/<name>.c` into `dir`, against the headers in `include` and
/// `libioth.so` in `libdir` (also its run path).
fn build_program(name: &str, dir: &Path, include: &Path, libdir: &Path) -> PathBuf {
    let exe = dir.join(name);
    let mut rpath = std::ffi::OsString::from("-Wl,-rpath,");
    rpath.push(libdir);
    must_run(
        Command::new("gcc")
            .args(["-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe)
            .arg(c_source(&format!("{name}.c")))
            .arg("-I")
            .arg(include)
            .arg("-I")
            .arg(c_source(""))
            .arg("-L")
            .arg(libdir)
            .arg("-lioth")
            .arg(rpath),
    );
    exe
}

/// Builds the C program against the build tree's header and library.
fn build_tree_program(name: &str, dir: &Path) -> PathBuf {
    build_program(
        name,
        dir,
        &repo_root().join("client").join("include"),
        &profile_dir(),
    )
}

/// Builds the plug-in `tests/c/<name>.c` as `<home>/.ioth/<name>.so`, the way the original's
/// README says: `gcc -o ioth_foo.so -fPIC -shared ioth_foo.c` (plus the include directory).
fn install_plugin(name: &str, home: &Path) -> PathBuf {
    install_plugin_as(name, &format!("{name}.so"), &[], home)
}

/// Builds `tests/c/<source>.c` (with the gcc `flags`) into `~/.ioth/<file>`.
fn install_plugin_as(source: &str, file: &str, flags: &[&str], home: &Path) -> PathBuf {
    let dir = home.join(".ioth");
    std::fs::create_dir_all(&dir).expect("create ~/.ioth");
    let so = dir.join(file);
    must_run(
        Command::new("gcc")
            .args(["-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&so)
            .args(["-fPIC", "-shared"])
            .args(flags)
            .arg(c_source(&format!("{source}.c")))
            .arg("-I")
            .arg(repo_root().join("client").join("include")),
    );
    so
}

/// Runs `exe` with `HOME=home`, in `home`, with no `IOTH_*` variable and no `LD_LIBRARY_PATH`
/// (cargo points it at the build tree; the programs find `libioth.so` by their run path), for at
/// most [`RUN_LIMIT`].
fn run<S: AsRef<OsStr>>(exe: &Path, args: &[S], home: &Path) -> Output {
    run_with_env(exe, args, home, &[])
}

/// [`run`] with the variables `env` set (after the clean-up).
fn run_with_env<S: AsRef<OsStr>>(
    exe: &Path,
    args: &[S],
    home: &Path,
    env: &[(&str, &OsStr)],
) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("HOME", home)
        .env_remove("LD_LIBRARY_PATH")
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("IOTH_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        match child.try_wait().expect("wait for the C program") {
            Some(_) => break,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("reap the C program");
                panic!(
                    "{} did not end within {RUN_LIMIT:?}:\n{}{}",
                    exe.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    child.wait_with_output().expect("collect the C program")
}

/// Asserts the program exited 0 and printed `ok` last; returns its stdout.
fn expect_ok(exe: &Path, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "{} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
        exe.display(),
        out.status
    );
    stdout
}

/// The value of the `key=N` line of a program's output.
fn value_of(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= line in:\n{stdout}"))
        .to_owned()
}

fn pid_of(stdout: &str, key: &str) -> i32 {
    value_of(stdout, key)
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {stdout:?}: {e}"))
}

/// Whether `pid` is a live `ioth-host` (not gone, not a zombie waiting for its new parent).
fn host_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ...": comm may hold spaces, so split at the last ')'.
    let Some((head, tail)) = stat.rsplit_once(')') else {
        return false;
    };
    let comm = head.split_once('(').map_or("", |(_, c)| c);
    let state = tail.trim_start().chars().next().unwrap_or('X');
    comm.starts_with("ioth-host") && !matches!(state, 'Z' | 'X')
}

/// Asserts the host `pid` ends within [`HOST_EXIT_LIMIT`].
fn assert_host_gone(pid: i32) {
    assert!(pid > 0, "no host pid");
    let deadline = Instant::now() + HOST_EXIT_LIMIT;
    while host_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "ioth-host {pid} still runs {HOST_EXIT_LIMIT:?} after its application ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// TCP and UDP echo on 127.0.0.1 through a kernel stack's host, poll() on the ioth fds, every
/// data and control call; the host is gone once the stack is deleted.
#[test]
fn c_echo_kernel_stack() {
    let tmp = TempDir::new("echo-kernel");
    let exe = build_tree_program("echo", tmp.path());
    let out = run(&exe, &["kernel"], tmp.path());
    let stdout = expect_ok(&exe, &out);
    let pid = pid_of(&stdout, "host_pid");
    assert!(pid > 0, "a kernel stack has a host process");
    assert_host_gone(pid);
}

/// The same echo on the native stack (empty name: the process's own kernel stack, no host).
#[test]
fn c_echo_native_stack() {
    let tmp = TempDir::new("echo-native");
    let exe = build_tree_program("echo", tmp.path());
    let out = run(&exe, &[""], tmp.path());
    let stdout = expect_ok(&exe, &out);
    assert_eq!(
        pid_of(&stdout, "host_pid"),
        0,
        "the native stack has no host"
    );
}

/// EBADF on non-ioth fds (left untouched), EBUSY, ENOTSUP, ENOENT, EINVAL for bad names, short
/// addresses and NULL stacks, the native stack, the default stack, ioth_newstackl, stack pids;
/// the host of a stack left open at exit ends by itself.
#[test]
fn c_errno_cases() {
    let tmp = TempDir::new("errno");
    install_plugin("ioth_nonew", tmp.path());
    let exe = build_tree_program("errno", tmp.path());
    let out = run(&exe, &[] as &[&str], tmp.path());
    let stdout = expect_ok(&exe, &out);
    assert_host_gone(pid_of(&stdout, "leftover_pid"));
}

/// A C plug-in written as the original's README shows, found in `~/.ioth`: refused without a
/// compatible application licence (EPERM, before it runs), then loaded; its implicit
/// `ioth_foo_socket` serves the sockets and finds its data through `getstackdata`; its delstack
/// runs on ioth_delstack; VNLs given to ioth_newstackl arrive in order. A plug-in without
/// newstack fails with ENOENT.
#[test]
fn c_plugin_readme_style() {
    let tmp = TempDir::new("plugin");
    install_plugin("ioth_foo", tmp.path());
    install_plugin("ioth_nonew", tmp.path());
    let exe = build_tree_program("foo_app", tmp.path());
    let log = tmp.path().join("foo.log");
    let out = run(&exe, &[&log], tmp.path());
    let stdout = expect_ok(&exe, &out);
    assert_host_gone(pid_of(&stdout, "leftover_pid"));
    let log_text = std::fs::read_to_string(&log).expect("the plug-in wrote its log");
    let l = log.display();
    let expected = format!(
        "newstack {l} second third\n\
         socket 1 domain {inet}\n\
         socket 2 domain {inet6}\n\
         delstack after 2 sockets\n\
         newstack {l}\n\
         socket 1 domain {inet}\n",
        inet = libc::AF_INET,
        inet6 = libc::AF_INET6,
    );
    assert_eq!(log_text, expected);
}

/// Both plug-in ABIs in one process: the original's three-argument `newstack` (ioth_three,
/// found as `~/.ioth/ioth_three-r.so` before the decoy `~/.ioth/ioth_three.so`) gets the options
/// of "NAME,OPTIONS" verbatim in every newstack flavour, `""` without; the two-argument
/// ioth_foo works beside it and is refused options (EINVAL); our kernel plug-in refuses options
/// but accepts an empty list.
#[test]
fn c_plugins_both_abis_and_options() {
    let tmp = TempDir::new("three");
    install_plugin_as("ioth_three", "ioth_three-r.so", &[], tmp.path());
    install_plugin_as(
        "ioth_three",
        "ioth_three.so",
        &["-DIOTH_THREE_DECOY"],
        tmp.path(),
    );
    install_plugin("ioth_foo", tmp.path());
    let exe = build_tree_program("three_app", tmp.path());
    let out = run(&exe, &[tmp.path()], tmp.path());
    expect_ok(&exe, &out);
}

/// Plug-ins in the styles of the original's own modules, unchanged, in our sandboxed host, run
/// in a private network namespace: ioth_nsproc (the original vdestack's design: a helper process
/// cloned into its own user and network namespace, sharing the host's fd table, creates the
/// sockets) is configured through netlink and carries TCP there, and ioth_delstack reaps its
/// helper; ioth_three (the original kernel module's design: the C library's sockets in the host's
/// namespace, no sandbox declaration) has working sockets but EPERM for netlink configuration,
/// as documented in docs/security.md. Root only (`unshare -n`, a user namespace).
#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: unshare -n, a user namespace")]
fn c_plugins_original_styles_in_the_sandbox() {
    let tmp = TempDir::new("nsproc");
    install_plugin_as("ioth_nsproc", "ioth_nsproc-r.so", &[], tmp.path());
    install_plugin_as("ioth_three", "ioth_three-r.so", &[], tmp.path());
    let exe = build_tree_program("nsproc_app", tmp.path());
    let out = run(
        Path::new("unshare"),
        &[OsStr::new("-n"), exe.as_os_str()],
        tmp.path(),
    );
    let stdout = expect_ok(&exe, &out);
    assert_host_gone(pid_of(&stdout, "nsproc_pid"));
}

/// `libioth.so` exports every function of `ioth.h` (but the netlink ones, checked with them),
/// including the C-variadic `ioth_newstackl`.
#[test]
fn c_header_functions_are_exported() {
    let header =
        std::fs::read_to_string(repo_root().join("client/include/ioth.h")).expect("read ioth.h");
    let mut declared = Vec::new();
    for line in header.lines() {
        if line.starts_with([' ', '\t', '#', '/', '*']) || line.contains("static inline") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("ioth_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let after = &rest[i + name.len()..];
            let before = rest[..i].chars().last();
            if after.starts_with('(') && matches!(before, Some(' ' | '*')) {
                declared.push(name.clone());
            }
            rest = after;
        }
    }
    declared.retain(|n| !NETLINK_FUNCTIONS.contains(&n.as_str()));
    assert!(
        declared.len() >= 31,
        "parsed too few functions from ioth.h: {declared:?}"
    );
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(profile_dir().join("libioth.so"))
        .output()
        .expect("run nm");
    assert!(nm.status.success(), "nm failed");
    let nm = String::from_utf8_lossy(&nm.stdout);
    let exported: Vec<&str> = nm
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            (kind == "T").then_some(name)
        })
        .collect();
    let missing: Vec<&String> = declared
        .iter()
        .filter(|n| !exported.contains(&n.as_str()))
        .collect();
    assert!(missing.is_empty(), "libioth.so does not export {missing:?}");
}

/// `make install PROFILE=debug PREFIX=<tmp> LIBDIR=<tmp>/lib/<multiarch>` (after the debug build,
/// which `make install` only copies) lays out the versioned libraries with their SONAME and
/// development links, the headers, the pkg-config files, the man pages, LIBDIR/ioth/ioth-host
/// (linked from bin/) and LIBDIR/ioth/ioth_<name>.so for every plug-in built; a C program built
/// against the prefix alone records `NEEDED libioth.so.0`, runs with no IOTH_* variable and uses
/// the installed library, host and plug-in — with an rpath, or with no rpath through
/// LD_LIBRARY_PATH alone — and pkg-config builds one too; `make uninstall` removes everything.
#[test]
fn c_make_install_prefix() {
    let tmp = TempDir::new("install");
    let prefix = tmp.path().join("prefix");
    let lib = prefix.join("lib").join("x86_64-linux-gnu");
    let target_dir = profile_dir()
        .parent()
        .expect("profile dir has a parent")
        .to_path_buf();
    let var = |k: &str, v: &Path| {
        let mut s = std::ffi::OsString::from(k);
        s.push(v);
        s
    };
    let vars = [
        var("TARGET_DIR=", &target_dir),
        var("PREFIX=", &prefix),
        var("LIBDIR=", &lib),
    ];
    must_run(
        Command::new("make")
            .arg("-C")
            .arg(repo_root())
            .args(["install", "PROFILE=debug"])
            .args(&vars),
    );
    let plugindir = lib.join("ioth");
    let version = env!("CARGO_PKG_VERSION");
    for f in [
        lib.join(format!("libioth.so.{version}")),
        lib.join(format!("libiothaddr.so.{version}")),
        lib.join("pkgconfig/ioth.pc"),
        lib.join("pkgconfig/iothaddr.pc"),
        prefix.join("include/ioth.h"),
        prefix.join("include/libioth.h"),
        prefix.join("include/ioth_nlinline.h"),
        prefix.join("include/iothaddr.h"),
        prefix.join("share/man/man3/ioth.3"),
        prefix.join("share/man/man3/ioth_newstack.3"),
        prefix.join("share/man/man7/ioth_plugin.7"),
        plugindir.join("ioth-host"),
        plugindir.join("ioth_kernel.so"),
    ] {
        assert!(f.is_file(), "{} not installed", f.display());
    }
    for (link, to) in [
        ("libioth.so", "libioth.so.0".to_owned()),
        ("libioth.so.0", format!("libioth.so.{version}")),
        ("libiothaddr.so", "libiothaddr.so.0".to_owned()),
        ("libiothaddr.so.0", format!("libiothaddr.so.{version}")),
    ] {
        let got = std::fs::read_link(lib.join(link))
            .unwrap_or_else(|e| panic!("{link} is not a symlink: {e}"));
        assert_eq!(got, Path::new(&to), "{link}");
    }
    let bin = std::fs::read_link(prefix.join("bin/ioth-host")).expect("bin/ioth-host link");
    assert_eq!(bin, plugindir.join("ioth-host"));
    let dynamic = |f: &Path| {
        let o = Command::new("readelf")
            .arg("-d")
            .arg(f)
            .output()
            .expect("readelf");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        dynamic(&lib.join("libioth.so")).contains("Library soname: [libioth.so.0]"),
        "SONAME of libioth.so"
    );
    // Stripped: no symbol table but the dynamic one.
    let syms = Command::new("nm")
        .arg(lib.join("libioth.so"))
        .output()
        .expect("nm");
    assert!(
        String::from_utf8_lossy(&syms.stderr).contains("no symbols"),
        "libioth.so is not stripped"
    );
    for entry in std::fs::read_dir(profile_dir()).expect("read the profile dir") {
        let name = entry.expect("dir entry").file_name();
        let name = name.to_string_lossy();
        if let Some(plugin) = name
            .strip_prefix("lib")
            .filter(|n| n.starts_with("ioth_") && n.ends_with(".so") && *n != "ioth_preload.so")
        {
            assert!(
                plugindir.join(plugin).is_file(),
                "plug-in {name} not installed as {plugin}"
            );
        }
    }

    // ioth-run beside the host (so that it finds it), linked from BINDIR; its preload library
    // in the plug-in directory under its own name (no plug-in "preload").
    assert!(
        plugindir.join("ioth-run").is_file(),
        "ioth-run not installed"
    );
    assert_eq!(
        std::fs::read_link(prefix.join("bin/ioth-run")).expect("bin/ioth-run link"),
        plugindir.join("ioth-run")
    );
    assert!(
        plugindir.join("libioth_preload.so").is_file(),
        "libioth_preload.so not installed"
    );
    assert!(
        !plugindir.join("ioth_preload.so").exists(),
        "the preload library as a plug-in"
    );

    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("create home");
    let exe = build_program("installed", tmp.path(), &prefix.join("include"), &lib);
    assert!(
        dynamic(&exe).contains("Shared library: [libioth.so.0]"),
        "the program does not record NEEDED libioth.so.0"
    );
    let installed_lib = lib.join(format!("libioth.so.{version}"));
    let check = |stdout: &str| {
        assert_eq!(Path::new(&value_of(stdout, "libioth")), installed_lib);
        assert_eq!(
            Path::new(&value_of(stdout, "host")),
            plugindir.join("ioth-host")
        );
        // The kernel stack is built into the installed host: no plug-in file is loaded.
        assert!(
            !stdout.lines().any(|l| l.starts_with("plugin=")),
            "a plug-in file was loaded for a built-in stack:\n{stdout}"
        );
    };
    let out = run(&exe, &[] as &[&str], &home);
    check(&expect_ok(&exe, &out));

    // No rpath: LD_LIBRARY_PATH alone, as for a program built against the original library.
    let bare = tmp.path().join("installed-bare");
    must_run(
        Command::new("gcc")
            .args(["-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&bare)
            .arg(c_source("installed.c"))
            .arg("-I")
            .arg(prefix.join("include"))
            .arg("-I")
            .arg(c_source(""))
            .arg("-L")
            .arg(&lib)
            .arg("-lioth"),
    );
    assert!(!dynamic(&bare).contains("RUNPATH") && !dynamic(&bare).contains("RPATH"));
    let out = run_with_env(
        &bare,
        &[] as &[&str],
        &home,
        &[("LD_LIBRARY_PATH", lib.as_os_str())],
    );
    check(&expect_ok(&bare, &out));

    // pkg-config gives what a build needs.
    let pc = Command::new("pkg-config")
        .args(["--cflags", "--libs", "ioth", "iothaddr"])
        .env("PKG_CONFIG_PATH", lib.join("pkgconfig"))
        .output()
        .expect("pkg-config");
    assert!(pc.status.success(), "pkg-config failed");
    let flags: Vec<String> = String::from_utf8_lossy(&pc.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let pkg = tmp.path().join("installed-pkg");
    must_run(
        Command::new("gcc")
            .args(["-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&pkg)
            .arg(c_source("installed.c"))
            .arg("-I")
            .arg(c_source(""))
            .args(&flags)
            .arg(var("-Wl,-rpath,", &lib)),
    );
    check(&expect_ok(&pkg, &run(&pkg, &[] as &[&str], &home)));

    must_run(
        Command::new("make")
            .arg("-C")
            .arg(repo_root())
            .arg("uninstall")
            .args(&vars),
    );
    let mut left = Vec::new();
    let mut dirs = vec![prefix.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() && !p.is_symlink() {
                dirs.push(p);
            } else {
                left.push(p);
            }
        }
    }
    assert!(left.is_empty(), "make uninstall left {left:?}");
}
