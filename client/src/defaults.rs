//! The process-wide settings: the application's licence and the default stack, and
//! [`socket`] on it. Runs in the application.

use std::sync::RwLock;

use crate::{Result, Socket, Stack};

static LICENSE: RwLock<Option<String>> = RwLock::new(None);
static DEFAULT: RwLock<Option<Stack>> = RwLock::new(None);

/// Declares the application's licence (SPDX), checked against each plug-in's
/// (`ioth_set_license`). Without one, only plug-ins without licence requirements (or LGPL) load.
pub fn set_license(license: Option<&str>) {
    *LICENSE.write().unwrap_or_else(|e| e.into_inner()) = license.map(str::to_owned);
}

/// The licence given to [`set_license`].
pub fn license() -> Option<String> {
    LICENSE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Sets the process-wide default stack used by [`socket`]; `None` reverts to the native kernel
/// stack.
pub fn set_default_stack(stack: Option<&Stack>) {
    *DEFAULT.write().unwrap_or_else(|e| e.into_inner()) = stack.cloned();
}

/// The process-wide default stack (the native kernel stack unless [`set_default_stack`] chose
/// another).
pub fn default_stack() -> Stack {
    DEFAULT
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(Stack::native)
}

/// A socket on the default stack, as [`Stack::socket`] takes it.
pub fn socket(
    domain: socket2::Domain,
    ty: socket2::Type,
    protocol: Option<socket2::Protocol>,
) -> Result<Socket> {
    default_stack().socket(domain, ty, protocol)
}

/// A socket on the default stack from C integers (`ioth_socket`; the low-level form of
/// [`socket`], as [`Stack::msocket`] is of [`Stack::socket`]): `ty` may carry `SOCK_NONBLOCK` and
/// `SOCK_CLOEXEC`.
pub fn msocket(domain: i32, ty: i32, protocol: i32) -> Result<Socket> {
    default_stack().msocket(domain, ty, protocol)
}
