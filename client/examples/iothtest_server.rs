//! Echo server on a virtual stack, like libioth's `iothtest_server`.
//!
//! `iothtest_server STACK [VNL...]`: creates the stack, sets 192.168.250.50/24 on `vde0` (default
//! route via 192.168.250.1), and echoes every TCP connection on port 5000, a thread each.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};

fn handle(mut conn: TcpStream) {
    let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    println!("new conn from {peer}");
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
    let sock2: socket2::Socket = sock.into();
    sock2.set_reuse_address(true)?;
    sock2.bind(&SocketAddr::from(([0, 0, 0, 0], 5000)).into())?;
    sock2.listen(5)?;
    let listener: TcpListener = sock2.into();
    println!(
        "listening on 192.168.250.50:5000 (stack {}, host pid {})",
        args[1],
        stack.pid().unwrap_or(0)
    );
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                std::thread::spawn(move || handle(c));
            }
            Err(e) => {
                eprintln!("accept: {e}");
                break;
            }
        }
    }
    Ok(())
}
