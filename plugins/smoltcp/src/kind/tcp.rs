//! The state of a TCP socket ([`crate::tcp`] drives it): bound address, listener with its
//! accept queue, or connection.

use std::collections::VecDeque;
use std::net::SocketAddr;

use ioth_plugin_sdk::proxied::filler::Filler;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::State;
use smoltcp::wire::IpListenEndpoint;

/// A TCP socket.
pub struct Tcp {
    /// Bound address (port non-zero), if bound.
    pub local: Option<SocketAddr>,
    pub st: St,
}

/// Its state.
pub enum St {
    Fresh,
    Listen(Listener),
    Conn(Conn),
    /// A connect failed; the pair is shut down.
    Dead,
}

pub struct Listener {
    pub(crate) backlog: usize,
    pub(crate) socks: Vec<(usize, SocketHandle)>,
    pub(crate) ready: VecDeque<Ready>,
    pub(crate) ep: IpListenEndpoint,
}

pub(crate) struct Ready {
    pub(crate) iface: usize,
    pub(crate) h: SocketHandle,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
}

pub struct Conn {
    pub(crate) iface: usize,
    pub(crate) h: SocketHandle,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) filler: Option<Filler>,
    pub(crate) started: std::time::Instant,
    /// The outcome of a non-blocking connect, for the next `connect` call.
    pub(crate) report: Option<i32>,
    /// The application's end reached EOF: smoltcp was told to close.
    pub(crate) app_eof: bool,
    /// The peer's FIN was passed on (shutdown of the plug-in's end).
    pub(crate) fin_to_app: bool,
    pub(crate) last: State,
    /// Closed: nothing more to pump.
    pub(crate) done: bool,
    /// Payload moved each way, for sock_diag ([`crate::diag`]).
    pub(crate) counts: crate::counts::Counts,
}

impl Tcp {
    pub fn new() -> Tcp {
        Tcp {
            local: None,
            st: St::Fresh,
        }
    }

    pub fn is_listening(&self) -> bool {
        matches!(self.st, St::Listen(_))
    }

    /// The peer, once connected.
    pub fn peer(&self) -> Option<SocketAddr> {
        match &self.st {
            St::Conn(c) if c.filler.is_none() => Some(c.peer),
            _ => None,
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.st {
            St::Conn(c) => Some(c.local),
            _ => self.local,
        }
    }

    /// A connection as sock_diag shows it ([`crate::diag`]): smoltcp's state, local and peer
    /// addresses, payload bytes the peer acknowledged (handed to smoltcp and no longer in its
    /// send buffer) and received.
    pub fn diag(&self, net: &crate::net::Net) -> Option<(State, SocketAddr, SocketAddr, u64, u64)> {
        use smoltcp::socket::AnySocket;
        let St::Conn(c) = &self.st else { return None };
        let k = net
            .ifaces
            .get(c.iface)?
            .sockets
            .iter()
            .find(|(h, _)| *h == c.h)
            .and_then(|(_, s)| smoltcp::socket::tcp::Socket::downcast(s))?;
        let acked = c.counts.bytes_out.saturating_sub(k.send_queue() as u64);
        let received = c.counts.bytes_in + k.recv_queue() as u64;
        Some((k.state(), c.local, c.peer, acked, received))
    }
}
