//! `ioth_kernel.so`: the kernel's own TCP/IP stack, as seen from the host process (which shares
//! the application's network namespace). Sockets are native kernel sockets. VNLs are refused:
//! this stack has the interfaces of the machine, not virtual ones.
#![deny(missing_docs)]

use std::ffi::c_int;
use std::io;
use std::os::fd::OwnedFd;

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
        // socket(2) with the integers as given (SOCK_NONBLOCK/SOCK_CLOEXEC in `ty` included).
        let protocol = (protocol != 0).then(|| socket2::Protocol::from(protocol));
        let s = socket2::Socket::new_raw(
            socket2::Domain::from(domain),
            socket2::Type::from(ty),
            protocol,
        )?;
        Ok(s.into())
    }
}

ioth_plugin_sdk::export_native_stack!(
    "kernel",
    KernelStack,
    license = "SPDX-License-Identifier: LGPL-2.1-or-later"
);

/// What the host's sandbox must leave (docs/security.md): `CAP_NET_ADMIN` and `CAP_NET_RAW`,
/// when the host has them. The kernel checks the capabilities of a netlink socket's opener each
/// time a message configures the namespace (and those of a raw socket's creator), so the sockets
/// the host makes later for the application's configuration calls and `ping` need them.
// The symbol name is the plug-in ABI's, unique to this plug-in.
#[allow(unsafe_code)]
#[export_name = "ioth_kernel_sandbox"]
static SANDBOX: ioth_plugin_sdk::abi::LicenseStr =
    ioth_plugin_sdk::abi::LicenseStr::new("caps=net_admin,net_raw\0");
