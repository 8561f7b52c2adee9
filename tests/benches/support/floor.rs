//! The floor under `msocket`: one `SOCK_SEQPACKET` round trip to another process that makes a
//! socket and sends it back with `SCM_RIGHTS` — exactly the work of an ioth request, without
//! serialisation, locking or error handling. `msocket`'s cost over this is ioth's own overhead.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A forked peer process that answers each one-byte request with a new socket.
pub struct FdPeer {
    chan: OwnedFd,
    pid: libc::pid_t,
}

fn cmsg_space() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
}

/// An iovec of the one byte `byte`.
fn byte_iov(byte: &mut u8) -> libc::iovec {
    libc::iovec {
        iov_base: (byte as *mut u8).cast(),
        iov_len: 1,
    }
}

/// A message header of the one iovec `iov` and the control buffer `control`, `controllen` bytes
/// of it declared. It points at both: they must outlive every use of it. No allocation (the
/// forked peer calls it).
fn one_byte_msg(iov: &mut libc::iovec, control: &mut [u64; 8], controllen: usize) -> libc::msghdr {
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = controllen;
    msg
}

/// The peer's loop. Runs in a forked child: raw syscalls only, no allocation, no locks.
fn serve(fd: RawFd, domain: i32, ty: i32) -> ! {
    let mut byte = 0u8;
    let mut control = [0u64; 8];
    loop {
        // SAFETY: byte is a live, writable one-byte buffer.
        let n = unsafe { libc::recv(fd, (&mut byte as *mut u8).cast(), 1, 0) };
        if n <= 0 {
            // SAFETY: _exit ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: socket(2) takes plain integers.
        let s = unsafe { libc::socket(domain, ty, 0) };
        let mut iov = byte_iov(&mut byte);
        let msg = one_byte_msg(&mut iov, &mut control, cmsg_space());
        // SAFETY: msg's control buffer is live and large enough for one fd (64 bytes).
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), s);
        }
        // SAFETY: msg points at live buffers; s is ours and closed right after.
        unsafe {
            libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL);
            libc::close(s);
        }
    }
}

impl FdPeer {
    /// Forks the peer; it makes sockets of `domain` and `ty`.
    pub fn start(domain: i32, ty: i32) -> FdPeer {
        let mut sv = [0 as RawFd; 2];
        // SAFETY: sv is a writable array of two ints.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                sv.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
        // SAFETY: both fds are new and owned by nobody else.
        let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
        // SAFETY: the child runs only `serve`, which makes raw syscalls and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            serve(theirs.as_raw_fd(), domain, ty);
        }
        drop(theirs);
        FdPeer { chan: ours, pid }
    }

    /// The peer's pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// One round trip: asks for a socket and receives it.
    pub fn socket(&self) -> OwnedFd {
        let fd = self.chan.as_raw_fd();
        let mut byte = 1u8;
        // SAFETY: byte is a live one-byte buffer.
        let n = unsafe { libc::send(fd, (&byte as *const u8).cast(), 1, libc::MSG_NOSIGNAL) };
        assert_eq!(n, 1, "send: {}", std::io::Error::last_os_error());
        let mut control = [0u64; 8];
        let mut iov = byte_iov(&mut byte);
        let len = std::mem::size_of_val(&control);
        let mut msg = one_byte_msg(&mut iov, &mut control, len);
        // SAFETY: msg points at live, writable buffers of the declared sizes.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        assert_eq!(n, 1, "recvmsg: {}", std::io::Error::last_os_error());
        // SAFETY: a successful recvmsg filled msg; the peer always sends one SCM_RIGHTS fd.
        let raw = unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            assert!(
                !c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS,
                "no fd came"
            );
            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>())
        };
        assert!(raw >= 0, "peer's socket() failed");
        // SAFETY: the kernel just installed raw for us; nobody else owns it.
        unsafe { OwnedFd::from_raw_fd(raw) }
    }
}

impl Drop for FdPeer {
    fn drop(&mut self) {
        // Closing our end makes the peer exit; then reap it.
        // SAFETY: shutdown on our own live fd; waitpid on our own child.
        unsafe {
            libc::shutdown(self.chan.as_raw_fd(), libc::SHUT_RDWR);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}
