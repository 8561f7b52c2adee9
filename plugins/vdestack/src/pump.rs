//! The frame pump: one thread per interface moves Ethernet frames between the tap device and its
//! VDE connection, in both directions. Runs in the host process.
//!
//! Contract:
//! - it sleeps in poll(2) until the tap, the VDE data fd, the VDE control fd or the stop event is
//!   ready: no busy waiting (and should a descriptor stay ready without anything to do more than
//!   [`IDLE_SPINS`] times in a row, each further wake-up adds a 1 ms pause);
//! - each wake-up moves up to [`BATCH`] frames per direction: non-blocking reads of the tap until
//!   EAGAIN; on the VDE side, when the data fd is a datagram socket (vde://, ptp://, udp://,
//!   vxvde://, …: one frame per recv/send) it is made non-blocking and read until EAGAIN; for any
//!   other kind (switch:// and hub:// run a switch in this process and block in `vde_recv` on an
//!   epoll fd; cmd:// frames a byte stream) its flags are left alone and a zero-timeout poll
//!   comes before each further `vde_recv`;
//! - buffers hold `VDE_ETHBUFSIZE` bytes, so any interface MTU up to 9216 works; the kernel
//!   enforces the MTU set on the tap. A frame larger than a VDE network carries is dropped;
//! - when a non-blocking VDE socket is full (EAGAIN), the frame is kept and the tap is not read
//!   until the VDE side takes it: back-pressure rather than loss;
//! - it ends when the stop event fires (delstack) or when the VDE network hangs up; its tap (the
//!   interface disappears) and its VDE connection close when it ends.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt, SockType};

use crate::vdeplug::{Conn, ETHBUFSIZE};
use ioth_plugin_sdk::event::Event;

/// Frames moved per direction per wake-up.
pub const BATCH: usize = 64;
/// Wake-ups in a row with nothing to do before the pump pauses 1 ms on each.
pub const IDLE_SPINS: u32 = 64;
/// Smallest frame worth forwarding (an Ethernet header).
const ETH_HLEN: usize = 14;

/// Whether `fd` is a socket that carries one frame per datagram.
fn is_datagram_socket(fd: BorrowedFd<'_>) -> bool {
    matches!(
        getsockopt(&fd, sockopt::SockType),
        Ok(SockType::Datagram | SockType::SeqPacket)
    )
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Starts the pump of interface `name`; it owns `tap` and `conn` from now on. `done` is dropped
/// when the pump ends.
pub fn start(
    name: &str,
    tap: OwnedFd,
    conn: Conn,
    stop: Arc<Event>,
    done: Sender<()>,
) -> io::Result<JoinHandle<()>> {
    let Some(datafd) = conn.datafd() else {
        return Err(ioth_plugin_sdk::error(
            libc::EIO,
            format!("{name}: the VDE connection has no data fd"),
        ));
    };
    let dgram = is_datagram_socket(datafd);
    if dgram {
        set_nonblocking(datafd)?;
    }
    let name = name.to_owned();
    std::thread::Builder::new()
        .name(format!("pump-{name}"))
        .spawn(move || {
            let _done = done;
            if let Err(e) = run(&tap, &conn, &stop, dgram) {
                // One write, so that lines of several hosts do not interleave.
                let line = format!(
                    "ioth_vdestack[{}]: interface {name}: {e}; it no longer forwards frames\n",
                    std::process::id()
                );
                let _ = io::Write::write_all(&mut io::stderr(), line.as_bytes());
            }
        })
}

struct Pump<'a> {
    tap: BorrowedFd<'a>,
    conn: &'a Conn,
    datafd: BorrowedFd<'a>,
    /// The data fd is a non-blocking datagram socket: read it until EAGAIN.
    dgram: bool,
    /// Frames read from the tap, toward VDE (one byte more than VDE carries, to spot oversize).
    to_vde: Vec<u8>,
    /// Frames received from VDE, toward the tap.
    to_tap: Vec<u8>,
    /// Length of a frame in `to_vde` that VDE refused with EAGAIN, to be sent first.
    pending: Option<usize>,
    /// The VDE side said writable but refused again: retry on a 1 ms timer instead.
    backoff: bool,
    /// Frames and events handled in this wake-up.
    work: usize,
}

fn run(tap: &OwnedFd, conn: &Conn, stop: &Event, dgram: bool) -> io::Result<()> {
    let ctlfd = conn.ctlfd();
    let mut p = Pump {
        tap: tap.as_fd(),
        conn,
        datafd: conn.datafd().expect("checked in start"),
        dgram,
        to_vde: vec![0; ETHBUFSIZE + 1],
        to_tap: vec![0; ETHBUFSIZE],
        pending: None,
        backoff: false,
        work: 0,
    };
    let mut idle = 0u32;
    loop {
        let mut data_ev = PollFlags::POLLIN;
        if p.pending.is_some() && !p.backoff {
            data_ev |= PollFlags::POLLOUT;
        }
        let tap_ev = if p.pending.is_none() {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        let mut fds = vec![
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            PollFd::new(p.datafd, data_ev),
            PollFd::new(p.tap, tap_ev),
        ];
        if let Some(c) = ctlfd {
            // Only POLLHUP/POLLERR, which poll always reports: the switch went away.
            fds.push(PollFd::new(c, PollFlags::empty()));
        }
        let timeout = if p.backoff {
            PollTimeout::from(1u8)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let rev = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .unwrap_or(PollFlags::empty())
        };
        let (stop_rev, data_rev, tap_rev, ctl_rev) = (rev(0), rev(1), rev(2), rev(3));
        drop(fds);
        if !stop_rev.is_empty() {
            return Ok(());
        }
        if ctl_rev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            return Err(io::Error::other("the VDE network closed the connection"));
        }
        p.work = 0;
        if data_rev.intersects(PollFlags::POLLIN | PollFlags::POLLERR) {
            p.vde_to_tap();
        } else if data_rev.contains(PollFlags::POLLHUP) {
            return Err(io::Error::other("the VDE network hung up"));
        }
        if p.pending.is_some() && (data_rev.contains(PollFlags::POLLOUT) || p.backoff) {
            let on_timer = p.backoff;
            p.retry_pending();
            if p.pending.is_some() && !on_timer {
                p.backoff = true;
            }
        }
        if p.pending.is_none() && tap_rev.intersects(PollFlags::POLLIN | PollFlags::POLLERR) {
            p.tap_to_vde();
        }
        if p.work == 0 && !p.backoff {
            idle += 1;
            if idle > IDLE_SPINS {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            idle = 0;
        }
    }
}

impl Pump<'_> {
    fn vde_to_tap(&mut self) {
        for i in 0..BATCH {
            // poll said the first frame is there; for a data fd that is not a non-blocking
            // datagram socket, ask again before each further one (vde_recv may block).
            if i > 0 && !self.dgram && !readable(self.datafd) {
                break;
            }
            match self.conn.recv(&mut self.to_tap) {
                Ok(0) => break,
                Ok(n) => {
                    self.work += 1;
                    // Shorter than a header: an event libvdeplug handled itself (it returns 1
                    // for a frame it filtered out or switched between other ports).
                    if n >= ETH_HLEN {
                        // A tap that is down refuses frames (EIO): dropped, as a down NIC would.
                        let _ = nix::unistd::write(self.tap, &self.to_tap[..n]);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // EAGAIN: drained. Anything else (an ICMP error on udp://, …) was consumed by
                // this recv; poll tells us when there is more.
                Err(_) => break,
            }
        }
    }

    /// Sends the frame VDE refused before; on success the tap may be read again.
    fn retry_pending(&mut self) {
        let Some(n) = self.pending else { return };
        match self.conn.send(&self.to_vde[..n]) {
            Err(e) if is_full(&e) => return,
            // Sent, or refused for good (the frame is lost, as on a real link).
            _ => self.work += 1,
        }
        self.pending = None;
        self.backoff = false;
    }

    fn tap_to_vde(&mut self) {
        for _ in 0..BATCH {
            let n = match nix::unistd::read(self.tap, &mut self.to_vde) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(_) => break, // EAGAIN: drained
            };
            self.work += 1;
            if !(ETH_HLEN..=ETHBUFSIZE).contains(&n) {
                continue; // larger than a VDE network carries (MTU above 9216), or a runt
            }
            match self.conn.send(&self.to_vde[..n]) {
                Err(e) if is_full(&e) => {
                    self.pending = Some(n);
                    // Only a socket reports POLLOUT; any other data fd is retried on the timer.
                    self.backoff = !self.dgram;
                    break;
                }
                _ => {}
            }
        }
    }
}

/// Whether `fd` is readable now (poll with a zero timeout).
fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
}

fn is_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR)
    )
}
