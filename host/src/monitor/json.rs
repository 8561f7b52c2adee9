//! The audit thread's helpers: the status socket's binding, and sockets, counters and
//! interfaces as JSON (trail events and status answers alike).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::State;
use crate::observe::{Counters, Iface, Sock};

/// The status socket of this host, bound before the sandbox; `None` if off or impossible
/// (then `ioth ps` shows what `/proc` shows).
pub(super) fn bind_status() -> Option<(UnixListener, PathBuf)> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = ioth_proto::status::dir(uid, std::env::var("IOTH_STATUS_DIR").ok().as_deref())?;
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
    let path = ioth_proto::status::socket(&dir, std::process::id());
    // A socket left by a host of the same pid that did not end cleanly.
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).ok()?;
    l.set_nonblocking(true).ok()?;
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
