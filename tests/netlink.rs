//! Netlink configuration (`if_nametoindex`, links, addresses, routes, dumps, `getifaddrs`) in
//! Rust and from C, on `kernel` stacks whose hosts live in **private network namespaces**.
//!
//! Network namespaces are per thread in Linux, and a host inherits the namespace of the thread
//! that spawns it. So each test spawns a thread, `unshare(CLONE_NEWNET)`s it and creates the
//! stack there: the host's namespace is fresh (only `lo`) and goes away with the host. Nothing
//! here touches the machine's own network namespace. The C test runs its program under
//! `unshare -n` for the same reason. Needs root (CAP_SYS_ADMIN): without it each test says so
//! on stderr and returns.
//!
//! An independent witness checks what the Rust side reads back: `ip` run with `nsenter` in the
//! host's namespace (and, in C, glibc's own `getifaddrs`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ioth::{Error, Stack};
use ioth_tests::cprog;
use ioth_tests::stacks::{ip, IFA_F_NODAD, IFA_F_TENTATIVE};
use nix::sched::{unshare, CloneFlags};

/// A `kernel` stack whose host runs in a new, private network namespace (the tests that use it
/// need root).
fn private_stack() -> Stack {
    let r = std::thread::spawn(|| -> Result<Stack, String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        Stack::new("kernel", &[] as &[&str]).map_err(|e| format!("newstack kernel: {e}"))
    })
    .join()
    .expect("stack thread panicked");
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn netns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .ino()
}

fn host_pid(stack: &Stack) -> u32 {
    stack.pid().expect("a kernel stack has a host")
}

/// `ip ARGS` run in the host's network namespace: the independent witness.
fn ip_in(stack: &Stack, args: &[&str]) -> String {
    let ns = format!("--net=/proc/{}/ns/net", host_pid(stack));
    let out = Command::new("nsenter")
        .arg(&ns)
        .arg("ip")
        .args(args)
        .output()
        .expect("run nsenter ip");
    assert!(
        out.status.success(),
        "nsenter {ns} ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn errno_of<T: std::fmt::Debug>(r: ioth::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.errno(),
    }
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a private network namespace (CAP_SYS_ADMIN)"
)]
fn host_is_in_a_private_namespace_with_only_lo() {
    let stack = private_stack();
    let pid = host_pid(&stack);
    let ours = netns_inode("/proc/thread-self/ns/net");
    let theirs = netns_inode(&format!("/proc/{pid}/ns/net"));
    assert_ne!(
        ours, theirs,
        "the host must not share the test's network namespace"
    );

    assert_eq!(stack.if_nametoindex("lo").unwrap(), 1);
    let links = stack.interfaces().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].name, "lo");
    assert_eq!(links[0].index, 1);
    assert_eq!(links[0].link_type, 772, "ARPHRD_LOOPBACK");
    assert!(links[0].flags & libc::IFF_LOOPBACK as u32 != 0);
    assert_eq!(links[0].mac(), Some([0; 6]));
    assert_eq!(stack.link_get_mac(1).unwrap(), [0; 6]);

    // A fresh namespace's lo is down and has no address.
    assert!(!links[0].is_up());
    assert!(stack.addresses().unwrap().is_empty());
    stack.link_set_up(1, true).unwrap();
    assert!(stack.interface(1).unwrap().is_up());
    let addrs = stack.addresses().unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a.addr == ip("127.0.0.1") && a.prefix_len == 8 && a.index == 1),
        "{addrs:?}"
    );
    assert!(ip_in(&stack, &["-o", "addr"]).contains("inet 127.0.0.1/8"));
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a private network namespace (CAP_SYS_ADMIN)"
)]
fn unknown_interfaces_are_enodev() {
    let stack = private_stack();
    assert_eq!(errno_of(stack.if_nametoindex("nosuch0")), libc::ENODEV);
    assert_eq!(errno_of(stack.if_nametoindex("")), libc::ENODEV);
    assert_eq!(
        errno_of(stack.if_nametoindex("a-name-far-too-long")),
        libc::ENODEV
    );
    assert_eq!(errno_of(stack.link_set_up(4242, true)), libc::ENODEV);
    assert_eq!(errno_of(stack.link_set_mtu(4242, 1400)), libc::ENODEV);
    assert_eq!(
        errno_of(stack.link_set_mac(4242, [2, 0, 0, 0, 0, 1])),
        libc::ENODEV
    );
    assert_eq!(errno_of(stack.link_get_mac(4242)), libc::ENODEV);
    assert_eq!(
        errno_of(stack.ipaddr_add(ip("10.9.0.1"), 24, 4242)),
        libc::ENODEV
    );
    assert_eq!(
        errno_of(stack.iplink_del(Some("nosuch0"), None)),
        libc::ENODEV
    );
    assert_eq!(errno_of(stack.iplink_del(None, Some(4242))), libc::ENODEV);
    // The error says which call failed, and how.
    let e = stack.ipaddr_add(ip("10.9.0.1"), 24, 4242).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::Stack { .. }), "{e:?}");
    assert!(s.contains("ipaddr_add 10.9.0.1/24 dev 4242"), "{s}");
    assert!(s.contains("ENODEV"), "{s}");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a private network namespace (CAP_SYS_ADMIN)"
)]
fn bridge_and_veth_links() {
    let stack = private_stack();
    let br = stack
        .iplink_add(Some("nlbr0"), None, "bridge", None)
        .unwrap();
    assert!(br > 1);
    assert_eq!(stack.if_nametoindex("nlbr0").unwrap(), br);
    let v0 = stack
        .iplink_add(Some("nlveth0"), None, "veth", Some("nlveth1"))
        .unwrap();
    let v1 = stack.if_nametoindex("nlveth1").unwrap();
    assert_eq!(stack.if_nametoindex("nlveth0").unwrap(), v0);
    assert_ne!(v0, v1);
    // A link created with a chosen index.
    let chosen = stack
        .iplink_add(Some("nlbr9"), Some(99), "bridge", None)
        .unwrap();
    assert_eq!(chosen, 99);
    assert_eq!(stack.if_nametoindex("nlbr9").unwrap(), 99);

    let links = stack.interfaces().unwrap();
    let kind = |n: &str| {
        links
            .iter()
            .find(|l| l.name == n)
            .unwrap_or_else(|| panic!("{n} missing from {links:?}"))
            .kind
            .clone()
    };
    assert_eq!(kind("nlbr0").as_deref(), Some("bridge"));
    assert_eq!(kind("nlveth0").as_deref(), Some("veth"));
    assert_eq!(kind("nlveth1").as_deref(), Some("veth"));
    let witness = ip_in(&stack, &["-o", "link"]);
    for n in ["nlbr0", "nlbr9", "nlveth0@nlveth1", "nlveth1@nlveth0"] {
        assert!(witness.contains(&format!(": {n}:")), "{n} in {witness}");
    }
    // Nothing leaked into the test's own namespace.
    assert_eq!(
        errno_of(Stack::native().if_nametoindex("nlbr0")),
        libc::ENODEV
    );

    assert_eq!(
        errno_of(stack.iplink_add(Some("nlbr0"), None, "bridge", None)),
        libc::EEXIST
    );
    assert_eq!(
        errno_of(stack.iplink_add(Some("bad/name"), None, "bridge", None)),
        libc::EINVAL
    );
    assert_eq!(
        errno_of(stack.iplink_add(Some("nlx0"), None, "no-such-kind", None)),
        libc::EOPNOTSUPP
    );

    stack.iplink_del(Some("nlveth0"), None).unwrap();
    assert_eq!(errno_of(stack.if_nametoindex("nlveth1")), libc::ENODEV);
    stack.iplink_del(None, Some(br)).unwrap();
    stack.iplink_del(Some("nlbr9"), Some(99)).unwrap();
    assert_eq!(errno_of(stack.if_nametoindex("nlbr0")), libc::ENODEV);
    assert_eq!(stack.interfaces().unwrap().len(), 1);
    assert_eq!(errno_of(stack.iplink_del(None, None)), libc::EINVAL);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a private network namespace (CAP_SYS_ADMIN)"
)]
fn link_up_down_mtu_and_mac() {
    let stack = private_stack();
    let br = stack
        .iplink_add(Some("nlbr0"), None, "bridge", None)
        .unwrap();
    stack.link_set_up(br, true).unwrap();
    assert!(stack.interface(br).unwrap().is_up());
    stack.link_set_mtu(br, 1400).unwrap();
    let mac = [0x02, 0x10, 0x20, 0x30, 0x40, 0x50];
    stack.link_set_mac(br, mac).unwrap();
    assert_eq!(stack.link_get_mac(br).unwrap(), mac);
    let i = stack.interface(br).unwrap();
    assert_eq!(i.mtu, 1400);
    assert_eq!(i.mac(), Some(mac));
    assert_eq!(i.broadcast, vec![0xff; 6]);
    let w = ip_in(&stack, &["-o", "link", "show", "dev", "nlbr0"]);
    assert!(w.contains("mtu 1400"), "{w}");
    assert!(w.contains("link/ether 02:10:20:30:40:50"), "{w}");
    assert!(w.contains("BROADCAST,MULTICAST,UP"), "{w}");

    stack.link_set_up(br, false).unwrap();
    assert!(!stack.interface(br).unwrap().is_up());
    let w = ip_in(&stack, &["-o", "link", "show", "dev", "nlbr0"]);
    assert!(w.contains("state DOWN"), "{w}");
    // The kernel refuses MTUs out of range with EINVAL; a multicast MAC with EADDRNOTAVAIL.
    assert_eq!(errno_of(stack.link_set_mtu(br, 10)), libc::EINVAL);
    assert_eq!(
        errno_of(stack.link_set_mac(br, [1, 0, 0, 0, 0, 1])),
        libc::EADDRNOTAVAIL
    );
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a private network namespace (CAP_SYS_ADMIN)"
)]
fn addresses_v4_and_v6() {
    let stack = private_stack();
    let br = stack
        .iplink_add(Some("nlbr0"), None, "bridge", None)
        .unwrap();
    stack.link_set_up(br, true).unwrap();
    stack.ipaddr_add(ip("10.77.0.1"), 24, br).unwrap();
    stack.ipaddr_add(ip("10.77.1.1"), 16, br).unwrap();
    stack.ipaddr_add(ip("fd00:77::1"), 64, br).unwrap();

    let addrs = stack.addresses().unwrap();
    let find = |a: &str| addrs.iter().find(|x| x.addr == ip(a) && x.index == br);
    let v4 = find("10.77.0.1").unwrap_or_else(|| panic!("{addrs:?}"));
    assert_eq!(v4.prefix_len, 24);
    assert_eq!(v4.label.as_deref(), Some("nlbr0"));
    assert_eq!(find("10.77.1.1").map(|a| a.prefix_len), Some(16));
    let v6 = find("fd00:77::1").unwrap_or_else(|| panic!("{addrs:?}"));
    assert_eq!(v6.prefix_len, 64);
    let w = ip_in(&stack, &["-o", "addr", "show", "dev", "nlbr0"]);
    assert!(w.contains("inet 10.77.0.1/24"), "{w}");
    assert!(w.contains("inet 10.77.1.1/16"), "{w}");
    assert!(w.contains("inet6 fd00:77::1/64"), "{w}");

    // Errors: the kernel's errno, or EINVAL before sending.
    assert_eq!(
        errno_of(stack.ipaddr_add(ip("10.77.0.1"), 24, br)),
        libc::EEXIST
    );
    assert_eq!(
        errno_of(stack.ipaddr_add(ip("10.77.0.2"), 33, br)),
        libc::EINVAL
    );
    assert_eq!(
        errno_of(stack.ipaddr_add(ip("fd00:77::2"), 129, br)),
        libc::EINVAL
    );
    assert_eq!(
        errno_of(stack.ipaddr_del(ip("10.77.9.9"), 24, br)),
        libc::EADDRNOTAVAIL
    );
    assert_eq!(
        errno_of(stack.ipaddr_del(ip("fd00:77::9"), 64, br)),
        libc::EADDRNOTAVAIL
    );

    stack.ipaddr_del(ip("10.77.0.1"), 24, br).unwrap();
    stack.ipaddr_del(ip("fd00:77::1"), 64, br).unwrap();
    assert_eq!(
        errno_of(stack.ipaddr_del(ip("10.77.0.1"), 24, br)),
        libc::EADDRNOTAVAIL
    );
    let addrs = stack.addresses().unwrap();
    assert!(
        !addrs.iter().any(|a| a.addr == ip("10.77.0.1")),
        "{addrs:?}"
    );
    assert!(
        !addrs.iter().any(|a| a.addr == ip("fd00:77::1")),
        "{addrs:?}"
    );
    let w = ip_in(&stack, &["-o", "addr", "show", "dev", "nlbr0"]);
    assert!(!w.contains("10.77.0.1/"), "{w}");
    assert!(w.contains("inet 10.77.1.1/16"), "{w}");
}

/// `IFA_F_NODAD` reaches the kernel: an address added with it skips duplicate address detection
/// (reported with the flag, never tentative), while one added without it on the same bridge,
/// which has no port and so no carrier, stays tentative.
#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: a private network namespace")]
fn nodad_address_is_usable_at_once() {
    let stack = private_stack();
    let br = stack
        .iplink_add(Some("nlbr0"), None, "bridge", None)
        .unwrap();
    stack.link_set_up(br, true).unwrap();
    stack
        .ipaddr_add_flags(ip("fd00:77::1"), 64, br, IFA_F_NODAD, 0)
        .unwrap();
    stack.ipaddr_add(ip("fd00:77::2"), 64, br).unwrap();
    let addrs = stack.addresses().unwrap();
    let find = |a: &str| {
        addrs
            .iter()
            .find(|x| x.addr == ip(a) && x.index == br)
            .unwrap_or_else(|| panic!("{a} not in {addrs:?}"))
    };
    let nodad = find("fd00:77::1");
    assert!(nodad.flags & IFA_F_NODAD != 0, "{nodad:?}");
    assert!(nodad.flags & IFA_F_TENTATIVE == 0, "{nodad:?}");
    let dad = find("fd00:77::2");
    assert!(dad.flags & IFA_F_NODAD == 0, "{dad:?}");
    assert!(dad.flags & IFA_F_TENTATIVE != 0, "{dad:?}");
    let w = ip_in(&stack, &["-o", "addr", "show", "dev", "nlbr0"]);
    let line = |a: &str| {
        w.lines()
            .find(|l| l.contains(a))
            .unwrap_or_else(|| panic!("{a} not in {w}"))
            .to_owned()
    };
    let l1 = line("inet6 fd00:77::1/64");
    assert!(l1.contains("nodad") && !l1.contains("tentative"), "{l1}");
    let l2 = line("inet6 fd00:77::2/64");
    assert!(!l2.contains("nodad") && l2.contains("tentative"), "{l2}");
    // A usable address can be bound at once; a tentative one cannot (yet).
    let s = stack.msocket(libc::AF_INET6, libc::SOCK_DGRAM, 0).unwrap();
    s.bind(&"[fd00:77::1]:0".parse().unwrap()).unwrap();
    let t = stack.msocket(libc::AF_INET6, libc::SOCK_DGRAM, 0).unwrap();
    assert_eq!(
        t.bind(&"[fd00:77::2]:0".parse().unwrap())
            .map_err(|e| e.raw_os_error()),
        Err(Some(libc::EADDRNOTAVAIL))
    );
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a private network namespace (CAP_SYS_ADMIN)"
)]
fn routes_v4_and_v6() {
    let stack = private_stack();
    let br = stack
        .iplink_add(Some("nlbr0"), None, "bridge", None)
        .unwrap();
    stack.link_set_up(br, true).unwrap();
    stack.ipaddr_add(ip("10.77.0.1"), 24, br).unwrap();
    stack.ipaddr_add(ip("fd00:77::1"), 64, br).unwrap();
    let gw4 = ip("10.77.0.254");
    let gw6 = ip("fd00:77::fe");

    stack.iproute_add(None, Some(gw4), None).unwrap();
    stack
        .iproute_add(Some((ip("10.88.0.0"), 16)), Some(gw4), None)
        .unwrap();
    stack
        .iproute_add(Some((ip("10.99.0.0"), 24)), None, Some(br))
        .unwrap();
    stack.iproute_add(None, Some(gw6), Some(br)).unwrap();
    stack
        .iproute_add(Some((ip("fd00:88::"), 48)), Some(gw6), None)
        .unwrap();

    let routes = stack.routes().unwrap();
    let has = |dst: &str, p: u8, gw: Option<IpAddr>| {
        routes
            .iter()
            .any(|r| r.dst == ip(dst) && r.prefix_len == p && r.gateway == gw)
    };
    assert!(has("0.0.0.0", 0, Some(gw4)), "{routes:?}");
    assert!(has("10.88.0.0", 16, Some(gw4)), "{routes:?}");
    assert!(has("10.99.0.0", 24, None), "{routes:?}");
    assert!(has("::", 0, Some(gw6)), "{routes:?}");
    assert!(has("fd00:88::", 48, Some(gw6)), "{routes:?}");
    let w4 = ip_in(&stack, &["route"]);
    assert!(w4.contains("default via 10.77.0.254 dev nlbr0"), "{w4}");
    assert!(
        w4.contains("10.88.0.0/16 via 10.77.0.254 dev nlbr0"),
        "{w4}"
    );
    assert!(w4.contains("10.99.0.0/24 dev nlbr0"), "{w4}");
    let w6 = ip_in(&stack, &["-6", "route"]);
    assert!(w6.contains("default via fd00:77::fe dev nlbr0"), "{w6}");
    assert!(
        w6.contains("fd00:88::/48 via fd00:77::fe dev nlbr0"),
        "{w6}"
    );

    // Errors.
    assert_eq!(
        errno_of(stack.iproute_add(None, Some(gw4), None)),
        libc::EEXIST
    );
    assert_eq!(
        errno_of(stack.iproute_add(Some((ip("10.5.0.0"), 33)), Some(gw4), None)),
        libc::EINVAL
    );
    assert_eq!(
        errno_of(stack.iproute_add(Some((ip("10.5.0.0"), 16)), Some(gw6), None)),
        libc::EINVAL
    );
    assert_eq!(
        errno_of(stack.iproute_add(None, None, Some(br))),
        libc::EINVAL
    );
    // Host bits in a destination: EINVAL, with the kernel's own reason in the message.
    let e = stack
        .iproute_add(Some((ip("10.5.0.1"), 16)), Some(gw4), None)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let s = e.to_string();
    assert!(
        s.starts_with("iproute_add 10.5.0.1/16 via 10.77.0.254: "),
        "{s}"
    );
    assert!(s.contains("Invalid prefix"), "{s}");
    // A gateway on no connected network: the kernel says ENETUNREACH.
    assert_eq!(
        errno_of(stack.iproute_add(Some((ip("10.6.0.0"), 16)), Some(ip("192.0.2.1")), None)),
        libc::ENETUNREACH
    );
    // An on-link route out of an interface that does not exist.
    assert_eq!(
        errno_of(stack.iproute_add(Some((ip("10.7.0.0"), 16)), None, Some(4242))),
        libc::ENODEV
    );

    stack.iproute_del(None, Some(gw4), None).unwrap();
    stack
        .iproute_del(Some((ip("10.88.0.0"), 16)), Some(gw4), None)
        .unwrap();
    stack
        .iproute_del(Some((ip("10.99.0.0"), 24)), None, Some(br))
        .unwrap();
    stack.iproute_del(None, Some(gw6), None).unwrap();
    assert_eq!(
        errno_of(stack.iproute_del(None, Some(gw4), None)),
        libc::ESRCH
    );
    let w4 = ip_in(&stack, &["route"]);
    assert!(!w4.contains("default"), "{w4}");
    assert!(!w4.contains("10.88.0.0"), "{w4}");
    assert!(!w4.contains("10.99.0.0"), "{w4}");
    let routes = stack.routes().unwrap();
    assert!(!has_route(&routes, "::", 0), "{routes:?}");
    assert!(has_route(&routes, "fd00:88::", 48), "{routes:?}");
}

fn has_route(routes: &[ioth::Route], dst: &str, p: u8) -> bool {
    routes.iter().any(|r| r.dst == ip(dst) && r.prefix_len == p)
}

/// Dumps larger than one datagram (here ~70 links of ~1.5 KB each, plus hundreds of
/// addresses) arrive in several parts; every part is read.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a private network namespace (CAP_SYS_ADMIN)"
)]
fn dumps_span_many_datagrams() {
    let stack = private_stack();
    const PAIRS: usize = 35;
    for k in 0..PAIRS {
        stack
            .iplink_add(
                Some(&format!("nla{k}")),
                None,
                "veth",
                Some(&format!("nlb{k}")),
            )
            .unwrap();
    }
    let br = stack
        .iplink_add(Some("nlbr0"), None, "bridge", None)
        .unwrap();
    const ADDRS: u32 = 300;
    for k in 0..ADDRS {
        let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a40_0000u32 + k * 4 + 1));
        stack.ipaddr_add(a, 30, br).unwrap();
    }
    let links = stack.interfaces().unwrap();
    assert_eq!(links.len(), 1 + 2 * PAIRS + 1);
    for k in 0..PAIRS {
        assert!(links.iter().any(|l| l.name == format!("nla{k}")));
        assert!(links.iter().any(|l| l.name == format!("nlb{k}")));
    }
    let witness = ip_in(&stack, &["-o", "link"]).lines().count();
    assert_eq!(links.len(), witness);
    let addrs = stack.addresses().unwrap();
    assert_eq!(
        addrs.iter().filter(|a| a.index == br).count(),
        ADDRS as usize
    );
    let witness = ip_in(&stack, &["-o", "-4", "addr", "show", "dev", "nlbr0"])
        .lines()
        .count();
    assert_eq!(witness, ADDRS as usize);
}

/// A stack whose host was killed answers netlink calls with a clear error, not a hang.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a private network namespace (CAP_SYS_ADMIN)"
)]
fn calls_on_a_dead_stack_fail_cleanly() {
    let stack = private_stack();
    let pid = nix::unistd::Pid::from_raw(host_pid(&stack) as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let e = stack.if_nametoindex("lo").unwrap_err();
    assert!(matches!(e, Error::StackDied { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::ENETDOWN);
    assert_eq!(errno_of(stack.interfaces()), libc::ENETDOWN);
}

/// The native stack (no host) speaks netlink too, in the calling thread's namespace.
#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a private network namespace (CAP_SYS_ADMIN)"
)]
fn native_stack_in_a_private_namespace() {
    let names = std::thread::spawn(|| -> Vec<String> {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let s = Stack::native();
        let br = s.iplink_add(Some("nlnat0"), None, "bridge", None).unwrap();
        s.link_set_up(br, true).unwrap();
        s.ipaddr_add(ip("10.44.0.1"), 24, br).unwrap();
        assert!(s
            .addresses()
            .unwrap()
            .iter()
            .any(|a| a.addr == ip("10.44.0.1") && a.index == br));
        s.interfaces()
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    })
    .join()
    .expect("native thread");
    assert_eq!(names, vec!["lo".to_owned(), "nlnat0".to_owned()]);
    assert_eq!(
        errno_of(Stack::native().if_nametoindex("nlnat0")),
        libc::ENODEV
    );
}

// ---------------------------------------------------------------- C ABI

/// Compiles `tests/c/<name>.c` against `ioth.h` and `libioth.so`; returns the program.
fn compile_c(name: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("c-{name}"));
    cprog::compile_c(
        &cprog::repo_root().join("tests/c").join(format!("{name}.c")),
        &out,
    );
    out
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: runs under `unshare -n`")]
fn c_abi_configuration_and_getifaddrs() {
    let prog = compile_c("netlink");
    let mut cmd = Command::new("unshare");
    cmd.arg("-n").arg(&prog);
    let (status, out, err) = cprog::run_bounded(&mut cmd, Duration::from_secs(60));
    let ok = status.is_some_and(|s| s.success());
    assert!(
        ok,
        "C netlink test failed\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert!(out.contains("ALL OK"), "{out}\n{err}");
    // The program printed `ip` output from inside its namespace as a witness.
    assert!(out.contains("inet 10.55.0.1/24"), "{out}");
    assert!(out.contains("inet6 fd00:55::1/64"), "{out}");
    assert!(out.contains("default via 10.55.0.254 dev cbr0"), "{out}");
}
