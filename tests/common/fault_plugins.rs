//! The misbehaving C test plug-ins of `tests/c/plugins/` (`crashnew`, `crash3`, `hang`,
//! `sleepnew`, `fdhog`, `memhog`), built with gcc once per test binary into a directory of its
//! own (given by the test binary), which becomes `IOTH_PLUGIN_PATH` before any test starts a stack (every test calls
//! [`setup`] or [`setup_exclusive`] first); the lock that lets a test that counts fds and
//! processes run alone in its binary; the error a stack whose host died gives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use ioth::Error;

/// The test plug-ins, by name (`tests/c/plugins/ioth_<name>.c`).
const PLUGINS: &[&str] = &["crashnew", "crash3", "hang", "sleepnew", "fdhog", "memhog"];

/// Generous bound for anything that should take milliseconds.
pub const BOUND: Duration = Duration::from_secs(10);

static SERIAL: RwLock<()> = RwLock::new(());

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// The directory of the test plug-ins (the `hang` plug-in leaves its `hang-<pid>` markers
/// there); panics unless [`setup`] or [`setup_exclusive`] has built them.
pub fn plugin_dir() -> &'static Path {
    DIR.get()
        .expect("the fault plug-ins are built by setup() first")
}

/// Builds the test plug-ins into `dir` (the first call's `dir`; once per test binary) and points
/// `IOTH_PLUGIN_PATH` at them.
fn build(dir: &Path) {
    DIR.get_or_init(|| {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir).expect("plug-in dir");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("hang-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/plugins");
        let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/include");
        for name in PLUGINS {
            let out = dir.join(format!("ioth_{name}.so"));
            let tmp = dir.join(format!(".ioth_{name}.so.{}", std::process::id()));
            let status = Command::new("gcc")
                .args(["-Wall", "-Wextra", "-O1", "-fPIC", "-shared", "-I"])
                .arg(&include)
                .arg("-o")
                .arg(&tmp)
                .arg(src.join(format!("ioth_{name}.c")))
                .status()
                .expect("gcc (the fault tests build C plug-ins; install gcc)");
            assert!(status.success(), "gcc failed on ioth_{name}.c");
            std::fs::rename(&tmp, &out).expect("rename plug-in");
        }
        // Set once, before any stack exists; never changed afterwards.
        std::env::set_var("IOTH_PLUGIN_PATH", &dir);
        dir
    });
}

/// Every test starts here: plug-ins built in `dir` (the test binary's, under
/// `CARGO_TARGET_TMPDIR`), shared lock taken.
pub fn setup(dir: &Path) -> RwLockReadGuard<'static, ()> {
    build(dir);
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

/// As [`setup`], for a test that counts fds and processes: nobody else of this binary runs
/// meanwhile.
pub fn setup_exclusive(dir: &Path) -> RwLockWriteGuard<'static, ()> {
    build(dir);
    SERIAL.write().unwrap_or_else(|e| e.into_inner())
}

/// Checks that `e` says the stack's host died of `signal`: [`Error::StackDied`], `ENETDOWN`,
/// the signal named in the message.
pub fn assert_died(e: &Error, signal: &str) {
    assert!(matches!(e, Error::StackDied { .. }), "not StackDied: {e:?}");
    assert_eq!(e.errno(), libc::ENETDOWN, "{e}");
    assert!(e.to_string().contains(signal), "{e}");
}
