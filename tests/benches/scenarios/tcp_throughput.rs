//! TCP throughput over 127.0.0.1 through ioth native fds (both ends made by a kernel stack)
//! against plain sockets: native fds should move data at kernel speed, 1.00x.

use std::net::{SocketAddr, TcpListener, TcpStream};

use ioth::Stack;

use crate::support::workload::tcp_transfer;
use crate::support::{Opts, Report, Samples};

const BYTES: u64 = 256 << 20;
const ROUNDS: usize = 3;

fn ioth_pair(stack: &Stack) -> (TcpListener, TcpStream) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let l: socket2::Socket = stack
        .msocket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
        .expect("msocket")
        .into();
    l.bind(&any.into()).expect("bind");
    l.listen(4).expect("listen");
    let c: socket2::Socket = stack
        .msocket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
        .expect("msocket")
        .into();
    c.connect(&l.local_addr().unwrap()).expect("connect");
    (l.into(), c.into())
}

fn plain_pair() -> (TcpListener, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    (l, c)
}

pub fn run(opts: &Opts) -> Report {
    let bytes = if opts.quick { BYTES / 8 } else { BYTES };
    let stack = Stack::new("kernel", &[] as &[&str]).expect("newstack kernel");
    let mut plain = Samples::with_capacity(ROUNDS);
    let mut ioth = Samples::with_capacity(ROUNDS);
    // Warm-up, discarded.
    let (l, c) = plain_pair();
    tcp_transfer(l, c, bytes / 8);
    for r in 0..ROUNDS {
        for k in 0..2 {
            if (r + k) % 2 == 0 {
                let (l, c) = plain_pair();
                plain.push(tcp_transfer(l, c, bytes));
            } else {
                let (l, c) = ioth_pair(&stack);
                ioth.push(tcp_transfer(l, c, bytes));
            }
        }
    }
    stack.delete().map_err(ioth::Error::from).expect("delete");
    let mut rep = Report::new("TCP throughput over 127.0.0.1 (one connection, 128 KiB writes)");
    rep.throughput("plain sockets (baseline)", bytes, &plain, Some(&plain));
    rep.throughput("ioth native fds, kernel stack", bytes, &ioth, Some(&plain));
    rep.note(
        "Rounds interleaved. MB/s = 10^6 bytes/s. Ratio = speed / baseline speed (1.00x: as fast).",
    );
    rep
}
