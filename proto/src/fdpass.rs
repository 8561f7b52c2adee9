//! All fd passing of ioth, in one place: one datagram carries one payload and its fds.
//!
//! Received fds are installed close-on-exec atomically (`MSG_CMSG_CLOEXEC`) and wrapped in
//! [`OwnedFd`] in the same function as the `recvmsg`, so none can leak on an error path. Sends use
//! `MSG_NOSIGNAL`: a dead peer is an `EPIPE` error, never a signal.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// Room for the control message: enough for many more fds than any message may carry, so that a
/// peer sending too many is seen (and its fds closed) rather than truncated.
const CMSG_WORDS: usize = 64;

/// What one `recvmsg` delivered.
#[derive(Debug)]
pub struct Received {
    /// Payload bytes written to the buffer.
    pub len: usize,
    /// The fds that came with it, owned.
    pub fds: Vec<OwnedFd>,
    /// The payload or the control data was cut (`MSG_TRUNC`/`MSG_CTRUNC`).
    pub truncated: bool,
    /// Only the control data was cut (`MSG_CTRUNC` without `MSG_TRUNC`): the payload is whole,
    /// but fds that came with it were dropped — the control buffer holds the most fds a message
    /// may carry, so this is the kernel failing to install them (the process's fd limit).
    pub fds_cut: bool,
}

/// Sends `payload` and `fds` as one datagram on `sock` (sendmsg(2) with `SCM_RIGHTS`).
pub fn send(sock: BorrowedFd<'_>, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(payload)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) if n == payload.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "short send: {n} of {} bytes",
                    payload.len()
                )))
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one datagram into `buf` with its fds (recvmsg(2), `MSG_CMSG_CLOEXEC`).
/// `len == 0` with no fds means the peer closed the channel.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: every initialized byte is a valid MaybeUninit<u8>, and recv_uninit only ever
    // writes initialized bytes into it.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    recv_uninit(sock, uninit)
}

/// [`recv`] into the spare capacity of `buf`, which it clears first and leaves holding the
/// datagram's bytes: a large buffer costs only the pages the datagrams really fill (nothing is
/// zeroed first), which matters in processes forked by the hundred.
pub fn recv_vec(sock: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<Received> {
    buf.clear();
    let r = recv_uninit(sock, buf.spare_capacity_mut())?;
    // SAFETY: recvmsg wrote (initialized) the first `r.len` bytes of the spare capacity, and
    // never more than the iovec's length, which is that capacity.
    unsafe { buf.set_len(r.len.min(buf.capacity())) };
    Ok(r)
}

/// [`recv`] into memory that need not be initialized: the kernel writes the bytes.
fn recv_uninit(
    sock: BorrowedFd<'_>,
    buf: &mut [std::mem::MaybeUninit<u8>],
) -> io::Result<Received> {
    let mut control = [0u64; CMSG_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: msg points at iov (covering `buf`) and `control`, both live and writable for
        // the whole call; the kernel writes at most their declared lengths.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: msg was filled by a successful recvmsg; CMSG_FIRSTHDR only reads its control fields.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and points inside `control`, as CMSG_FIRSTHDR/NXTHDR guarantee.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: cmsg is a valid header inside `control`; CMSG_DATA points past it.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            let header_len = data as usize - cmsg as usize;
            let count = (hdr.cmsg_len as usize).saturating_sub(header_len) / size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: the kernel wrote `count` ints after CMSG_DATA, inside `control`.
                let raw = unsafe { std::ptr::read_unaligned(data.cast::<RawFd>().add(i)) };
                // SAFETY: the kernel just installed `raw` in this process for us (SCM_RIGHTS);
                // nobody else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: msg and cmsg are valid as above; NXTHDR returns null past the last header.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    let truncated = msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
    let fds_cut = msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) == libc::MSG_CTRUNC;
    Ok(Received {
        len: n,
        fds,
        truncated,
        fds_cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn recv_vec_fills_only_the_capacity_and_says_when_it_cut() {
        let (a, b) = pair();
        let mut buf = Vec::with_capacity(8);
        buf.extend_from_slice(b"old");
        send(a.as_fd(), b"hi", &[]).unwrap();
        let r = recv_vec(b.as_fd(), &mut buf).unwrap();
        assert_eq!((buf.as_slice(), r.truncated), (&b"hi"[..], false));
        send(a.as_fd(), b"0123456789", &[]).unwrap();
        let r = recv_vec(b.as_fd(), &mut buf).unwrap();
        assert_eq!((buf.as_slice(), r.truncated), (&b"01234567"[..], true));
        drop(a);
        let r = recv_vec(b.as_fd(), &mut buf).unwrap();
        assert_eq!((buf.len(), r.len, r.fds.len()), (0, 0, 0));
    }

    #[test]
    fn payload_and_fds_arrive_cloexec() {
        let (a, b) = pair();
        let (x, y) = pair();
        send(a.as_fd(), b"hello", &[x.as_fd(), y.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let r = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"hello");
        assert_eq!(r.fds.len(), 2);
        assert!(!r.truncated);
        for fd in &r.fds {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0);
        }
    }

    #[test]
    fn oversized_datagram_is_flagged_truncated() {
        let (a, b) = pair();
        send(a.as_fd(), &[7u8; 100], &[]).unwrap();
        let mut buf = [0u8; 10];
        let r = recv(b.as_fd(), &mut buf).unwrap();
        assert!(r.truncated);
    }

    #[test]
    fn eof_is_zero_len() {
        let (a, b) = pair();
        drop(a);
        let mut buf = [0u8; 10];
        let r = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!(r.len, 0);
        assert!(r.fds.is_empty());
    }
}
