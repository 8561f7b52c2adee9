//! The state of an `AF_NETLINK` socket ([`crate::netlink`] answers its requests).

use std::collections::VecDeque;

/// An `AF_NETLINK` socket: replies waiting for room in the pair.
pub struct Nl {
    pub(crate) out: VecDeque<Vec<u8>>,
    /// A `NETLINK_SOCK_DIAG` socket ([`crate::diag`]), not rtnetlink.
    pub diag: bool,
}

impl Nl {
    pub fn new() -> Nl {
        Nl {
            out: VecDeque::new(),
            diag: false,
        }
    }

    /// A `NETLINK_SOCK_DIAG` socket.
    pub fn sock_diag() -> Nl {
        Nl {
            diag: true,
            ..Nl::new()
        }
    }

    /// Its `SO_PROTOCOL`.
    pub fn protocol(&self) -> i32 {
        if self.diag {
            libc::NETLINK_SOCK_DIAG
        } else {
            libc::NETLINK_ROUTE
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
