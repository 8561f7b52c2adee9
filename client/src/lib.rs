//! # ioth — the Internet of Threads, one process per stack
//!
//! An application creates virtual TCP/IP stacks at run time, each implemented by a plug-in chosen
//! by name (`ioth_<name>.so`), and uses each through real socket file descriptors: `poll`,
//! `epoll`, `read`/`write` and every fd-based library work on them.
//!
//! Each stack runs in its own host process (`ioth-host`), which loads the plug-in and hands back
//! sockets over a Unix channel (`SCM_RIGHTS`). A crashing plug-in takes down only its own stack.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! let stack = ioth::Stack::new("kernel", &[] as &[&str])?;
//! let listener: std::net::TcpListener =
//!     stack.msocket(libc::AF_INET, libc::SOCK_STREAM, 0)?.into();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Installing the host
//!
//! The stacks run in `ioth-host`, installed once: `cargo install ioth-host` (from the sources:
//! `cargo install --path host`, or `make && sudo make install`). It is found, in order, through
//! `IOTH_HOST`, next to the program, on `PATH`, then in `/usr/local/lib/ioth`, `/usr/lib/ioth`
//! and `/usr/lib/<multiarch>/ioth`; it has the `kernel`, `vdestack` and `smoltcp` stacks built
//! in. Otherwise [`Error::HostNotFound`] says where it looked and that command.
//!
//! ## Environment
//!
//! - `IOTH_HOST`: the host binary to start.
//! - `IOTH_PLUGIN_PATH`: colon-separated directories searched for `ioth_<name>.so` first (then
//!   `~/.ioth`, the host's built-in stacks, the host's own directory).
//! - `IOTH_NEWSTACK_TIMEOUT`, `IOTH_REQUEST_TIMEOUT`: limits in ms of stack creation and of each
//!   request ([`StackBuilder::timeout`], [`StackBuilder::request_timeout`]).
//! - `IOTH_AUDIT`: the file of the stacks' audit trail ([`StackBuilder::audit`]).
//! - `IOTH_DEBUG`: the C ABI prints each error on stderr.
//! - `IOTH_LIBVDEPLUG`: the libvdeplug the VDE plug-ins load (in the host).
//! - `IOTH_PRELOAD`: the preload library of [`run`].
//! - `IOTH_AUDIT_INTERVAL`: ms between the audit trail's looks at sockets and interfaces (in
//!   the host; default 1000, 0: at start and end only).
//! - `IOTH_STATUS_DIR`: where hosts put the status sockets `ioth ps` reads (`off`: none).
//! - `IOTH_NO_FORK_SERVER`: `1` starts each host with an exec of its own
//!   ([`StackBuilder::fork_server`]).
//! - `IOTH_SOCKET_BATCH`: `0` makes each native socket with a request of its own
//!   ([`StackBuilder::socket_batch`]).
//! - `IOTH_SPARE_HOST`: `0`: the fork server never forks a host ahead of demand (by default,
//!   after each stack it forks one that becomes the next stack's host, without a round trip
//!   through the fork server).
//!
//! Hosts get only `IOTH_AUDIT_INTERVAL`, `IOTH_LIBVDEPLUG` and `IOTH_STATUS_DIR` of these.
//! None counts in a setuid, setgid or file-capability process (`AT_SECURE`).
//!
//! The C ABI (`libioth.so`, a drop-in for the original libioth, `client/include/ioth.h`) is
//! the `ioth-capi` crate's; this crate builds no C library.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod builder;
#[cfg(feature = "capi")]
#[doc(hidden)]
pub mod capi;
mod defaults;
mod env;
mod error;
mod handle;
mod link;
mod locate;
mod netlink;
mod procfs;
pub mod run;
mod socket;
mod stack;
mod sys;
#[cfg(feature = "tokio")]
pub mod tokio;

/// The socket2 crate this one's typed calls take ([`Stack::socket`], [`socket`]): use it as
/// `ioth::socket2` to get the same version.
pub use socket2;

pub use builder::{StackBuilder, DEFAULT_NEWSTACK_TIMEOUT};
pub use defaults::{default_stack, license, msocket, set_default_stack, set_license, socket};
pub use error::{Error, Result};
/// The wire protocol's error, as [`Error::Protocol`] carries it; the kind of a host namespace, as
/// [`Stack::namespace`] takes it.
pub use ioth_proto::{NsKind, ProtoError};
pub use netlink::{IfAddress, Interface, Route};
pub use socket::Socket;
pub use stack::{DeleteError, Stack, Stats};
