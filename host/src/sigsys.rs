//! The host's `SIGSYS` handler: how a system call the seccomp filter refuses becomes an event
//! of the audit trail although the plug-in absorbs its failure.
//!
//! A refused call from the host's own code traps ([`crate::seccomp`]): the kernel does not
//! run it and sends `SIGSYS` to the calling thread. The handler writes one fixed-size record
//! (the call's number, its six arguments, the errno) on a non-blocking pipe — `write(2)` is
//! async-signal-safe, and a record is smaller than `PIPE_BUF`, so records never interleave —
//! and makes the call return `-errno`, as the filter's `SECCOMP_RET_ERRNO` would have. The
//! audit thread drains the pipe ([`drain`]). A full pipe drops records (the refusal itself
//! still happens).
//!
//! What a hostile plug-in can do about it: it shares the process, so it can write false
//! records or close the pipe, and a plug-in that blocks `SIGSYS` and then makes a refused call
//! is killed by the kernel (a trapped signal cannot be blocked); replacing the handler is
//! itself refused by the filter. It cannot make a refused call succeed.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// The write end of the pipe, for the handler (-1: none yet).
static WRITE_END: AtomicI32 = AtomicI32::new(-1);
/// The read end, until the audit thread takes it.
static READ_END: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// One refused call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Refusal {
    pub nr: i64,
    pub args: [u64; 6],
    pub errno: i64,
}

const RECORD: usize = std::mem::size_of::<Refusal>();

/// Offset of `si_syscall` in a `SIGSYS` siginfo: after `si_signo`, `si_errno`, `si_code` and
/// padding (16 bytes on 64-bit Linux), the union's `_sigsys` starts with `_call_addr`.
const SI_SYSCALL: usize = 16 + 8;

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo of a seccomp SIGSYS (SA_SIGINFO), whose
    // _sigsys member holds the system call number at SI_SYSCALL, and this thread's saved
    // context, which we may read and change (the call's result register).
    unsafe {
        let nr = i64::from(std::ptr::read_unaligned(
            info.cast::<u8>().add(SI_SYSCALL).cast::<i32>(),
        ));
        let errno = i64::from((*info).si_errno);
        let uc = ctx.cast::<libc::ucontext_t>();
        let mut rec = Refusal {
            nr,
            args: [0; 6],
            errno,
        };
        #[cfg(target_arch = "x86_64")]
        {
            let g = &mut (*uc).uc_mcontext.gregs;
            for (i, r) in [
                libc::REG_RDI,
                libc::REG_RSI,
                libc::REG_RDX,
                libc::REG_R10,
                libc::REG_R8,
                libc::REG_R9,
            ]
            .into_iter()
            .enumerate()
            {
                rec.args[i] = g[r as usize] as u64;
            }
            g[libc::REG_RAX as usize] = -errno;
        }
        #[cfg(target_arch = "aarch64")]
        {
            let r = &mut (*uc).uc_mcontext.regs;
            rec.args.copy_from_slice(&r[..6]);
            r[0] = (-errno) as u64;
        }
        let fd = WRITE_END.load(Ordering::Acquire);
        if fd >= 0 {
            // errno is the interrupted code's: keep it.
            let saved = *libc::__errno_location();
            libc::write(fd, (&raw const rec).cast(), RECORD);
            *libc::__errno_location() = saved;
        }
    }
}

/// Creates the pipe and installs the handler; before the seccomp filter.
pub fn install() -> std::io::Result<()> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    // The write end lives as long as the process (the handler may run at any time).
    WRITE_END.store(w.into_raw_fd(), Ordering::Release);
    *READ_END.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    // SAFETY: a zeroed sigaction is a valid empty one; we fill the handler, SA_SIGINFO and an
    // empty mask, then install it for SIGSYS only.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The read end of the pipe, once (the audit thread's).
pub fn reader() -> Option<OwnedFd> {
    READ_END.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The records waiting on `r` (non-blocking).
pub fn drain(r: &OwnedFd) -> Vec<Refusal> {
    let mut out = Vec::new();
    let mut buf = [0u8; RECORD * 64];
    loop {
        // SAFETY: buf is writable for its length; r is an open pipe.
        let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        for chunk in buf[..n as usize].chunks_exact(RECORD) {
            let word = |i: usize| u64::from_ne_bytes(chunk[8 * i..8 * i + 8].try_into().unwrap());
            let mut args = [0u64; 6];
            for (k, a) in args.iter_mut().enumerate() {
                *a = word(1 + k);
            }
            out.push(Refusal {
                nr: word(0) as i64,
                args,
                errno: word(7) as i64,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_pipe() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let recs = [
            Refusal {
                nr: 101,
                args: [1, 2, 3, 4, 5, u64::MAX],
                errno: 1,
            },
            Refusal {
                nr: 272,
                args: [0x4000_0000, 0, 0, 0, 0, 0],
                errno: 1,
            },
        ];
        for rec in &recs {
            // SAFETY: rec is RECORD readable bytes; w is an open pipe.
            let n = unsafe { libc::write(w.as_raw_fd(), (rec as *const Refusal).cast(), RECORD) };
            assert_eq!(n as usize, RECORD);
        }
        assert_eq!(drain(&r), recs);
        assert!(drain(&r).is_empty());
    }
}
