//! The state of an `AF_NETLINK` socket ([`crate::netlink`] answers its requests).

use std::collections::VecDeque;

/// An `AF_NETLINK` socket: replies waiting for room in the pair.
pub struct Nl {
    pub(crate) out: VecDeque<Vec<u8>>,
}

impl Nl {
    pub fn new() -> Nl {
        Nl {
            out: VecDeque::new(),
        }
    }

    /// Requests are read only when every reply has gone out.
    pub fn interest(&self, want_out: bool) -> i16 {
        let mut ev = 0;
        if self.out.is_empty() {
            ev |= libc::POLLIN;
        }
        if want_out {
            ev |= libc::POLLOUT;
        }
        ev
    }
}
