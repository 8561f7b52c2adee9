//! `ioth_vdestack.so`: the Linux kernel's own TCP/IP stack in a private network namespace owned
//! by the host process, its interfaces tap devices bridged to VDE networks.
//!
//! Runs in the host process (`ioth-host`), one stack per process. `newstack(vnls)`:
//!
//! 1. parses every VNL (`[ifname:]url`, see [`vnl`]); a malformed one fails with `EINVAL`;
//! 2. opens one VDE connection per VNL with libvdeplug, loaded at run time ([`vdeplug`]), while
//!    the host is still in the application's network namespace, so that `udp://`, `vxvde://` or
//!    `tap://` networks are reached from where the application runs; a missing libvdeplug fails
//!    with `ENOPKG` and a message naming the package `libvdeplug2`; a network that cannot be
//!    opened fails with libvdeplug's errno (`ENOENT` for a switch that does not exist). A stack
//!    without VNL never loads libvdeplug;
//! 3. enters a new network namespace ([`sys::enter_private_netns`]), brings `lo` up (so that
//!    127.0.0.1 and ::1 work inside the stack), makes interfaces pick IPv6 sources among their own
//!    addresses only ([`sys::ipv6_source_from_outgoing_interface`]: never `::1` for a packet that
//!    leaves through a tap whose addresses are still in duplicate address detection) and creates
//!    one tap interface per VNL (`vde0`, `vde1`, … or the given names), down and without address:
//!    the application configures them through netlink on a socket of this stack;
//! 4. starts one frame pump thread per interface ([`pump`]).
//!
//! Sockets are plain socket(2) calls made inside the namespace: native kernel fds.
//!
//! `delstack` stops the pumps (an eventfd wakes them), which close the taps and the VDE
//! connections. If the host simply exits, the kernel does the same: the namespace dies with the
//! process, and its tap devices with it.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod pump;
pub mod sys;

pub use ioth_plugin_sdk::vde::{vdeplug, vnl};

use std::cell::Cell;
use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ioth_plugin_sdk::event::Event;

/// A vdestack stack: its namespace and its interfaces' pumps.
pub struct VdeStack {
    /// The stack's network namespace, for threads other than the one that created it.
    netns: OwnedFd,
    /// Interface names, in VNL order.
    ifnames: Vec<String>,
    stop: Arc<Event>,
    pumps: Vec<JoinHandle<()>>,
    /// Disconnected once every pump has ended.
    pumps_done: Mutex<Receiver<()>>,
}

/// How long `delstack` waits for the pumps to end (one could be blocked in a `vde_send` to a
/// stream network such as cmd://); after that the host exits anyway and the kernel cleans up.
const STOP_GRACE: Duration = Duration::from_secs(2);

thread_local! {
    /// Whether this thread is in the stack's namespace (the thread that ran `new` is; any other
    /// joins it with setns before its first socket).
    static IN_NETNS: Cell<bool> = const { Cell::new(false) };
}

impl VdeStack {
    /// The interface names, in VNL order.
    pub fn interfaces(&self) -> &[String] {
        &self.ifnames
    }

    /// Stops the pumps (bounded by [`STOP_GRACE`]); their threads then close the taps and the
    /// VDE connections without being waited for.
    fn stop_pumps(&mut self) {
        if self.pumps.is_empty() {
            return;
        }
        self.stop.signal();
        let deadline = Instant::now() + STOP_GRACE;
        let done = self.pumps_done.get_mut().unwrap_or_else(|e| e.into_inner());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match done.recv_timeout(left) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!("ioth_vdestack: a frame pump did not stop within {STOP_GRACE:?}");
                    self.pumps.clear(); // detached: the host's exit ends them
                    return;
                }
            }
        }
        // Every pump has left its loop and touches nothing of the stack any more; what is left
        // of each thread is closing its tap and VDE connection, which waits for the kernel to
        // unregister the interface (RCU, tens of ms). Not waited for: the host exits after
        // DelStack, and the kernel finishes the teardown in the background.
        self.pumps.clear();
    }
}

impl ioth_plugin_sdk::NativeStack for VdeStack {
    fn new(vnls: &[&str], options: &str) -> io::Result<Self> {
        ioth_plugin_sdk::refuse_options("vdestack", options)?;
        let parsed = vnl::parse_all(vnls)?;
        if !parsed.is_empty() {
            vdeplug::ensure_loaded()?;
        }
        // VDE connections first, from the application's namespace (see the module doc).
        let conns = parsed
            .iter()
            .map(|v| vdeplug::Conn::open(&v.url, &format!("ioth vdestack {}", v.ifname)))
            .collect::<io::Result<Vec<_>>>()?;
        let netns = sys::enter_private_netns()?;
        IN_NETNS.with(|c| c.set(true));
        sys::link_up("lo")?;
        sys::ipv6_source_from_outgoing_interface()?; // before the taps, which inherit it
        let taps = parsed
            .iter()
            .map(|v| sys::create_tap(&v.ifname))
            .collect::<io::Result<Vec<_>>>()?;
        let stop = Arc::new(Event::new()?);
        let (done_tx, done_rx) = mpsc::channel();
        let mut stack = VdeStack {
            netns,
            ifnames: parsed.iter().map(|v| v.ifname.clone()).collect(),
            stop: stop.clone(),
            pumps: Vec::new(),
            pumps_done: Mutex::new(done_rx),
        };
        for ((v, tap), conn) in parsed.iter().zip(taps).zip(conns) {
            match pump::start(&v.ifname, tap, conn, stop.clone(), done_tx.clone()) {
                Ok(p) => stack.pumps.push(p),
                Err(e) => {
                    drop(done_tx); // so that dropping `stack` sees the pumps end
                    return Err(e);
                }
            }
        }
        Ok(stack)
    }

    fn socket(&self, domain: c_int, ty: c_int, protocol: c_int) -> io::Result<OwnedFd> {
        if !IN_NETNS.with(Cell::get) {
            sys::join_netns(self.netns.as_fd())?;
            IN_NETNS.with(|c| c.set(true));
        }
        sys::socket(domain, ty, protocol)
    }

    fn delete(mut self) -> io::Result<()> {
        self.stop_pumps();
        Ok(())
    }
}

impl Drop for VdeStack {
    fn drop(&mut self) {
        self.stop_pumps();
    }
}

ioth_plugin_sdk::export_native_stack!(
    "vdestack",
    VdeStack,
    license = "SPDX-License-Identifier: LGPL-2.1-or-later"
);

/// What the host's sandbox must leave (docs/security.md): write access to the places its VNLs
/// name (a `switch://` switch runs in the host and creates a socket per port; `ptp://` binds
/// its socket), and `CAP_NET_ADMIN` and `CAP_NET_RAW`. The
/// kernel checks the capabilities of a netlink socket's opener each time a message configures
/// the namespace (and those of a raw socket's creator), so the sockets the host makes later for
/// the application's `ioth_ipaddr_add`/`ping` need them. They act on the host's own network
/// namespace only: the sandbox forbids entering another one.
// The symbol name is the plug-in ABI's, unique to this plug-in.
#[allow(unsafe_code)]
#[export_name = "ioth_vdestack_sandbox"]
static SANDBOX: ioth_plugin_sdk::abi::LicenseStr =
    ioth_plugin_sdk::abi::LicenseStr::new("caps=net_admin,net_raw write=@vnl\0");
