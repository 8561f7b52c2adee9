//! The proxied sockets of a stack: the table id → plug-in handle, and the control calls served
//! on them (docs/proxied.md). Runs in the host process, on the serving thread.
//!
//! - **fd data** plug-ins: the handle `socket`/`accept` return is the application's end of a
//!   pair the plug-in pumps itself. The host owns that fd from then on: it sends a copy to the
//!   application and keeps the handle open (the plug-in acts on it: tokens, filler, resets)
//!   until `Close`, when it calls the plug-in's own `close` (if it has one) and then closes the
//!   handle. Control calls go straight to the plug-in's functions, which are non-blocking by
//!   contract.
//! - **host pump** plug-ins: everything is in the [`Pump`]'s table (see [`crate::pump`]).
//!
//! Ids are unique for the life of the host and never reused.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use ioth_proto::{ControlOp, Reply};

use crate::calls::Calls;
use crate::error::HostError;
use crate::plugin::{DataPath, Plugin};
use crate::pump::{Done, Pump};

/// An error of call `what`, with the errno the plug-in (or the system) gave.
fn wire(what: &str, e: io::Error) -> HostError {
    HostError::call(what, e)
}

fn ebadf(id: u64) -> HostError {
    HostError::no_socket(id)
}

/// A copy of a new fd-data handle to send, and the handle; if the copy fails, the socket is
/// closed on the plug-in (as [`Sockets::close`] would) and the call fails.
fn dup_or_close(
    c: &Calls,
    own_close: bool,
    fd: OwnedFd,
    what: &str,
) -> Result<(OwnedFd, OwnedFd), HostError> {
    match fd.try_clone() {
        Ok(give) => Ok((give, fd)),
        Err(e) => {
            if own_close {
                let _ = c.close(fd.as_raw_fd());
            }
            Err(wire(&format!("{what}: dup"), e))
        }
    }
}

/// Where the sockets live.
enum Table {
    FdData(HashMap<u64, OwnedFd>),
    Pump(Pump),
    /// A native plug-in: no proxied sockets.
    None,
}

/// The proxied sockets of one stack.
pub struct Sockets {
    calls: Calls,
    own_close: bool,
    table: Table,
    next_id: u64,
}

/// A control call's answer and the fd that travels with it.
pub type Answer = (Reply, Option<OwnedFd>);

impl Sockets {
    /// The socket table for `plugin` (a host-pump plug-in gets its pump thread).
    pub fn new(plugin: &Plugin) -> io::Result<Sockets> {
        let calls = plugin.calls();
        let table = match plugin.path() {
            DataPath::Native => Table::None,
            DataPath::FdData => Table::FdData(HashMap::new()),
            DataPath::HostPump => Table::Pump(Pump::start(calls)?),
        };
        Ok(Sockets {
            calls,
            own_close: plugin.own_close(),
            table,
            next_id: 1,
        })
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A new proxied socket: its id and the application's end, to send.
    pub fn socket(
        &mut self,
        domain: i32,
        ty: i32,
        protocol: i32,
    ) -> Result<(u64, OwnedFd), HostError> {
        let id = self.new_id();
        match &mut self.table {
            Table::FdData(map) => {
                let fd = self
                    .calls
                    .socket_fd(domain, ty, protocol)
                    .map_err(|e| wire("socket", e))?;
                let give = dup_or_close(&self.calls, self.own_close, fd, "socket")?;
                map.insert(id, give.1);
                Ok((id, give.0))
            }
            Table::Pump(p) => p
                .socket(id, domain, ty, protocol)
                .map(|fd| (id, fd))
                .map_err(|e| wire("socket", e)),
            Table::None => Err(HostError::InvalidArgument(
                "the stack's sockets are native".into(),
            )),
        }
    }

    /// Serves `op` on socket `id`.
    pub fn control(&mut self, id: u64, op: ControlOp) -> Result<Answer, HostError> {
        if let Err(m) = op.check() {
            return Err(HostError::InvalidArgument(m));
        }
        let what = op.name();
        let new_id = if matches!(op, ControlOp::Accept) {
            self.new_id()
        } else {
            0
        };
        match &mut self.table {
            Table::FdData(map) => {
                let h = map.get(&id).ok_or_else(|| ebadf(id))?.as_raw_fd();
                let c = &self.calls;
                let bytes = match op {
                    ControlOp::Bind(a) => c.bind(h, &a).map(|()| Vec::new()),
                    ControlOp::Connect(a) => c.connect(h, &a).map(|()| Vec::new()),
                    ControlOp::Listen(b) => c.listen(h, b).map(|()| Vec::new()),
                    ControlOp::Accept => {
                        let (fd, peer) = c.accept_fd(h).map_err(|e| wire(what, e))?;
                        let (give, fd) = dup_or_close(c, self.own_close, fd, what)?;
                        map.insert(new_id, fd);
                        return Ok((Reply::Accepted { id: new_id, peer }, Some(give)));
                    }
                    ControlOp::GetSockName => c.name(h, false),
                    ControlOp::GetPeerName => c.name(h, true),
                    ControlOp::SetSockOpt { level, name, value } => {
                        c.setsockopt(h, level, name, &value).map(|()| Vec::new())
                    }
                    ControlOp::GetSockOpt { level, name, len } => {
                        c.getsockopt(h, level, name, len as usize)
                    }
                    ControlOp::Shutdown(how) => c.shutdown(h, how).map(|()| Vec::new()),
                };
                bytes
                    .map(|b| (Reply::Control(b), None))
                    .map_err(|e| wire(what, e))
            }
            Table::Pump(p) => match p.control(id, &op, new_id).map_err(|e| wire(what, e))? {
                Done::Bytes(b) => Ok((Reply::Control(b), None)),
                Done::Accepted { peer, app } => {
                    Ok((Reply::Accepted { id: new_id, peer }, Some(app)))
                }
            },
            Table::None => Err(ebadf(id)),
        }
    }

    /// The payload bytes proxied socket `id` moved each way, where the host pumps them (a
    /// plug-in that pumps its own fd data counts for itself: docs/audit.md).
    pub fn counters(&self, id: u64) -> Option<(u64, u64)> {
        match &self.table {
            Table::Pump(p) => p.counters(id),
            _ => None,
        }
    }

    /// The application closed socket `id`.
    pub fn close(&mut self, id: u64) -> Result<(), HostError> {
        match &mut self.table {
            Table::FdData(map) => {
                let fd = map.remove(&id).ok_or_else(|| ebadf(id))?;
                // The plug-in's own close first (the handle must still be open for it); libc's
                // close or none would close it twice. Then the host's copy.
                let r = if self.own_close {
                    self.calls.close(fd.as_raw_fd())
                } else {
                    Ok(())
                };
                drop(fd);
                r.map_err(|e| wire("close", e))
            }
            Table::Pump(p) => p.close(id).map_err(|e| match e.raw_os_error() {
                Some(libc::EBADF) => ebadf(id),
                _ => wire("close", e),
            }),
            Table::None => Err(ebadf(id)),
        }
    }
}
