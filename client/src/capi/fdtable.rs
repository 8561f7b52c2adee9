//! The C ABI's table of ioth fds: which stack each fd belongs to.
//!
//! An entry's [`Hold`] keeps its stack counted as busy until `ioth_close`. The fd number itself
//! belongs to the C program (it is a `RawFd` at this boundary by nature).

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{OnceLock, RwLock};

use crate::socket::Hold;

fn table() -> &'static RwLock<HashMap<RawFd, Hold>> {
    static TABLE: OnceLock<RwLock<HashMap<RawFd, Hold>>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Records `fd` as a socket of the stack `hold` holds.
pub(crate) fn insert(fd: RawFd, hold: Hold) {
    table()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(fd, hold);
}

/// Forgets `fd`, handing back its hold; `None` if ioth did not create it.
pub(crate) fn remove(fd: RawFd) -> Option<Hold> {
    table()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&fd)
}

/// How calls on an ioth fd are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A kernel socket (the plug-in's own, passed by the host): every call is the plain syscall.
    Native,
}

/// The kind of `fd`, or `None` if ioth did not create it. One read-locked lookup, no
/// allocation: this is on the data path of every `ioth_X`. Every fd is [`Kind::Native`] in this
/// version (the host refuses plug-ins whose sockets are not kernel sockets).
pub(crate) fn kind(fd: RawFd) -> Option<Kind> {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&fd)
        .then_some(Kind::Native)
}

/// A new hold on the stack of `fd` (for the fd `accept` returns), if ioth created `fd`.
pub(crate) fn another_hold(fd: RawFd) -> Option<Hold> {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&fd)
        .map(Hold::another)
}
