//! A program outside the ioth workspace (tests/outside.rs builds it as its own crate): a TCP
//! echo between two kernel stacks, each in its own installed host, with no IOTH_* variable.
//! Prints `host=<the host's real path>`, `missing=<the error for a stack nobody has>`, `ok`.

use std::io::{Read, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = ioth::Stack::builder("kernel").build()?;
    let b = ioth::Stack::builder("kernel").build()?;
    let host = std::fs::read_link(format!("/proc/{}/exe", a.pid().ok_or("no host")?))?;
    println!("host={}", host.display());

    let listener: std::net::TcpListener = a
        .socket(ioth::socket2::Domain::IPV4, ioth::socket2::Type::STREAM, None)?
        .into();
    let listener = {
        let s = ioth::socket2::Socket::from(listener);
        s.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>()?.into())?;
        s.listen(1)?;
        std::net::TcpListener::from(s)
    };
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut c, _) = listener.accept()?;
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf)?;
        c.write_all(&buf[..n])
    });
    let client = b.socket(ioth::socket2::Domain::IPV4, ioth::socket2::Type::STREAM, None)?;
    let client = ioth::socket2::Socket::from(std::os::fd::OwnedFd::from(client));
    client.connect(&addr.into())?;
    let mut client = std::net::TcpStream::from(client);
    client.write_all(b"hello from outside")?;
    let mut back = [0u8; 18];
    client.read_exact(&mut back)?;
    assert_eq!(&back, b"hello from outside");
    server.join().expect("server thread")?;

    let e = ioth::Stack::builder("nonexistent").build().expect_err("no such stack");
    println!("missing={e}");
    println!("ok");
    Ok(())
}
