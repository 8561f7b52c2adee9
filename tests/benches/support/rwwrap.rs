//! The host-pump test plug-in `tests/c/plugins/ioth_rwwrap.c` for benches: kernel sockets of the
//! machine's own namespace, read and written by the plug-in's own functions, so the host serves
//! its sockets as "proxied, host pump" (docs/proxied.md).
//!
//! [`Rwwrap::build`] compiles it with gcc into a private temp dir and puts that dir first in
//! `IOTH_PLUGIN_PATH` (read by `Stack::new`); drop restores the variable and removes the dir.
//! Drop the stacks first.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use ioth::Stack;
use ioth_tests::vde::TempDir;

/// The plug-in's private `getsockopt`: bytes its functions read and wrote, whole stack.
const RWWRAP_LEVEL: i32 = 0x7277;
const RWWRAP_COUNTS: i32 = 1;

/// A built rwwrap plug-in, findable by `Stack::new("rwwrap")` while this lives.
pub struct Rwwrap {
    old_path: Option<OsString>,
    _dir: TempDir,
}

impl Rwwrap {
    /// Builds the plug-in; an error says why it cannot (no gcc, a compile error).
    pub fn build() -> Result<Rwwrap, String> {
        let dir = TempDir::new("rwwrap");
        let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("gcc")
            .args([
                "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared", "-I",
            ])
            .arg(tests.join("../client/include"))
            .arg("-o")
            .arg(dir.path().join("ioth_rwwrap.so"))
            .arg(tests.join("c/plugins/ioth_rwwrap.c"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("gcc: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "gcc on ioth_rwwrap.c: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let old_path = std::env::var_os("IOTH_PLUGIN_PATH");
        let mut path = OsString::from(dir.path());
        if let Some(old) = old_path.as_ref().filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(old);
        }
        std::env::set_var("IOTH_PLUGIN_PATH", path);
        Ok(Rwwrap {
            old_path,
            _dir: dir,
        })
    }

    /// A new stack of the plug-in.
    pub fn stack(&self) -> Stack {
        Stack::new("rwwrap", &[] as &[&str]).unwrap_or_else(|e| panic!("newstack rwwrap: {e}"))
    }

    /// Bytes the stack's own read and write functions moved so far (any socket of the stack
    /// asks): (read, written).
    pub fn counts(s: &ioth::Socket) -> (u64, u64) {
        let v = s
            .getsockopt(RWWRAP_LEVEL, RWWRAP_COUNTS, 16)
            .expect("rwwrap counts");
        let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8 bytes"));
        (word(&v[..8]), word(&v[8..16]))
    }
}

impl Drop for Rwwrap {
    fn drop(&mut self) {
        match self.old_path.take() {
            Some(p) => std::env::set_var("IOTH_PLUGIN_PATH", p),
            None => std::env::remove_var("IOTH_PLUGIN_PATH"),
        }
    }
}
