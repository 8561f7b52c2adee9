//! `ioth::tokio` on a multi-threaded runtime: 1,000 TCP connections open at once between a
//! smoltcp and a vdestack stack, both ways, each echoing its own bytes; UDP echo both ways;
//! connect errors. Needs root (vdestack).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ioth::tokio::{TcpListener, TcpStream, UdpSocket};
use ioth::Stack;
use ioth_tests::stacks::{Net, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Barrier, Semaphore};

/// Connections open at once.
const CONNS: usize = 1000;
/// Bytes each connection sends and gets back.
const BYTES: usize = 2000;
/// Bound on each scenario.
const LIMIT: Duration = Duration::from_secs(120);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Room for this process's fds: two stacks' worth of connections.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

/// The bytes connection `i` sends.
fn pattern(i: usize) -> Vec<u8> {
    (0..BYTES).map(|k| (i * 7 + k * 13) as u8).collect()
}

/// An echo server on `stack` at `addr`: every connection gets back what it sent, until EOF.
async fn echo_server(stack: Stack, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(&stack, addr).await.expect("bind");
    assert_eq!(listener.local_addr().expect("local_addr"), addr);
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = c.shutdown().await;
            });
        }
    })
}

/// Handshakes in flight at once: more than a smoltcp listener has listening sockets per interface
/// (16), so that its drop of the excess requests (as Linux, the client sends them again) is
/// exercised, but bounded, as a client pool would be.
const SYN_BURST: usize = 64;

/// CONNS clients on `from`, all connected before any sends, to `to`.
async fn many_clients(from: Stack, to: SocketAddr) {
    let barrier = Arc::new(Barrier::new(CONNS));
    let handshakes = Arc::new(Semaphore::new(SYN_BURST));
    let mut tasks = Vec::new();
    for i in 0..CONNS {
        let (from, barrier, handshakes) = (from.clone(), barrier.clone(), handshakes.clone());
        tasks.push(tokio::spawn(async move {
            let permit = handshakes.acquire_owned().await.expect("semaphore");
            let mut c = TcpStream::connect(&from, to)
                .await
                .unwrap_or_else(|e| panic!("connect {i}: {e}"));
            drop(permit);
            assert_eq!(c.peer_addr().expect("peer"), to);
            barrier.wait().await; // every connection is open now
            let p = pattern(i);
            c.write_all(&p).await.expect("write");
            c.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.expect("read");
            assert!(
                back == p,
                "connection {i}: {} bytes back, not its own",
                back.len()
            );
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
}

fn tcp_both_ways(server: Side, client: Side, port: u16) {
    raise_fd_limit();
    let net = Net::start();
    let rt = runtime();
    rt.block_on(async {
        let to = net.at(server, false, port);
        let acceptor = echo_server(net.stack(server).clone(), to).await;
        tokio::time::timeout(LIMIT, many_clients(net.stack(client).clone(), to))
            .await
            .expect("1,000 connections within the bound");
        acceptor.abort();
    });
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn thousand_connections_vdestack_to_smoltcp() {
    tcp_both_ways(Side::Smol, Side::Vde, 7100);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn thousand_connections_smoltcp_to_vdestack() {
    tcp_both_ways(Side::Vde, Side::Smol, 7200);
}

/// A UDP socket bound to `at`, retrying while the address is in duplicate address detection
/// (vdestack: `EADDRNOTAVAIL` for a second or two), as programs do.
async fn bind_udp(stack: &Stack, at: SocketAddr) -> UdpSocket {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match UdpSocket::bind(stack, at).await {
            Err(e)
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            r => return r.expect("bind"),
        }
    }
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn udp_echo_both_ways_and_refused_connect() {
    let net = Net::start();
    let rt = runtime();
    rt.block_on(async {
        tokio::time::timeout(LIMIT, async {
            for (srv, cli) in [(Side::Smol, Side::Vde), (Side::Vde, Side::Smol)] {
                for v6 in [false, true] {
                    let at = net.at(srv, v6, 7300);
                    let server = bind_udp(net.stack(srv), at).await;
                    let echo = tokio::spawn(async move {
                        let mut buf = [0u8; 2048];
                        for _ in 0..100 {
                            let (n, from) = server.recv_from(&mut buf).await.expect("recv");
                            server.send_to(&buf[..n], from).await.expect("send");
                        }
                    });
                    let any = net.at(cli, v6, 0);
                    let c = bind_udp(net.stack(cli), any).await;
                    let mut buf = [0u8; 2048];
                    for k in 0..100u32 {
                        let msg = format!("datagram {k} v6={v6}");
                        // Retried: the first datagram to a new neighbour may wait for its
                        // address resolution; the bound keeps this from running away.
                        loop {
                            c.send_to(msg.as_bytes(), at).await.expect("send_to");
                            match tokio::time::timeout(
                                Duration::from_secs(3),
                                c.recv_from(&mut buf),
                            )
                            .await
                            {
                                Ok(r) => {
                                    let (n, from) = r.expect("recv_from");
                                    assert_eq!(from, at);
                                    assert_eq!(&buf[..n], msg.as_bytes());
                                    break;
                                }
                                Err(_) => continue,
                            }
                        }
                    }
                    echo.await.expect("echo task");
                }
            }
            // Nobody listens on this port: refused, on either stack.
            for (srv, cli) in [(Side::Smol, Side::Vde), (Side::Vde, Side::Smol)] {
                let e = TcpStream::connect(net.stack(cli), net.at(srv, false, 7399))
                    .await
                    .expect_err("nobody listens");
                assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED), "{e}");
            }
        })
        .await
        .expect("within the bound");
    });
}
