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

/// The socket of host `pid` in `dir`.
pub fn socket(dir: &std::path::Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.sock"))
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
}
