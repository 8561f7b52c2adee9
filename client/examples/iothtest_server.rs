//! Echo server on a virtual stack, like libioth's `iothtest_server`.
//!
//! `iothtest_server STACK [VNL...]`: creates the stack, sets 192.168.250.50/24 on `vde0` (default
//! route via 192.168.250.1), and echoes every TCP connection on port 5000, a thread each.
//!
//! It uses the [`ioth::Socket`] methods (bind, listen, accept, read, write), which work on every
//! stack: on kernel stacks (native fds) and on user-space stacks such as `smoltcp` (proxied fds).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn handle(conn: ioth::Socket, peer: SocketAddr) {
    println!("new conn from {peer}");
    let mut conn = &conn;
    let mut buf = [0u8; 8192];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                print!("GOT: {}", String::from_utf8_lossy(&buf[..n]));
                if conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    println!("close conn from {peer}");
}

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
    stack.ipaddr_add(IpAddr::V4(Ipv4Addr::new(192, 168, 250, 50)), 24, ifindex)?;
    stack.iproute_add(
        None,
        Some(IpAddr::V4(Ipv4Addr::new(192, 168, 250, 1))),
        None,
    )?;

    let sock = stack.socket(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.bind(&SocketAddr::from(([0, 0, 0, 0], 5000)))?;
    sock.listen(5)?;
    println!(
        "listening on 192.168.250.50:5000 (stack {}, host pid {})",
        args[1],
        stack.pid().unwrap_or(0)
    );
    loop {
        match sock.accept() {
            Ok((c, peer)) => {
                std::thread::spawn(move || handle(c, peer));
            }
            Err(e) => {
                eprintln!("accept: {e}");
                break;
            }
        }
    }
    Ok(())
}
