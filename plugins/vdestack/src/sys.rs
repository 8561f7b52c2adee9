//! The system calls of the plug-in: entering a private network namespace, bringing an interface
//! up, the namespace's IPv6 source selection, creating a tap device, and the eventfd that stops
//! the frame pumps. Runs in the host process; all of the plug-in's `unsafe` system calls are here
//! (libvdeplug's are in [`crate::vdeplug`]).
#![allow(unsafe_code)]

use std::ffi::c_short;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::{fs, io};

use ioth_plugin_sdk::error;
use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Moves the calling thread (the host's serving thread, so the process as `/proc/<pid>/ns/net`
/// shows it) into a new, empty network namespace, `unshare(CLONE_NEWNET)`. Without the privilege
/// for that, it first enters a new user namespace in which the host's uid and gid map to root
/// (`CLONE_NEWUSER | CLONE_NEWNET`, then `uid_map`/`gid_map`).
///
/// Returns the new namespace (`/proc/thread-self/ns/net`), so that other threads can join it.
pub fn enter_private_netns() -> io::Result<OwnedFd> {
    match unshare(CloneFlags::CLONE_NEWNET) {
        Ok(()) => {}
        Err(Errno::EPERM) => enter_user_and_netns()?,
        Err(e) => {
            return Err(error(e as i32, format!("unshare(CLONE_NEWNET): {e}")));
        }
    }
    let ns = File::open("/proc/thread-self/ns/net")
        .map_err(|e| error(e.raw_os_error().unwrap_or(libc::EIO), format!("netns: {e}")))?;
    Ok(ns.into())
}

fn enter_user_and_netns() -> io::Result<()> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET) {
        let errno = e as i32;
        let hint = if e == Errno::EINVAL {
            " (a user namespace needs a single-threaded host)"
        } else {
            ""
        };
        return Err(error(
            errno,
            format!(
                "no privilege for a network namespace (unshare(CLONE_NEWNET): EPERM), and \
                 unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: {e}{hint}"
            ),
        ));
    }
    let write = |path: &str, text: String| {
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| {
                error(
                    e.raw_os_error().unwrap_or(libc::EIO),
                    format!("user namespace: writing {path}: {e}"),
                )
            })
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    Ok(())
}

/// Makes every interface created from now on in the calling thread's network namespace choose
/// the source of an IPv6 packet among its own addresses only
/// (`net.ipv6.conf.default.use_oif_addrs_only = 1`, RFC 6724 §4's recommended candidate set).
///
/// The stack's `lo` is up, so without this Linux would pick `::1` as the source of a packet to
/// `fd00::1` through `vde0` while the addresses of `vde0` are still tentative (in duplicate
/// address detection): the SYN leaves with a source no peer answers and the connect hangs. With
/// it the connect fails at once with `EADDRNOTAVAIL`, as on a namespace whose `lo` is down,
/// until the interface has a usable address. `lo` itself (which exists already) keeps `::1`.
///
/// A kernel without IPv6 (no such file) needs nothing; any other failure is an error.
pub fn ipv6_source_from_outgoing_interface() -> io::Result<()> {
    const PATH: &str = "/proc/sys/net/ipv6/conf/default/use_oif_addrs_only";
    match fs::OpenOptions::new().write(true).open(PATH) {
        Ok(mut f) => f.write_all(b"1").map_err(|e| {
            error(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!("writing {PATH}: {e}"),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error(
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("opening {PATH}: {e}"),
        )),
    }
}

/// socket(2) in the calling thread's network namespace.
pub fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes plain integers.
    let fd = cvt(unsafe { libc::socket(domain, ty, protocol) })?;
    // SAFETY: fd was just created by socket(2) and has no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Joins the calling thread to the network namespace `ns` (setns(2)).
pub fn join_netns(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: ns is an open namespace fd; setns changes only this thread's namespace.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map(|_| ())
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data (a name array and a union of integers and pointers); all
    // zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= req.ifr_name.len() || name.contains('\0') {
        return Err(error(libc::EINVAL, format!("bad interface name {name:?}")));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

/// Sets `IFF_UP` on interface `name` of the calling thread's namespace (SIOCSIFFLAGS).
pub fn link_up(name: &str) -> io::Result<()> {
    let ctx = |e: io::Error| {
        error(
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("bringing {name} up: {e}"),
        )
    };
    // SAFETY: socket(2) takes plain integers.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
        .map_err(ctx)?;
    // SAFETY: fd was just created and has no other owner.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq(name)?;
    // SAFETY: req is a valid ifreq naming the interface; SIOCGIFFLAGS fills ifru_flags.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) }).map_err(ctx)?;
    // SAFETY: SIOCGIFFLAGS has just written the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as c_short };
    // SAFETY: req is a valid ifreq with the name and the new flags.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map_err(ctx)?;
    Ok(())
}

/// Creates tap interface `name` (`IFF_TAP | IFF_NO_PI`: plain Ethernet frames, no packet-info
/// header) in the calling thread's namespace; returns its fd, non-blocking and close-on-exec.
/// The interface lives as long as the fd (it is not persistent) and starts down.
pub fn create_tap(name: &str) -> io::Result<OwnedFd> {
    let ctx = |e: io::Error| {
        error(
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("creating tap interface {name}: {e}"),
        )
    };
    let mut req = ifreq(name)?;
    let tun = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| {
            error(
                e.raw_os_error().unwrap_or(libc::ENODEV),
                format!("creating tap interface {name}: /dev/net/tun: {e}"),
            )
        })?;
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as c_short;
    // SAFETY: tun is an open /dev/net/tun; req is a valid ifreq with the name and the flags
    // TUNSETIFF reads (and may update the name).
    cvt(unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) }).map_err(ctx)?;
    Ok(tun.into())
}
