//! The build tree and C programs: `target/<profile>` of this build (`libioth.so`, `ioth-host`,
//! the plug-ins, the examples), a C program compiled with gcc against `client/include/ioth.h`
//! and that `libioth.so`, child processes killed and reaped on drop, their output read on
//! threads with bounded waits.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The workspace root (the parent of `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// `target/<profile>` of this build, from the test binary's path (`target/<profile>/deps/…`):
/// `libioth.so`, `ioth-host`, the plug-ins and the examples. Panics unless it holds
/// `libioth.so` and `ioth-host`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let d = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps")
        .to_path_buf();
    assert!(
        d.join("libioth.so").is_file() && d.join("ioth-host").is_file(),
        "{} must hold libioth.so and ioth-host: run `cargo build --workspace --all-targets`",
        d.display()
    );
    d
}

/// The example program `name` of this build (`target/<profile>/examples/<name>`); panics if it
/// is missing.
pub fn example(name: &str) -> PathBuf {
    let p = profile_dir().join("examples").join(name);
    assert!(
        p.is_file(),
        "{} missing: run `cargo build --workspace --all-targets` first",
        p.display()
    );
    p
}

/// Compiles the C program `src` into `exe` with gcc (`-std=gnu11 -Wall -Wextra -Werror -g`)
/// against `client/include/ioth.h` (and `tests/c/check.h`) and this build's `libioth.so` (also
/// its run path). Panics if gcc fails.
pub fn compile_c(src: &Path, exe: &Path) {
    compile_c_with(src, exe, &profile_dir());
}

/// [`compile_c`] against the `libioth.so` in `lib` (e.g. a [`stage_build`] directory).
pub fn compile_c_with(src: &Path, exe: &Path, lib: &Path) {
    let root = repo_root();
    let st = Command::new("gcc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-g", "-o"])
        .arg(exe)
        .arg(src)
        .arg(format!("-I{}", root.join("client/include").display()))
        .arg(format!("-I{}", root.join("tests/c").display()))
        .arg(format!("-L{}", lib.display()))
        .arg("-lioth")
        .arg("-lpthread")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .expect("run gcc");
    assert!(st.success(), "gcc {} failed", src.display());
}

/// Compiles `<src_dir>/<name>.c` (`src_dir` from the workspace root: `tests/c`,
/// `client/examples/c`) with [`compile_c`] into `out/<name>`; returns the program's path.
pub fn compile_repo_c(src_dir: &str, name: &str, out: &Path) -> PathBuf {
    let exe = out.join(name);
    compile_c(&repo_root().join(src_dir).join(format!("{name}.c")), &exe);
    exe
}

/// Runs `exe args` (stdin closed) to completion, killed after `limit`; panics unless it exits 0
/// with `ok` as its last line of output. Returns its stdout.
pub fn run_ok(exe: &Path, args: &[&str], limit: Duration) -> String {
    let (status, o, e) = run_bounded(Command::new(exe).args(args).stdin(Stdio::null()), limit);
    assert!(
        status.is_some_and(|s| s.success()) && o.lines().last() == Some("ok"),
        "{} {args:?}: {status:?}\n--- stdout\n{o}--- stderr\n{e}",
        exe.display()
    );
    o
}

/// Puts this build's `libioth.so` (with its SONAME link `libioth.so.0`), `ioth-host` and
/// plug-ins (`libioth_<name>.so`) into `dir`, which is made world-readable: for programs that run
/// as another user (setpriv, setuid), who may not be able to reach the build tree (a checkout in
/// a `mktemp -d` directory is 0700). Hard links where possible (no copy), copies otherwise.
pub fn stage_build(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("create the staging directory");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    let from = profile_dir();
    for e in std::fs::read_dir(&from).expect("read the profile dir") {
        let name = e.expect("dir entry").file_name();
        let n = name.to_string_lossy();
        let wanted = n == "libioth.so"
            || n == "ioth-host"
            || (n.starts_with("libioth_") && n.ends_with(".so"));
        if !wanted {
            continue;
        }
        let (src, dst) = (from.join(&name), dir.join(&name));
        let _ = std::fs::remove_file(&dst);
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
    let so0 = dir.join("libioth.so.0");
    let _ = std::fs::remove_file(&so0);
    std::os::unix::fs::symlink("libioth.so", &so0).expect("libioth.so.0 link");
}

/// Runs `cmd` (a compiler, make; stdin closed) to its end; panics with its output unless it
/// succeeds.
pub fn must_run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process, killed (by its pid) and reaped on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's stdout, read on a thread (wait for each with `recv_timeout`).
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `cmd` (its stdout and stderr piped) to completion within `limit`, killing it after
/// that; its exit status (`None` if it was killed), stdout and stderr.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (Option<ExitStatus>, String, String) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let mut child = Reaped(child);
    let mut out = child.0.stdout.take().unwrap();
    let mut err = child.0.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (o, e) = (t_out.join().unwrap(), t_err.join().unwrap());
    (status, o, e)
}

pub use crate::tempdir::TempDir;
