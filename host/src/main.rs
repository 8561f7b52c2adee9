//! `ioth-host`: the process that runs one ioth stack.
//!
//! The application starts it with its end of a `SOCK_SEQPACKET` channel on fd 3
//! ([`ioth_proto::HOST_CHANNEL_FD`]). The host starts clean (closes every other inherited fd except
//! stdio), answers the version handshake, loads the plug-in named in `NewStack`, then serves
//! requests one at a time until the channel reaches EOF — that is, until the application has gone —
//! and exits. It knows nothing of the application beyond the channel.
#![deny(unsafe_code)]

mod license;
mod plugin;
mod serve;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

use ioth_proto::{Channel, HOST_CHANNEL_FD};

#[allow(unsafe_code)]
fn take_channel() -> Result<OwnedFd, String> {
    // SAFETY: fstat on an integer fd only reads its metadata; a closed fd gives EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid, writable stat buffer.
    if unsafe { libc::fstat(HOST_CHANNEL_FD, &mut st) } != 0
        || st.st_mode & libc::S_IFMT != libc::S_IFSOCK
    {
        return Err(format!(
            "fd {HOST_CHANNEL_FD} is not a socket: ioth-host is started by libioth, not by hand"
        ));
    }
    // Start clean: no fd of the application but the channel (stdio stays for diagnostics).
    // SAFETY: close_range closes fds we never wrapped; nothing in this process owns them yet.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            HOST_CHANNEL_FD as u32 + 1,
            u32::MAX,
            0,
        )
    };
    // SAFETY: fd 3 is the channel the application's libioth put there for us; nobody else in
    // this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(HOST_CHANNEL_FD) };
    // Mark it close-on-exec so that no program a plug-in runs inherits it.
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| format!("fcntl: {e}"))?;
    Ok(fd)
}

fn install_signal_handlers() {
    use signal_hook::consts::{SIGHUP, SIGTERM};
    // SIGTERM/SIGHUP: leave at once; the kernel closes the plug-in's sockets, taps and namespace.
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP]) {
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                std::process::exit(128 + sig);
            }
        });
    }
}

fn main() -> ExitCode {
    let fd = match take_channel() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("ioth-host: {e}");
            return ExitCode::from(2);
        }
    };
    install_signal_handlers();
    let own_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let mut host = serve::Host::new(Channel::from_fd(fd), own_dir);
    host.run()
}
