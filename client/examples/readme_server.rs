//! The README's Rust example as a program: an echo server on a `vdestack` (or `smoltcp`) stack,
//! 192.168.250.50/24 on `vde0`, TCP port 5000, one connection at a time.
//!
//! ```sh
//! vde_plug null:// switch:///tmp/sw &              # a switch
//! cargo run -p ioth --example readme_server -- vdestack vde:///tmp/sw   # root: a namespace
//! ```
use std::io::{Read, Write};

use ioth::socket2::{Domain, Type};
use ioth::Stack;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let plugin = args.next().unwrap_or_else(|| "vdestack".into());
    let vnl = args.next().unwrap_or_else(|| "vde:///tmp/sw".into());

    // A private stack, one interface on the VDE network.
    let stack = Stack::new(&plugin, &[vnl.as_str()])?;
    let ifindex = stack.if_nametoindex("vde0")?;
    stack.link_set_up(ifindex, true)?;
    stack.ipaddr_add("192.168.250.50".parse()?, 24, ifindex)?;

    // Sockets are real fds; the Socket methods work on every stack, native or proxied.
    let listener = stack.socket(Domain::IPV4, Type::STREAM, None)?;
    listener.bind(&"0.0.0.0:5000".parse()?)?;
    listener.listen(5)?;
    println!(
        "listening on 192.168.250.50:5000 ({plugin}, host pid {:?})",
        stack.pid()
    );
    loop {
        let (mut conn, peer) = listener.accept()?;
        println!("connection from {peer}");
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                break;
            }
            conn.write_all(&buf[..n])?;
        }
    }
}
