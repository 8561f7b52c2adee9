//! Workloads shared by scenarios.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Chunk size of reads and writes.
pub const CHUNK: usize = 128 * 1024;

/// Sends `bytes` from `client` to the connection `listener` accepts, and returns the time from
/// the first write to the receiver seeing EOF after the last byte. The receiver runs in its own
/// thread. Panics if a byte is lost.
pub fn tcp_transfer(listener: TcpListener, mut client: TcpStream, bytes: u64) -> Duration {
    let receiver = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("receive: {e}"),
            }
        }
        got
    });
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        client.write_all(&buf[..n]).expect("send");
        left -= n as u64;
    }
    client.shutdown(Shutdown::Write).expect("shutdown");
    let got = receiver.join().expect("receiver");
    let t = start.elapsed();
    assert_eq!(got, bytes, "bytes lost");
    t
}
