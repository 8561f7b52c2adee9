//! The audit thread's helpers: the status socket's binding, and sockets, counters and
//! interfaces as JSON (trail events and status answers alike).

use std::collections::{BTreeMap, HashSet};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::State;
use crate::observe::{Counters, Iface, Sock};

/// The status directory, checked ([`check_status_dir`]) once per process: the fork server
/// checks it before its first fork ([`super::prepare`]), so that the hosts it forks inherit the
/// answer.
pub(super) fn status_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(check_status_dir).as_deref()
}

/// The status directory of this user (created if missing), if it is a 0700 directory of ours;
/// `None` if status sockets are off or it is not.
fn check_status_dir() -> Option<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = ioth_proto::status::dir_from_env(uid)?;
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    // Only a directory of ours that nobody else may enter.
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "ioth-host: status directory {} is not a 0700 directory of uid {uid}: no status socket",
            dir.display()
        );
        return None;
    }
    Some(dir)
}

/// A listening, non-blocking, close-on-exec Unix socket bound at `path`.
fn listen_at(path: &Path) -> nix::Result<UnixListener> {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    bind(fd.as_raw_fd(), &nix::sys::socket::UnixAddr::new(path)?)?;
    listen(&fd, Backlog::new(16)?)?;
    Ok(UnixListener::from(fd))
}

/// The status socket of this host, bound before the sandbox; `None` if off or impossible
/// (then `ioth ps` shows what `/proc` shows).
pub(super) fn bind_status() -> Option<(UnixListener, PathBuf)> {
    let pid = std::process::id();
    let mut dir = status_dir()?.to_path_buf();
    let mut path = ioth_proto::status::socket(&dir, pid);
    let l = match listen_at(&path) {
        Ok(l) => l,
        // A socket left by a host of the same pid that did not end cleanly.
        Err(nix::Error::EADDRINUSE) => {
            let _ = std::fs::remove_file(&path);
            listen_at(&path).ok()?
        }
        // The directory went away since it was checked (a fork server's check is older than
        // this host): check it again.
        Err(nix::Error::ENOENT) => {
            dir = check_status_dir()?;
            path = ioth_proto::status::socket(&dir, pid);
            listen_at(&path).ok()?
        }
        Err(_) => return None,
    };
    crate::watchdog::remove_at_exit(&path);
    Some((l, path))
}

/// Whose socket `inode` is: `plugin` if it is in the host's fd table but was not handed out (a
/// native socket, or the application's end of a proxied one).
pub(super) fn owner_of(st: &State, own: &HashSet<u64>, inode: u64) -> &'static str {
    let handed = st.handed.contains(&inode) || st.proxied_inodes.contains_key(&inode);
    if !handed && own.contains(&inode) {
        "plugin"
    } else {
        "application"
    }
}

pub(super) fn sock_json(s: &Sock, ids: &BTreeMap<u64, u64>) -> Value {
    let mut v = json!({
        "inode": s.inode,
        "family": if s.v6 { "inet6" } else { "inet" },
        "type": if s.tcp { "tcp" } else { "udp" },
        "local": s.local.to_string(),
        "peer": s.peer.to_string(),
        "state": s.state,
    });
    if let Value::Object(o) = &mut v {
        if let Some(id) = ids.get(&s.inode) {
            o.insert("id".into(), json!(id));
        }
        if let Some(c) = s.counters {
            counters_into(o, c);
        }
    }
    v
}

pub(super) fn counters_into(o: &mut serde_json::Map<String, Value>, c: Counters) {
    o.insert("bytes_sent".into(), json!(c.sent));
    o.insert("bytes_received".into(), json!(c.received));
    o.insert("packets_sent".into(), json!(c.packets.map(|p| p.0)));
    o.insert("packets_received".into(), json!(c.packets.map(|p| p.1)));
}

pub(super) fn iface_json(i: &Iface, with_counters: bool) -> Value {
    let mut v = json!({
        "index": i.index,
        "name": i.name,
        "up": i.up,
        "mtu": i.mtu,
        "mac": i.mac,
        "addresses": i.addresses,
    });
    if with_counters {
        if let Value::Object(o) = &mut v {
            counters_of_iface(o, i);
        }
    }
    v
}

pub(super) fn counters_of_iface(o: &mut serde_json::Map<String, Value>, i: &Iface) {
    let names = [
        "rx_bytes",
        "tx_bytes",
        "rx_packets",
        "tx_packets",
        "rx_dropped",
        "tx_dropped",
        "rx_errors",
        "tx_errors",
    ];
    for (n, c) in names.iter().zip(i.counters) {
        o.insert((*n).into(), json!(c));
    }
}
