//! An async TCP echo between two kernel stacks, each in its own host, on a multi-threaded tokio
//! runtime: `cargo run -p ioth --example tokio_echo --features tokio`. The same code runs on any
//! stack (`vdestack`, `smoltcp`: give `Stack::new` their VNLs and configure an address).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server_stack = ioth::Stack::builder("kernel").build()?;
    let client_stack = ioth::Stack::builder("kernel").build()?;

    let listener = ioth::tokio::TcpListener::bind(&server_stack, "127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut conn, peer) = listener.accept().await?;
        let mut buf = vec![0u8; 1024];
        let n = conn.read(&mut buf).await?;
        conn.write_all(&buf[..n]).await?;
        Ok::<_, std::io::Error>(peer)
    });

    let mut conn = ioth::tokio::TcpStream::connect(&client_stack, addr).await?;
    conn.write_all(b"hello, async ioth").await?;
    let mut back = [0u8; 17];
    conn.read_exact(&mut back).await?;
    let peer = server.await??;
    println!("{peer} echoed {:?}", String::from_utf8_lossy(&back));
    Ok(())
}
