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
//! This crate is also built as `libioth.so`, a drop-in C ABI for the original libioth (see
//! `client/include/ioth.h`).
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

pub use builder::{StackBuilder, DEFAULT_NEWSTACK_TIMEOUT};
pub use defaults::{default_stack, license, set_default_stack, set_license, socket};
pub use error::{Error, Result};
pub use netlink::{IfAddress, Interface, Route};
pub use socket::Socket;
pub use stack::{Stack, Stats};
