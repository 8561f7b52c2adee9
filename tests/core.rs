//! Core end-to-end tests: kernel plug-in through real hosts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use ioth::Stack;

#[test]
fn smoke_tcp_echo_kernel() {
    let stack = Stack::new("kernel", &[] as &[&str]).expect("newstack kernel");
    assert!(stack.pid().is_some());
    let l: TcpListener = stack
        .msocket(libc::AF_INET, libc::SOCK_STREAM, 0)
        .unwrap()
        .into();
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket2::SockRef::from(&l).bind(&addr.into()).unwrap();
    socket2::SockRef::from(&l).listen(4).unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        c.write_all(&b).unwrap();
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"hello").unwrap();
    let mut b = [0u8; 5];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    t.join().unwrap();
    stack.delete().map_err(|(_, e)| e).unwrap();
}
