//! IPv6 addresses in duplicate address detection, waited for the way programs do.
//!
//! The tests add IPv6 addresses as users do, with duplicate address detection (DAD): on a
//! vdestack stack a new address is *tentative* for one to two seconds. Until the kernel has an
//! address it may use, binding to it, or connecting or sending through an interface that has no
//! usable address yet, fails at once with `EADDRNOTAVAIL`; programs retry. [`retry_unavailable`]
//! is that retry, bounded by [`DAD_BOUND`]. smoltcp does no DAD: its addresses are usable at
//! once, and a call on a smoltcp socket simply succeeds the first time.
//!
//! What a program does right after configuring, checked against tentative addresses, is
//! [`crate::tentative`]'s.

use std::io;
use std::net::IpAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use ioth::Stack;

/// The longest a configured address may stay unusable: Linux's DAD is a random delay of up to
/// `rtr_solicit_delay` (1 s) plus `dad_transmits` (1) × `retrans_time` (1 s); the rest is slack
/// for a loaded machine.
pub const DAD_BOUND: Duration = Duration::from_secs(10);

/// The pause between two attempts.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// Runs `op` until it does anything but fail with `EADDRNOTAVAIL`, or [`DAD_BOUND`] has passed;
/// its last result. `op` makes a whole attempt (a fresh socket for a connect).
pub fn retry_unavailable<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let deadline = Instant::now() + DAD_BOUND;
    loop {
        match op() {
            Err(e)
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && Instant::now() < deadline =>
            {
                sleep(RETRY_EVERY)
            }
            r => return r,
        }
    }
}

/// A link-local IPv6 address of `stack` that is no longer tentative, waited for within
/// [`DAD_BOUND`]; panics if none comes.
pub fn usable_link_local(stack: &Stack) -> IpAddr {
    let deadline = Instant::now() + DAD_BOUND;
    loop {
        let a = stack.addresses().expect("the stack's addresses");
        let found = a.iter().find(|x| {
            matches!(x.addr, IpAddr::V6(v) if v.is_unicast_link_local())
                && x.flags & crate::stacks::IFA_F_TENTATIVE == 0
        });
        if let Some(x) = found {
            return x.addr;
        }
        assert!(Instant::now() < deadline, "no link-local address: {a:?}");
        sleep(Duration::from_millis(50));
    }
}

/// The addresses of interface `ifname` of `stack` (its netlink dump).
pub fn interface_addresses(stack: &Stack, ifname: &str) -> Vec<IpAddr> {
    let idx = stack
        .if_nametoindex(ifname)
        .unwrap_or_else(|e| panic!("if_nametoindex {ifname}: {e}"));
    let all = stack.addresses().expect("addresses");
    all.iter()
        .filter(|a| a.index == idx)
        .map(|a| a.addr)
        .collect()
}

/// Checks that `ip`, the source of a packet that crossed the switch, is one of the addresses of
/// `stack`'s vde0 (the configured one, or its link-local one while the configured one is still
/// in DAD — Linux's choice, RFC 6724), never `::1`.
pub fn assert_from_vde0(stack: &Stack, ip: IpAddr, what: &str) {
    assert!(
        !ip.is_loopback(),
        "{what} left with the loopback source {ip}"
    );
    let own = interface_addresses(stack, "vde0");
    assert!(
        own.contains(&ip),
        "{what}: source {ip} is not an address of vde0: {own:?}"
    );
}

/// Checks that `got`, the source the kernel chose for a socket of `stack` that did not bind, is
/// `configured` — or, on vdestack while `configured` is still in DAD, the link-local address of
/// the same interface (Linux's choice, RFC 6724; see docs/vdestack.md).
pub fn assert_source(stack: &Stack, got: IpAddr, configured: IpAddr) {
    if got == configured {
        return;
    }
    let link_local = matches!(got, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
    assert!(
        link_local && configured.is_ipv6(),
        "source {got}, expected {configured}"
    );
    assert_from_vde0(
        stack,
        got,
        &format!("a connection expected from {configured}"),
    );
}

/// Waits (bounded by [`DAD_BOUND`]) until `a` on `s` has finished duplicate address detection
/// (it is listed without `IFA_F_TENTATIVE`); panics with the addresses shown otherwise.
pub fn wait_not_tentative(s: &Stack, a: IpAddr) {
    let deadline = Instant::now() + DAD_BOUND;
    loop {
        let shown = s.addresses().expect("addresses");
        if shown
            .iter()
            .any(|x| x.addr == a && x.flags & crate::stacks::IFA_F_TENTATIVE == 0)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{a} still tentative: {shown:?}");
        sleep(Duration::from_millis(50));
    }
}
