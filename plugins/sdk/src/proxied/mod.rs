//! The proxied-fd contract (docs/proxied.md), once for everyone who speaks it: the application's
//! side (the client library, the preload library), the host's pump (for plug-ins whose sockets
//! are fds of their own) and plug-ins that serve socketpairs themselves.
//!
//! A proxied socket is the application's end of a socketpair; whoever serves the other end
//! moves data between it and the stack. What both ends must agree on:
//!
//! - [`header`]: unconnected datagram sockets start each record with a 28-byte address header;
//! - [`sockaddr`]: the `sockaddr` bytes of the Berkeley calls, to and from [`std::net::SocketAddr`];
//! - [`filler`]: a non-blocking `connect` keeps the application's end unwritable until done;
//! - a listening socket has one [`ACCEPT_TOKEN`] byte in the pair per connection ready (at most
//!   one, for the host's pump), which `accept` consumes from the application's end;
//! - a stream the stack reset has a [`RESET_BYTE`] left unread in the application's end when the
//!   other end closes: the application's next read fails with `ECONNRESET`;
//! - the bounds on what a control call carries: [`MAX_ADDRLEN`], [`MAX_OPTLEN`].
//!
//! [`ProxiedStack`] and [`crate::export_proxied_stack!`] give a Rust plug-in of this kind its C
//! ABI, as [`crate::NativeStack`] does for kernel-socket plug-ins; [`Handle`] is how the host
//! and such a plug-in name a socket.

pub mod filler;
mod handle;
pub mod header;
pub mod sockaddr;
mod stack;

pub use handle::Handle;
pub use header::HDR_LEN;
pub use stack::{ProxiedStack, ProxiedState};

/// The byte a listening socket's server writes into the pair per connection ready to accept.
pub const ACCEPT_TOKEN: u8 = b'A';
/// The byte left unread in the application's end of a stream that was reset.
pub const RESET_BYTE: u8 = b'R';
/// Longest address a control call carries (`sockaddr_storage` is 128 bytes).
pub const MAX_ADDRLEN: usize = 128;
/// Longest option value a control call carries, both ways (the wire's bound as well).
pub const MAX_OPTLEN: usize = 1024;
