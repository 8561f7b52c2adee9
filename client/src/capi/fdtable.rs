//! The C ABI's table of ioth fds: which stack each fd belongs to, and how calls on it are made.
//!
//! An entry's [`Hold`] keeps its stack counted as busy until `ioth_close`. A proxied fd's entry
//! also holds its [`Proxy`]; fds made from one (`F_DUPFD`) share it, and the host is told that
//! the socket is closed when the last of them is. The fd number itself belongs to the C program
//! (it is a `RawFd` at this boundary by nature).

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, OnceLock, RwLock};

use crate::handle::Hold;
use crate::socket::Proxy;
use crate::sys::AppFd;

/// One ioth fd.
pub(crate) struct Entry {
    // Dropped in this order: the hold, then the proxy (which may tell the host).
    hold: Hold,
    proxy: Option<Arc<Proxy>>,
}

fn table() -> &'static RwLock<HashMap<RawFd, Entry>> {
    static TABLE: OnceLock<RwLock<HashMap<RawFd, Entry>>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Records `fd` as a socket of the stack `hold` holds (proxied through `proxy`, if any).
pub(crate) fn insert(fd: RawFd, hold: Hold, proxy: Option<Arc<Proxy>>) {
    table()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(fd, Entry { hold, proxy });
}

/// Forgets `fd`, handing back its entry (to drop once the fd is closed); `None` if ioth did not
/// create it.
pub(crate) fn remove(fd: RawFd) -> Option<Entry> {
    table()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&fd)
}

/// How calls on an ioth fd are carried out.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A kernel socket (the plug-in's own, passed by the host): every call is the plain syscall.
    Native,
    /// One end of a socketpair the stack pumps (docs/proxied.md): data with plain syscalls
    /// (datagram framing aside), control calls through the host.
    Proxied(Arc<Proxy>),
}

/// The kind of `fd`, or `None` if ioth did not create it. One read-locked lookup, no
/// allocation (a proxied fd's is one reference count): this is on the data path of every
/// `ioth_X`.
pub(crate) fn kind(fd: RawFd) -> Option<Kind> {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&fd)
        .map(|e| match &e.proxy {
            None => Kind::Native,
            Some(p) => Kind::Proxied(p.clone()),
        })
}

/// The kind of `fd` and the fd itself as a typed handle, or `None` if ioth did not create it.
pub(crate) fn lookup(fd: RawFd) -> Option<(AppFd, Kind)> {
    kind(fd).map(|k| (AppFd::registered(fd), k))
}

/// A new hold on the stack of `fd` and its proxy (for an fd `F_DUPFD` makes of it: the same
/// socket), if ioth created `fd`.
pub(crate) fn same_socket(fd: RawFd) -> Option<(Hold, Option<Arc<Proxy>>)> {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&fd)
        .map(|e| (e.hold.another(), e.proxy.clone()))
}
