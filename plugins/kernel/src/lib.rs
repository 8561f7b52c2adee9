//! `ioth_kernel.so`: the kernel's own TCP/IP stack, as seen from the host process (which shares
//! the application's network namespace). Sockets are native kernel sockets. VNLs are refused:
//! this stack has the interfaces of the machine, not virtual ones.
#![deny(missing_docs)]

use std::ffi::c_int;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// The kernel stack: no state of its own.
pub struct KernelStack;

impl ioth_plugin_sdk::NativeStack for KernelStack {
    fn new(vnls: &[&str], options: &str) -> io::Result<Self> {
        ioth_plugin_sdk::refuse_options("kernel", options)?;
        if !vnls.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(KernelStack)
    }

    fn socket(&self, domain: c_int, ty: c_int, protocol: c_int) -> io::Result<OwnedFd> {
        // SAFETY: socket(2) takes plain integers.
        let fd = unsafe { libc::socket(domain, ty, protocol) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created by socket(2) and has no other owner.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

ioth_plugin_sdk::export_native_stack!(
    "kernel",
    KernelStack,
    license = "SPDX-License-Identifier: LGPL-2.1-or-later"
);
