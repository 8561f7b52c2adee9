//! Where hosts answer `ioth ps`: one Unix socket per host, `<dir>/<host pid>.sock`, in a
//! directory only its user can enter (docs/audit.md). The directory is `$IOTH_STATUS_DIR` if
//! set (`off` disables the sockets), else `/run/user/<uid>/ioth` when `/run/user/<uid>`
//! exists, else `/tmp/ioth-<uid>`. A host answers each connection with one JSON object (its
//! status) and closes it.

use std::path::PathBuf;

/// The status directory for `uid`, or `None` when status sockets are off. `env` is the value
/// of `IOTH_STATUS_DIR`, if any.
pub fn dir(uid: u32, env: Option<&str>) -> Option<PathBuf> {
    match env {
        Some("off") => None,
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => {
            let run = PathBuf::from(format!("/run/user/{uid}"));
            if run.is_dir() {
                Some(run.join("ioth"))
            } else {
                Some(PathBuf::from(format!("/tmp/ioth-{uid}")))
            }
        }
    }
}

/// The environment variable that names the status directory (`off`: no sockets).
pub const DIR_ENV: &str = "IOTH_STATUS_DIR";

/// [`dir`] for `uid` with this process's [`DIR_ENV`].
pub fn dir_from_env(uid: u32) -> Option<PathBuf> {
    dir(uid, std::env::var(DIR_ENV).ok().as_deref())
}

/// The socket of host `pid` in `dir`.
pub fn socket(dir: &std::path::Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.sock"))
}

/// Removes the socket at `path` if no host answers on it (connecting is refused), as a host
/// killed by a signal leaves it; true if it was removed. A live host's socket is left alone.
pub fn remove_stale(path: &std::path::Path) -> bool {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => std::fs::remove_file(path).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dirs() {
        assert_eq!(super::dir(5, Some("off")), None);
        assert_eq!(super::dir(5, Some("/x")), Some("/x".into()));
        let d = super::dir(4_000_000_000, None).unwrap();
        assert_eq!(d, std::path::PathBuf::from("/tmp/ioth-4000000000"));
    }

    #[test]
    fn only_a_socket_nobody_answers_on_is_removed() {
        let dir = std::env::temp_dir().join(format!("ioth-status-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let live = super::socket(&dir, 1);
        let dead = super::socket(&dir, 2);
        let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        assert!(!super::remove_stale(&live));
        assert!(live.exists());
        assert!(super::remove_stale(&dead));
        assert!(!dead.exists());
        assert!(!super::remove_stale(&super::socket(&dir, 3)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
