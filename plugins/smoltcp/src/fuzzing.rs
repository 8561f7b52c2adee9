//! Entry points for fuzzing and the bounded random-input tests: the parts of the plug-in that
//! parse bytes from another process, over a stack that needs no network (not part of the
//! plug-in's ABI).

use crate::device::VdeDevice;
use crate::net::{Iface, Net, DEFAULT_MTU};

/// A stack's interfaces without a network: `lo` and `vdes` Ethernet interfaces `vde0`, … on
/// libvdeplug's `null://` (frames sent are dropped, none arrive).
pub(crate) fn offline_net(vdes: usize) -> std::io::Result<Net> {
    let now = smoltcp::time::Instant::from_micros(0);
    let mut ifaces = vec![Iface::loopback(now)];
    if vdes > 0 {
        ioth_plugin_sdk::vde::vdeplug::ensure_loaded()?;
    }
    for k in 0..vdes {
        let conn = ioth_plugin_sdk::vde::vdeplug::Conn::open("null://", "ioth smoltcp offline")?;
        let dev = VdeDevice::new(conn, DEFAULT_MTU as usize)?;
        ifaces.push(Iface::vde(k as u32 + 2, &format!("vde{k}"), dev, now));
    }
    Ok(Net::new(ifaces))
}

/// An rtnetlink emulation: answers request records as an `AF_NETLINK` socket of the stack does.
pub struct Netlink {
    net: Net,
    start: std::time::Instant,
}

impl Netlink {
    /// A stack with `lo` and one Ethernet interface `vde0` (on `null://`; only `lo` if
    /// libvdeplug cannot be loaded).
    pub fn new() -> Netlink {
        let net = offline_net(1).unwrap_or_else(|_| {
            Net::new(vec![Iface::loopback(smoltcp::time::Instant::from_micros(
                0,
            ))])
        });
        Netlink {
            net,
            start: std::time::Instant::now(),
        }
    }

    /// The reply records to one request record.
    pub fn answer(&mut self, record: &[u8]) -> Vec<Vec<u8>> {
        let now = smoltcp::time::Instant::from_micros(self.start.elapsed().as_micros() as i64);
        crate::netlink::answer(&mut self.net, record, now)
    }
}

impl Default for Netlink {
    fn default() -> Self {
        Netlink::new()
    }
}
