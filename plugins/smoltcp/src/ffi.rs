//! The plug-in's C ABI: [`Stack`] as the SDK's [`ProxiedStack`], exported with
//! [`ioth_plugin_sdk::export_proxied_stack!`] (`ioth_smoltcp_newstack`, `_delstack`,
//! `_newstack_error`, `_license`, and the socket and control functions of
//! `struct ioth_functions`; the data functions stay libc's, on the application's end of the
//! pair). Each call takes the stack's mutex and then wakes its event loop. The sandbox
//! declaration is the only other export.

use std::ffi::c_int;
use std::io;

use ioth_plugin_sdk::abi::LicenseStr;
use ioth_plugin_sdk::proxied::Handle;
use ioth_plugin_sdk::ProxiedStack;

use crate::sock::{Core, Kind};
use crate::stack::Stack;
use crate::{tcp, udp};

ioth_plugin_sdk::export_proxied_stack!(
    "smoltcp",
    Stack,
    license = "SPDX-License-Identifier: LGPL-2.1-or-later"
);

/// What the host's sandbox must leave (docs/security.md): write access to the places its VNLs
/// name (a `switch://` switch in the host creates a socket per port). No capability.
// The symbol name is the plug-in ABI's, unique to this plug-in.
#[allow(unsafe_code)]
#[export_name = "ioth_smoltcp_sandbox"]
static SANDBOX: LicenseStr = LicenseStr::new("write=@vnl\0");

impl Stack {
    /// Runs a control call under the stack's mutex, then wakes its event loop.
    fn call<T>(&self, f: impl FnOnce(&mut Core) -> io::Result<T>) -> io::Result<T> {
        let r = f(&mut self.shared.lock());
        self.shared.wake.signal();
        r
    }
}

impl ProxiedStack for Stack {
    fn new(vnls: &[&str], options: &str) -> io::Result<Stack> {
        ioth_plugin_sdk::refuse_options("smoltcp", options)?;
        Stack::new(vnls)
    }

    fn owns(&self, h: Handle) -> bool {
        self.shared.lock().handles.contains_key(&h)
    }

    fn socket(&self, domain: c_int, ty: c_int, protocol: c_int) -> io::Result<Handle> {
        self.call(|c| c.socket(domain, ty, protocol))
    }

    fn close(&self, h: Handle) -> io::Result<()> {
        self.call(|c| c.close(h))
    }

    fn bind(&self, h: Handle, a: &[u8]) -> io::Result<()> {
        self.call(|c| c.bind(h, a))
    }

    fn connect(&self, h: Handle, a: &[u8]) -> io::Result<()> {
        self.call(|c| {
            let (_, s) = c.sock(h)?;
            match s.kind {
                Kind::Tcp(_) => tcp::connect(c, h, a),
                Kind::Udp(_) => udp::connect(c, h, a),
                Kind::Netlink(_) => Ok(()),
                Kind::Packet(_) | Kind::RawIp(_) => {
                    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
                }
            }
        })
    }

    fn listen(&self, h: Handle, backlog: c_int) -> io::Result<()> {
        self.call(|c| tcp::listen(c, h, backlog))
    }

    fn accept(&self, h: Handle) -> io::Result<(Handle, Vec<u8>)> {
        self.call(|c| tcp::accept(c, h))
    }

    fn getsockname(&self, h: Handle) -> io::Result<Vec<u8>> {
        self.call(|c| c.getsockname(h))
    }

    fn getpeername(&self, h: Handle) -> io::Result<Vec<u8>> {
        self.call(|c| c.getpeername(h))
    }

    fn setsockopt(&self, h: Handle, level: c_int, name: c_int, v: &[u8]) -> io::Result<()> {
        self.call(|c| c.setsockopt(h, level, name, v))
    }

    fn getsockopt(&self, h: Handle, level: c_int, name: c_int) -> io::Result<Vec<u8>> {
        self.call(|c| c.getsockopt(h, level, name))
    }

    fn shutdown(&self, h: Handle, how: c_int) -> io::Result<()> {
        self.call(|c| c.shutdown(h, how))
    }

    fn delete(&self) -> io::Result<()> {
        self.stop();
        Ok(())
    }
}
