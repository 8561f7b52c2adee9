//! `ioth-rogue-host`: a host that breaks the protocol on purpose, for tests/socket_batch.rs
//! (the application must treat its host as untrusted). The application runs it as its host
//! (`IOTH_HOST`, an exec per stack, `IOTH_NO_FORK_SERVER=1`) with the channel on fd 3. It
//! answers `Hello` and `NewStack` as a host does and `Socket` with a real socket, then answers
//! `Sockets` as the first VNL of the `NewStack` says:
//!
//! - `sockets-extra`: one socket more than asked for (and declared so);
//! - `sockets-short`: as many as asked for declared, two fewer attached;
//! - `sockets-zero`: a reply that declares none.
//!
//! It ends at EOF or after `DelStack`.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use ioth_proto::{Channel, FdKind, Reply, Request, StackStats, PROTO_VERSION};

fn socket(domain: i32, ty: i32, protocol: i32) -> Option<OwnedFd> {
    // SAFETY: socket(2) takes plain integers.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    // SAFETY: a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn main() {
    // SAFETY: fd 3 is the channel the application put there for its host.
    let mut chan = Channel::from_fd(unsafe { OwnedFd::from_raw_fd(3) });
    let mut mode = String::new();
    loop {
        let Ok((req, _)) = chan.recv::<Request>() else {
            return;
        };
        let (reply, fds): (Reply, Vec<OwnedFd>) = match req {
            Request::Hello { .. } => (
                Reply::Hello {
                    version: PROTO_VERSION,
                },
                Vec::new(),
            ),
            Request::NewStack { vnls, .. } => {
                mode = vnls.first().cloned().unwrap_or_default();
                (
                    Reply::StackReady {
                        plugin_path: "ioth-rogue-host".into(),
                        license: None,
                    },
                    Vec::new(),
                )
            }
            Request::Socket {
                domain,
                ty,
                protocol,
            } => (
                Reply::Socket {
                    kind: FdKind::Native,
                },
                socket(domain, ty, protocol).into_iter().collect(),
            ),
            Request::Sockets {
                domain,
                ty,
                protocol,
                count,
            } => {
                let (declared, attached) = match mode.as_str() {
                    "sockets-extra" => (count + 1, count + 1),
                    "sockets-short" => (count, count.saturating_sub(2)),
                    "sockets-zero" => (0, 0),
                    _ => (count, count),
                };
                (
                    Reply::Sockets { count: declared },
                    (0..attached)
                        .filter_map(|_| socket(domain, ty, protocol))
                        .collect(),
                )
            }
            Request::Stats => (Reply::Stats(StackStats::default()), Vec::new()),
            Request::DelStack => {
                let _ = chan.send(&Reply::Deleted, &[]);
                return;
            }
            _ => return,
        };
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        if chan.send(&reply, &borrowed).is_err() {
            return;
        }
    }
}
