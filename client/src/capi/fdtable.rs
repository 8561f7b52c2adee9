//! The C ABI's table of ioth fds: which stack each fd belongs to.
//!
//! An entry's [`Hold`] keeps its stack counted as busy until `ioth_close`. The fd number itself
//! belongs to the C program (it is a `RawFd` at this boundary by nature).

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{OnceLock, RwLock};

use crate::socket::Hold;
use crate::Stack;

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

/// The stack of `fd`, if ioth created it.
pub(crate) fn stack_of(fd: RawFd) -> Option<Stack> {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&fd)
        .map(Hold::stack)
}

/// Whether ioth created `fd`.
pub(crate) fn contains(fd: RawFd) -> bool {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&fd)
}

/// A new hold on the stack of `fd` (for the fd `accept` returns), if ioth created `fd`.
pub(crate) fn another_hold(fd: RawFd) -> Option<Hold> {
    table()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&fd)
        .map(Hold::another)
}
