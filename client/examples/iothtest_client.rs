//! Terminal client on a virtual stack, like libioth's `iothtest_client`.
//!
//! `iothtest_client STACK [VNL...]`: creates the stack, sets 192.168.250.51/24 on `vde0`, connects
//! to 192.168.250.50:5000 and, with `poll` on stdin and the socket, sends what is typed and prints
//! what comes back. At the end of stdin it half-closes and prints the rest of the echo.
//!
//! It uses the [`ioth::Socket`] methods, which work on every stack (native and proxied fds).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("Usage:\n\n\t{} stack [ vnl vnl ]\n", args[0]);
        std::process::exit(1);
    }
    ioth::set_license(Some("SPDX-License-Identifier: GPL-2.0-or-later"));
    let stack = ioth::Stack::new(&args[1], &args[2..])?;
    let ifindex = stack.if_nametoindex("vde0")?;
    stack.link_set_up(ifindex, true)?;
    stack.ipaddr_add(IpAddr::V4(Ipv4Addr::new(192, 168, 250, 51)), 24, ifindex)?;
    stack.iproute_add(
        None,
        Some(IpAddr::V4(Ipv4Addr::new(192, 168, 250, 1))),
        None,
    )?;

    let sock = stack.socket(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.connect(&SocketAddr::from(([192, 168, 250, 50], 5000)))?;
    let mut conn = &sock;

    let stdin = std::io::stdin();
    let mut stdin_open = true;
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = vec![PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        poll(&mut fds, PollTimeout::NONE)?;
        let sock_ready = fds[0].any().unwrap_or(false);
        let stdin_ready = stdin_open && fds[1].any().unwrap_or(false);
        if stdin_ready {
            let n = nix::unistd::read(stdin.as_fd(), &mut buf)?;
            if n == 0 {
                stdin_open = false;
                conn.shutdown(Shutdown::Write)?;
            } else {
                conn.write_all(&buf[..n])?;
            }
        }
        if sock_ready {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                break;
            }
            std::io::stdout().write_all(&buf[..n])?;
            std::io::stdout().flush()?;
        }
    }
    Ok(())
}
