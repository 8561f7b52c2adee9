//! `ioth-run-http`: a 100 MB HTTP transfer, vdestack server → smoltcp client over one VDE
//! switch, made by unmodified programs under `ioth-run` — python3's `http.server` on vdestack
//! (its namespace) and `curl` on smoltcp (the preload library) — against the same transfer
//! between two programs of this bench that use the ioth API directly (a server on a vdestack
//! `Stack` answering one GET with a 100 MB body, a client on a smoltcp `Stack` reading it), in
//! the same run, as a ratio. curl's own `time_total` is the ioth-run figure (the runner's
//! start-up and the stack's creation are outside it); the API figure is the client's connect to
//! its last byte. Needs root, `vde_plug`, python3, curl and the release build (ioth-run,
//! libioth_preload.so, the plug-ins).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ioth_tests::vde::Switch;

use crate::support::vde::{missing, skipped};
use crate::support::{vde, Opts, Report, Samples};

const BYTES: u64 = 100 << 20;
const ROUNDS: usize = 3;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 250, 7, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 250, 7, 2);
const TITLE: &str =
    "ioth-run: 100 MB over HTTP, vdestack → smoltcp (python3 http.server + curl vs the ioth API)";

/// One GET answered with `BYTES` from memory, on `stack`.
fn api_server(listener: ioth::Socket) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut b).expect("read request");
            assert!(n > 0, "request cut");
            req.extend_from_slice(&b[..n]);
        }
        let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {BYTES}\r\n\r\n");
        c.write_all(head.as_bytes()).expect("head");
        let chunk = vec![0x5au8; 128 << 10];
        let mut left = BYTES;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            c.write_all(&chunk[..n]).expect("body");
            left -= n as u64;
        }
    })
}

fn run_api(opts: &Opts, sw: &Switch) -> Samples {
    let vnl = sw.vnl();
    let (server, _) = vde::stack("vdestack", &vnl, SERVER);
    let (client, _) = vde::stack("smoltcp", &vnl, CLIENT);
    let mut s = Samples::with_capacity(ROUNDS);
    for _ in 0..opts.n(ROUNDS) {
        let l = server
            .socket(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        l.set_reuse_address(true).expect("SO_REUSEADDR");
        l.bind(&SocketAddr::from((SERVER, 8000))).expect("bind");
        l.listen(4).expect("listen");
        let t = api_server(l);
        let t0 = Instant::now();
        let mut c = client
            .socket(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        c.connect(&SocketAddr::from((SERVER, 8000)))
            .expect("connect");
        c.write_all(b"GET /f HTTP/1.0\r\n\r\n").expect("GET");
        let mut got = 0u64;
        let mut buf = vec![0u8; 128 << 10];
        loop {
            let n = c.read(&mut buf).expect("read body");
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        s.push(t0.elapsed());
        t.join().expect("server");
        assert!(got > BYTES, "short body: {got}");
    }
    s
}

fn run_ioth_run(opts: &Opts, sw: &Switch, bin: &std::path::Path) -> Result<Samples, String> {
    let dir = ioth_tests::cprog::TempDir::new("bench-run");
    let f = std::fs::File::create(dir.path().join("f")).map_err(|e| e.to_string())?;
    f.set_len(BYTES).map_err(|e| e.to_string())?;
    let vnl = sw.vnl();
    let server = Command::new(bin)
        .args([
            "-s",
            "vdestack",
            "-v",
            &vnl,
            "-c",
            &format!("eth,ip={SERVER}/24"),
        ])
        .args([
            "python3",
            "-m",
            "http.server",
            "-b",
            &SERVER.to_string(),
            "8000",
            "-d",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("ioth-run: {e}"))?;
    let server = ioth_tests::cprog::Reaped(server);
    let url = format!("http://{SERVER}:8000/f");
    let mut s = Samples::with_capacity(ROUNDS);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.len() < opts.n(ROUNDS) {
        let out = Command::new(bin)
            .args([
                "-s",
                "smoltcp",
                "-v",
                &vnl,
                "-c",
                &format!("eth,ip={CLIENT}/24"),
            ])
            .args([
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "-w",
                "%{time_total} %{size_download}",
                &url,
            ])
            .output()
            .map_err(|e| format!("ioth-run curl: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut it = text.split_whitespace();
        match (
            out.status.success(),
            it.next().and_then(|t| t.parse::<f64>().ok()),
            it.next(),
        ) {
            (true, Some(t), Some(n)) if n == BYTES.to_string() => {
                s.push(Duration::from_secs_f64(t))
            }
            _ if Instant::now() < deadline && s.len() == 0 => {
                std::thread::sleep(Duration::from_millis(200))
            }
            _ => return Err(format!("curl failed: {} {text}", out.status)),
        }
    }
    let pid = nix::unistd::Pid::from_raw(server.0.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    Ok(s)
}

pub fn run(opts: &Opts) -> Report {
    if let Some(why) = missing(&["libioth_vdestack.so", "libioth_smoltcp.so"]) {
        return skipped(TITLE, &why);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/release");
    let bin = dir.join("ioth-run");
    if !bin.is_file() || !dir.join("libioth_preload.so").is_file() {
        return skipped(
            TITLE,
            "build ioth-run first: cargo build --release --workspace",
        );
    }
    let sw = Switch::start();
    let api = run_api(opts, &sw);
    let mut r = Report::new(TITLE);
    match run_ioth_run(opts, &sw, &bin) {
        Ok(ran) => {
            r.throughput(
                "two programs on the ioth API (reference)",
                BYTES,
                &api,
                None,
            );
            r.throughput(
                "python3 http.server + curl under ioth-run",
                BYTES,
                &ran,
                Some(&api),
            );
        }
        Err(e) => return skipped(TITLE, &e),
    }
    r.note("ratio: speed under ioth-run / speed with the ioth API (1.00x = as fast)");
    r
}
