//! Crash containment, lifecycle, auditing and limits, with purpose-built plug-ins.
//!
//! The C test plug-ins in `tests/c/plugins/` are built here with gcc into one directory, which
//! becomes `IOTH_PLUGIN_PATH` once, before any test starts a stack (every test calls [`setup`]
//! first). Each test takes a shared lock; the test that counts fds and processes takes it
//! exclusively, so that no other test's hosts or fds are counted.
//!
//! No timed assertions: waits are bounded with generous limits and the times measured are
//! printed (`cargo test --test faults -- --nocapture` shows them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use ioth::{Error, Stack};

/// The test plug-ins, by name (`tests/c/plugins/ioth_<name>.c`).
const PLUGINS: &[&str] = &["crashnew", "crash3", "hang", "sleepnew", "fdhog", "memhog"];

/// Generous bound for anything that should take milliseconds.
const BOUND: Duration = Duration::from_secs(10);

static SERIAL: RwLock<()> = RwLock::new(());

/// Builds the test plug-ins once and points `IOTH_PLUGIN_PATH` at them.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-plugins");
        std::fs::create_dir_all(&dir).expect("plug-in dir");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("hang-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/plugins");
        let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/include");
        for name in PLUGINS {
            let out = dir.join(format!("ioth_{name}.so"));
            let tmp = dir.join(format!(".ioth_{name}.so.{}", std::process::id()));
            let status = Command::new("gcc")
                .args(["-Wall", "-Wextra", "-O1", "-fPIC", "-shared", "-I"])
                .arg(&include)
                .arg("-o")
                .arg(&tmp)
                .arg(src.join(format!("ioth_{name}.c")))
                .status()
                .expect("gcc (the fault tests build C plug-ins; install gcc)");
            assert!(status.success(), "gcc failed on ioth_{name}.c");
            std::fs::rename(&tmp, &out).expect("rename plug-in");
        }
        // Set once, before any stack exists; never changed afterwards.
        std::env::set_var("IOTH_PLUGIN_PATH", &dir);
        dir
    })
}

/// Every test starts here: plug-ins built, shared lock taken.
fn setup() -> RwLockReadGuard<'static, ()> {
    plugin_dir();
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

/// For the test that counts fds and processes: nobody else runs meanwhile.
fn setup_exclusive() -> RwLockWriteGuard<'static, ()> {
    plugin_dir();
    SERIAL.write().unwrap_or_else(|e| e.into_inner())
}

fn kernel() -> Stack {
    Stack::new("kernel", &[] as &[&str]).expect("kernel stack")
}

/// State letter of a process (`R`, `S`, `Z`, …), `None` if it does not exist.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Parent pid of a process.
fn proc_ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `pid` is still an `ioth-host` (running, or a zombie nobody reaped).
fn host_exists(pid: u32) -> bool {
    let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
        return false;
    };
    comm.trim() == "ioth-host"
}

/// Whether host `pid` is gone (exited and reaped) within [`BOUND`]: a deleted or dropped stack's
/// host is reaped in the background, after the kernel has torn down what it held.
fn host_reaped(pid: u32) -> bool {
    wait_for(BOUND, || !host_exists(pid)).is_some()
}

/// `/proc/<pid>/cmdline` without the NUL padding a forked host may leave after its title.
fn cmdline(pid: u32) -> Vec<u8> {
    let mut c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    while c.ends_with(b"\0\0") {
        c.pop();
    }
    c
}

/// Whether `pid` is an `ioth-host` that has not exited.
fn host_running(pid: u32) -> bool {
    host_exists(pid) && proc_state(pid).is_some_and(|s| s != 'Z')
}

/// Polls `cond` every 2 ms until it holds or `limit` passes; the time it took, if it held.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if cond() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn fd_count(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Our child processes (zombies included), but the fork server, which lives as long as this
/// process once a stack was made.
fn children() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| proc_ppid(*p) == Some(me))
        .filter(|p| fork_server_pid() != Some(*p))
        .collect()
}

/// The pid of this process's fork server, if it runs.
fn fork_server_pid() -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| proc_ppid(*p) == Some(me))
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "ioth-forksrv\n")
                && proc_state(*p).is_some_and(|s| s != 'Z')
        })
}

/// `s` echoes one datagram back to a plain socket of this process.
fn udp_echo(s: &UdpSocket) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(BOUND)).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    peer.send_to(b"ping", s.local_addr().unwrap()).unwrap();
    let mut b = [0u8; 16];
    let (n, from) = s.recv_from(&mut b).unwrap();
    s.send_to(&b[..n], from).unwrap();
    let (n, _) = peer.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"ping");
}

/// `l`, listening, accepts one connection of a plain socket and echoes through it.
fn tcp_echo(l: &TcpListener) {
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_read_timeout(Some(BOUND)).unwrap();
    let (mut a, _) = l.accept().unwrap();
    a.set_read_timeout(Some(BOUND)).unwrap();
    c.write_all(b"hello").unwrap();
    let mut b = [0u8; 5];
    a.read_exact(&mut b).unwrap();
    a.write_all(&b).unwrap();
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
}

fn loopback_any() -> socket2::SockAddr {
    "127.0.0.1:0"
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .into()
}

fn udp_on(stack: &Stack) -> UdpSocket {
    let s: UdpSocket = stack
        .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .expect("msocket udp")
        .into();
    socket2::SockRef::from(&s).bind(&loopback_any()).unwrap();
    s
}

fn assert_died(e: &Error, signal: &str) {
    assert!(matches!(e, Error::StackDied { .. }), "not StackDied: {e:?}");
    assert_eq!(e.errno(), libc::ENETDOWN, "{e}");
    assert!(e.to_string().contains(signal), "{e}");
}

/// A kernel stack serving in a thread until stopped: socket create/close, a UDP echo every
/// tenth round. Returns the rounds served; panics on any failure.
struct Bystander {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Bystander {
    fn start() -> Bystander {
        let stack = kernel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut rounds = 0u64;
            // Bounded in count and time.
            while !flag.load(Ordering::Acquire) && rounds < 1_000_000 && t0.elapsed() < BOUND * 6 {
                let s = udp_on(&stack);
                if rounds.is_multiple_of(10) {
                    udp_echo(&s);
                }
                drop(s);
                rounds += 1;
            }
            stack
                .delete()
                .map_err(ioth::Error::from)
                .expect("bystander delete");
            rounds
        });
        Bystander {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        let rounds = self
            .thread
            .take()
            .unwrap()
            .join()
            .expect("bystander failed");
        assert!(rounds > 0);
        rounds
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process killed and reaped when dropped, whatever happens to the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Hosts of a killed holder: those still running when the test ends (it failed) are killed.
struct Sweep(Vec<u32>);

impl Drop for Sweep {
    fn drop(&mut self) {
        for p in &self.0 {
            if host_running(*p) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*p as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Starts the holder application; returns it and the pids of its hosts.
fn holder(args: &[&str], env: &[(&str, &Path)]) -> (KillOnDrop, Vec<u32>) {
    try_holder(args, env).unwrap_or_else(|e| panic!("{e}"))
}

/// As [`holder`]; `Err` with the holder's own words if it could not create its stacks.
fn try_holder(args: &[&str], env: &[(&str, &Path)]) -> Result<(KillOnDrop, Vec<u32>), String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ioth-fault-holder"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = KillOnDrop(cmd.spawn().expect("holder"));
    let out = child.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let Some(list) = line.strip_prefix("pids ") else {
        let mut err = String::new();
        if let Some(mut e) = child.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("holder {args:?} said {line:?}: {err}"));
    };
    let pids = list
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    Ok((child, pids))
}

/// The network namespace of a process (`net:[inode]`).
fn netns(pid: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Kills the holder of `pids` and checks that every host exits and is reaped (bounded waits);
/// returns the time from the kill until all had exited.
fn kill_holder_and_wait(mut app: KillOnDrop, pids: &[u32]) -> Duration {
    let killed = Instant::now();
    app.0.kill().unwrap();
    app.0.wait().unwrap();
    // The hosts see EOF and exit; init reaps them (their parent is gone).
    if wait_for(BOUND, || pids.iter().all(|p| !host_running(*p))).is_none() {
        let left: Vec<_> = pids.iter().filter(|p| host_running(**p)).collect();
        panic!(
            "hosts still running {:?} after SIGKILL: {left:?}",
            killed.elapsed()
        )
    }
    let exited = killed.elapsed();
    let reaped = wait_for(BOUND, || pids.iter().all(|p| !host_exists(*p)));
    println!(
        "{} hosts exited within {exited:?} of their application's SIGKILL; all reaped (by \
         init) within {:?}",
        pids.len(),
        killed.elapsed()
    );
    assert!(reaped.is_some(), "zombie hosts left");
    exited
}

/// SIGKILL to a process by pid.
fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

// ------------------------------------------------------------------------------------------

/// A plug-in file that exists but cannot be loaded says why, with dlopen's cause as the errno
/// (not "plug-in not found"): a file that is no shared object is `ELIBBAD`; one that needs a
/// library that is not there is `ELIBACC` and names the library. Both through the Rust API
/// and the C ABI.
#[test]
fn unloadable_plugins_report_the_cause() {
    let _g = setup();
    let dir = plugin_dir();
    std::fs::write(
        dir.join("ioth_corrupt.so"),
        b"this is not an ELF object\n".repeat(64),
    )
    .unwrap();
    // A plug-in linked against a library that is then removed.
    let tmp = dir.join(format!("dep-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (dep_c, plug_c) = (tmp.join("dep.c"), tmp.join("plug.c"));
    std::fs::write(&dep_c, "int ioth_test_dep(void) { return 1; }\n").unwrap();
    std::fs::write(
        &plug_c,
        "int ioth_test_dep(void);\n\
         void *ioth_needsdep_newstack(const char **v, const char *o, void *f)\n\
         { (void)v; (void)o; (void)f; return (void *)(long)ioth_test_dep(); }\n",
    )
    .unwrap();
    let gcc = |args: &[&std::ffi::OsStr]| {
        let st = Command::new("gcc").args(args).status().expect("gcc");
        assert!(st.success(), "gcc {args:?}");
    };
    let dep = tmp.join("libiothtestdep.so");
    gcc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-o".as_ref(),
        dep.as_os_str(),
        dep_c.as_os_str(),
    ]);
    let plug = dir.join("ioth_needsdep.so");
    gcc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-o".as_ref(),
        plug.as_os_str(),
        plug_c.as_os_str(),
        "-L".as_ref(),
        tmp.as_os_str(),
        "-liothtestdep".as_ref(),
    ]);
    std::fs::remove_dir_all(&tmp).unwrap();

    for (name, errno, says) in [
        ("corrupt", libc::ELIBBAD, "ioth_corrupt.so"),
        ("needsdep", libc::ELIBACC, "libiothtestdep.so"),
    ] {
        let e = Stack::new(name, &[] as &[&str]).expect_err(name);
        assert!(matches!(e, Error::CannotLoad { .. }), "{name}: {e:?}");
        assert_eq!(e.errno(), errno, "{name}: {e}");
        assert!(e.to_string().contains(says), "{name}: {e}");
        let cname = std::ffi::CString::new(name).unwrap();
        // SAFETY: both arguments are NUL-terminated C strings or NULL.
        let p = unsafe { ioth::capi::ioth_newstack(cname.as_ptr(), std::ptr::null()) };
        let got = std::io::Error::last_os_error().raw_os_error();
        assert!(p.is_null());
        assert_eq!(got, Some(errno), "{name} through the C ABI");
    }
    let _ = std::fs::remove_file(dir.join("ioth_corrupt.so"));
    let _ = std::fs::remove_file(plug);
}

#[test]
fn segfault_in_newstack_fails_and_the_application_lives() {
    let _g = setup();
    let e = Stack::builder("crashnew")
        .limit_core_size(0)
        .build()
        .unwrap_err();
    assert_died(&e, "SIGSEGV");
    assert!(e.to_string().contains("during NewStack"), "{e}");
    // Through the C ABI: NULL and ENETDOWN.
    // SAFETY: both arguments are NUL-terminated C strings or NULL.
    let p = unsafe { ioth::capi::ioth_newstack(c"crashnew".as_ptr(), std::ptr::null()) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert!(p.is_null());
    assert_eq!(errno, Some(libc::ENETDOWN));
    // The application and other stacks carry on.
    let k = kernel();
    udp_echo(&udp_on(&k));
    k.delete().map_err(ioth::Error::from).unwrap();
}

#[test]
fn crash_on_third_socket_keeps_the_first_two_and_other_stacks() {
    let _g = setup();
    let bystander = Bystander::start();
    let stack = Stack::builder("crash3").limit_core_size(0).build().unwrap();
    let pid = stack.pid().unwrap();
    let l: TcpListener = stack
        .msocket(libc::AF_INET, libc::SOCK_STREAM, 0)
        .unwrap()
        .into();
    socket2::SockRef::from(&l).bind(&loopback_any()).unwrap();
    socket2::SockRef::from(&l).listen(4).unwrap();
    let u = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let u = {
        let s: UdpSocket = u.into();
        socket2::SockRef::from(&s).bind(&loopback_any()).unwrap();
        s
    };
    let held = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0);
    let e = held.unwrap_err();
    assert_died(&e, "SIGABRT");
    assert!(e.to_string().contains("during Socket"), "{e}");
    // The host is reaped already: no zombie.
    assert!(!host_exists(pid), "host {pid} still there");
    // Later calls fail the same way, without a round trip.
    let t0 = Instant::now();
    assert_died(&stack.stats().unwrap_err(), "SIGABRT");
    assert_died(
        &stack
            .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .unwrap_err(),
        "SIGABRT",
    );
    println!("calls on the dead stack failed in {:?}", t0.elapsed());
    assert!(stack.is_gone());
    // The first two sockets are kernel sockets: they work on.
    tcp_echo(&l);
    udp_echo(&u);
    drop((l, u));
    // The sockets were converted into std types (the stack counts none open): delete works.
    stack.delete().map_err(ioth::Error::from).unwrap();
    // The same plug-in again: a new host, a working stack.
    let again = Stack::builder("crash3").limit_core_size(0).build().unwrap();
    assert_ne!(again.pid(), Some(pid));
    udp_echo(&udp_on(&again));
    again.delete().map_err(ioth::Error::from).unwrap();
    println!(
        "bystander kernel stack served {} rounds",
        bystander.finish()
    );
}

#[test]
fn delete_of_a_dead_stack_waits_for_its_sockets_then_succeeds() {
    let _g = setup();
    let stack = Stack::builder("crash3").limit_core_size(0).build().unwrap();
    let a = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let b = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    assert_died(
        &stack
            .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .unwrap_err(),
        "SIGABRT",
    );
    let (stack, e) = stack.delete().unwrap_err().into_parts();
    assert_eq!(e.errno(), libc::EBUSY, "{e}");
    drop(a);
    let (stack, e) = stack.delete().unwrap_err().into_parts();
    assert_eq!(e.errno(), libc::EBUSY, "{e}");
    drop(b);
    stack.delete().map_err(ioth::Error::from).unwrap();
}

#[test]
fn c_delstack_of_a_dead_stack() {
    let _g = setup();
    // SAFETY: a NUL-terminated name and a NULL VNL.
    let p = unsafe { ioth::capi::ioth_newstack(c"crash3".as_ptr(), std::ptr::null()) };
    assert!(!p.is_null());
    // SAFETY: p is a live stack from ioth_newstack.
    let pid = unsafe { ioth::capi::ioth_stack_pid(p) };
    assert!(pid > 0);
    // SAFETY: p is a live stack (for all the calls below until ioth_delstack succeeds).
    let a = unsafe { ioth::capi::ioth_msocket(p, libc::AF_INET, libc::SOCK_DGRAM, 0) };
    // SAFETY: as above.
    let b = unsafe { ioth::capi::ioth_msocket(p, libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert!(a >= 0 && b >= 0);
    // SAFETY: as above.
    let c = unsafe { ioth::capi::ioth_msocket(p, libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert_eq!(c, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENETDOWN)
    );
    // SAFETY: as above.
    assert_eq!(unsafe { ioth::capi::ioth_delstack(p) }, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EBUSY)
    );
    assert_eq!(ioth::capi::ioth_close(a), 0);
    assert_eq!(ioth::capi::ioth_close(b), 0);
    // SAFETY: as above; p is freed by this call.
    assert_eq!(unsafe { ioth::capi::ioth_delstack(p) }, 0);
    assert!(!host_exists(pid as u32));
}

#[test]
fn sigkill_wakes_threads_blocked_on_the_stack_and_others_keep_serving() {
    let _g = setup();
    let stack = Stack::new("hang", &["null://", "vde:///tmp/nowhere"]).unwrap();
    let pid = stack.pid().unwrap();
    // The ps line says which plug-in and which VNLs.
    assert_eq!(
        cmdline(pid),
        b"ioth-host[hang]\0null://\0vde:///tmp/nowhere\0"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let s1 = stack.clone();
    let tx1 = tx.clone();
    let blocked = std::thread::spawn(move || {
        let r = s1.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let _ = tx1.send(("msocket", r.map(drop), Instant::now()));
    });
    // Wait until the host is inside the plug-in's socket().
    let marker = plugin_dir().join(format!("hang-{pid}"));
    wait_for(BOUND, || marker.exists()).expect("the hang plug-in never got the call");
    // A second thread queues behind it on the same stack.
    let s2 = stack.clone();
    let queued = std::thread::spawn(move || {
        let r = s2.stats();
        let _ = tx.send(("stats", r.map(drop), Instant::now()));
    });
    // Meanwhile other stacks serve.
    let k = kernel();
    for _ in 0..20 {
        udp_echo(&udp_on(&k));
    }
    assert!(rx.try_recv().is_err(), "a call on the hung stack returned");
    let killed = Instant::now();
    sigkill(pid);
    for _ in 0..2 {
        let (what, r, at) = rx
            .recv_timeout(BOUND)
            .expect("a blocked call was not woken");
        let e = r.unwrap_err();
        assert_died(&e, "SIGKILL");
        println!("{what} woken {:?} after SIGKILL: {e}", at - killed);
    }
    blocked.join().unwrap();
    queued.join().unwrap();
    assert!(!host_exists(pid));
    stack.delete().map_err(ioth::Error::from).unwrap();
    udp_echo(&udp_on(&k));
    k.delete().map_err(ioth::Error::from).unwrap();
    let _ = std::fs::remove_file(marker);
}

#[test]
fn request_timeout_kills_a_hung_host() {
    let _g = setup();
    let stack = Stack::builder("hang")
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let pid = stack.pid().unwrap();
    let t0 = Instant::now();
    let e = stack
        .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::ETIMEDOUT);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    println!("hung msocket failed after {took:?}: {e}");
    assert!(!host_exists(pid));
    let e = stack.stats().unwrap_err();
    assert!(matches!(e, Error::StackDied { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::ENETDOWN);
    stack.delete().map_err(ioth::Error::from).unwrap();
    let _ = std::fs::remove_file(plugin_dir().join(format!("hang-{pid}")));
}

#[test]
fn newstack_that_sleeps_forever_times_out() {
    let _g = setup();
    let t0 = Instant::now();
    let e = Stack::builder("sleepnew")
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap_err();
    let took = t0.elapsed();
    let Error::Timeout { pid, what, .. } = &e else {
        panic!("not a timeout: {e:?}");
    };
    assert_eq!(*what, "NewStack");
    assert_eq!(e.errno(), libc::ETIMEDOUT);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    println!("newstack failed after {took:?}: {e}");
    // Killed and reaped before build returned.
    assert!(!host_exists(*pid), "host {pid} still there");
}

#[test]
fn killed_application_leaves_no_host_behind() {
    let _g = setup();
    let audit = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("faults-audit-holder-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&audit);
    std::fs::create_dir_all(&audit).unwrap();
    let (app, pids) = holder(&["kernel", "20"], &[("IOTH_AUDIT", &audit)]);
    let _sweep = Sweep(pids.clone());
    assert_eq!(pids.len(), 20);
    for p in &pids {
        assert!(host_running(*p), "host {p} not running");
        assert_eq!(cmdline(*p), b"ioth-host[kernel]\0");
        assert_eq!(proc_ppid(*p), Some(app.0.id()));
    }
    kill_holder_and_wait(app, &pids);
    // IOTH_AUDIT (a directory): one trail per host, written by the host.
    for p in &pids {
        let t = std::fs::read_to_string(audit.join(format!("kernel-{p}.jsonl"))).unwrap();
        // Request lines only (the trail also has the audit thread's events).
        let reqs: Vec<&str> = t
            .lines()
            .filter(|l| l.contains("\"event\":\"request\""))
            .map(|l| {
                l.split("\"request\":\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(reqs, ["Hello", "NewStack", "Socket"], "{t}");
    }
    let _ = std::fs::remove_dir_all(&audit);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn killed_application_with_vdestack_stacks_leaves_no_namespace() {
    let _g = setup();
    let (app, pids) = try_holder(&["vdestack", "20"], &[]).unwrap_or_else(|e| panic!("{e}"));
    let _sweep = Sweep(pids.clone());
    let ours = netns("self").unwrap();
    let spaces: Vec<String> = pids
        .iter()
        .map(|p| netns(&p.to_string()).expect("host netns"))
        .collect();
    for ns in &spaces {
        assert_ne!(*ns, ours, "vdestack host in the application's namespace");
    }
    kill_holder_and_wait(app, &pids);
    // No process is left in any of the hosts' namespaces, so they are gone with their taps.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| netns(&p.to_string()).map(|ns| (p, ns)))
        .filter(|(_, ns)| spaces.contains(ns))
        .map(|(p, ns)| format!("{p} in {ns}"))
        .collect();
    assert!(
        left.is_empty(),
        "processes left in host namespaces: {left:?}"
    );
}

#[test]
fn killed_application_ends_a_host_stuck_in_the_plugin() {
    let _g = setup();
    let (mut app, pids) = holder(&["hang", "1", "hang"], &[]);
    let _sweep = Sweep(pids.clone());
    let pid = pids[0];
    let marker = plugin_dir().join(format!("hang-{pid}"));
    wait_for(BOUND, || marker.exists()).expect("the hang plug-in never got the call");
    let killed = Instant::now();
    app.0.kill().unwrap();
    app.0.wait().unwrap();
    let exited = wait_for(BOUND, || !host_running(pid))
        .unwrap_or_else(|| panic!("host {pid} stuck in the plug-in outlived its application"));
    println!(
        "host stuck in socket() exited {exited:?} after its application's SIGKILL \
         (watchdog grace 500 ms; {:?} in all)",
        killed.elapsed()
    );
    let _ = std::fs::remove_file(marker);
}

#[test]
fn dropped_and_deleted_stacks_reap_their_hosts() {
    let _g = setup();
    let a = kernel();
    let pa = a.pid().unwrap();
    a.delete().map_err(ioth::Error::from).unwrap();
    assert!(host_reaped(pa), "deleted host {pa} still there");
    let b = kernel();
    let pb = b.pid().unwrap();
    drop(b);
    assert!(host_reaped(pb), "dropped host {pb} still there");
    // Dropped with a stuck call's plug-in: the host's watchdog ends it on EOF.
    let c = Stack::new("hang", &[] as &[&str]).unwrap();
    let pc = c.pid().unwrap();
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).map(drop));
    let marker = plugin_dir().join(format!("hang-{pc}"));
    wait_for(BOUND, || marker.exists()).expect("the hang plug-in never got the call");
    sigkill(pc);
    assert_died(&t.join().unwrap().unwrap_err(), "SIGKILL");
    drop(c);
    assert!(host_reaped(pc));
    let _ = std::fs::remove_file(marker);
}

#[test]
fn many_cycles_leave_fd_and_process_counts_unchanged() {
    let _g = setup_exclusive();
    // The fork server (one fd, one process) is the application's, not any stack's: start it
    // before counting.
    let warm = kernel();
    let warm_pid = warm.pid().unwrap();
    warm.delete().map_err(ioth::Error::from).unwrap();
    // The library's reaper holds a pidfd of a host until it has reaped it.
    assert!(host_reaped(warm_pid));
    std::thread::sleep(Duration::from_millis(20));
    let app_fds = fd_count("self");
    let kids = children().len();
    let stack = kernel();
    let pid = stack.pid().unwrap().to_string();
    let host_fds = fd_count(&pid);
    let t0 = Instant::now();
    for _ in 0..10_000 {
        let s = stack
            .msocket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
            .unwrap();
        assert!(s.as_raw_fd() >= 0);
    }
    println!("10,000 socket create/close cycles in {:?}", t0.elapsed());
    // A round trip, so that the host has closed its copy of the last socket.
    let st = stack.stats().unwrap();
    assert_eq!(st.sockets_created, 10_000);
    assert_eq!(fd_count(&pid), host_fds, "host fds");
    assert_eq!(fd_count("self"), app_fds + 1, "app fds (the channel)");
    stack.delete().map_err(ioth::Error::from).unwrap();
    assert!(host_reaped(pid.parse().unwrap()));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(fd_count("self"), app_fds, "app fds after delete");
    // 200 cycles each way: forked by the fork server, and exec'd (which adds a pidfd).
    for fork_server in [true, false] {
        let t0 = Instant::now();
        let mut pids = Vec::new();
        for _ in 0..200 {
            let s = Stack::builder("kernel")
                .fork_server(fork_server)
                .build()
                .unwrap();
            drop(s.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap());
            pids.push(s.pid().unwrap());
            s.delete().map_err(ioth::Error::from).unwrap();
        }
        println!(
            "200 newstack/delstack cycles (fork server: {fork_server}) in {:?}",
            t0.elapsed()
        );
        // Hosts are reaped in the background: wait for the last ones.
        for p in pids {
            assert!(host_reaped(p), "host {p} not reaped");
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(fd_count("self"), app_fds, "app fds after 200 stacks");
        assert_eq!(children().len(), kids, "child processes after 200 stacks");
    }
}

#[test]
fn killed_fork_server_costs_only_the_next_newstack_a_fresh_start() {
    let _g = setup_exclusive();
    let before = kernel();
    let server = fork_server_pid().expect("a fork server runs once a stack exists");
    let s = before.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    sigkill(server);
    // Wait until it has died (its fds closed), as an application would not know to.
    wait_for(BOUND, || proc_state(server).is_none_or(|s| s == 'Z')).expect("fork server died");
    // The stack made before keeps working: sockets, stats, a new socket.
    udp_echo(&udp_on(&before));
    drop(s);
    assert_eq!(before.stats().unwrap().open_sockets, 0);
    // The next newstack starts a new fork server; the dead one is reaped.
    let after = kernel();
    let again = fork_server_pid().expect("a new fork server");
    assert_ne!(again, server);
    udp_echo(&udp_on(&after));
    assert_eq!(proc_ppid(after.pid().unwrap()), Some(std::process::id()));
    assert!(
        wait_for(BOUND, || proc_state(server).is_none()).is_some(),
        "the dead fork server {server} was not reaped"
    );
    before.delete().map_err(ioth::Error::from).unwrap();
    after.delete().map_err(ioth::Error::from).unwrap();
}

/// Under a lowered open-files limit, stacks with one socket each reach (limit − base) / 2: two
/// fds per stack in the application. Runs in a helper process (the limit is process-wide).
#[test]
fn two_fds_per_stack_under_a_lowered_fd_limit() {
    let _g = setup();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ioth-fault-holder"))
        .args(["--fd-budget", "200"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "{text}");
    let field = |k: &str| -> usize {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {text}"))
    };
    let (limit, base, reached) = (field("limit="), field("base="), field("reached="));
    assert_eq!(reached, (limit - base) / 2, "{text}");
}

#[test]
fn audit_trail_records_exactly_the_requests_made() {
    let _g = setup();
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("faults-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let stack = Stack::builder("kernel").audit(&dir).build().unwrap();
    let pid = stack.pid().unwrap();
    let file = dir.join(format!("kernel-{pid}.jsonl"));
    assert_eq!(stack.audit_file(), Some(file.as_path()));
    let s = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let e = stack.msocket(4242, libc::SOCK_DGRAM, 0).unwrap_err();
    assert_eq!(e.errno(), libc::EAFNOSUPPORT);
    stack.stats().unwrap();
    drop(s);
    stack.delete().map_err(ioth::Error::from).unwrap();
    // The host writes the DelStack line after its reply, as it exits: once it has ended.
    assert!(host_reaped(pid));
    let text = std::fs::read_to_string(&file).unwrap();
    println!("{text}");
    // The request lines (the trail also has the audit thread's events: docs/audit.md).
    let all: Vec<&str> = text.lines().collect();
    assert!(
        all[0].contains("\"event\":\"trail\",\"schema\":3"),
        "{}",
        all[0]
    );
    let lines: Vec<&str> = all
        .iter()
        .copied()
        .filter(|l| l.contains("\"event\":\"request\""))
        .collect();
    let mut last_seq = 0;
    let expect = [
        ("Hello", "{\"version\":"),
        (
            "NewStack",
            "{\"plugin\":\"kernel\",\"options\":\"\",\"vnls\":[]",
        ),
        ("Socket", "{\"domain\":2,\"type\":2,\"protocol\":0}"),
        ("Socket", "{\"domain\":4242,\"type\":2,\"protocol\":0}"),
        ("Stats", "{}"),
        ("DelStack", "{}"),
    ];
    assert_eq!(lines.len(), expect.len(), "{text}");
    for (i, (line, (req, args))) in lines.iter().zip(expect).enumerate() {
        let seq: u64 = line
            .strip_prefix("{\"seq\":")
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(seq > last_seq && line.contains(",\"time\":\""), "{line}");
        last_seq = seq;
        assert!(
            line.contains(&format!(",\"pid\":{pid},\"plugin\":\"kernel\",")),
            "{line}"
        );
        assert!(
            line.contains(&format!("\"request\":\"{req}\",\"args\":{args}")),
            "{line}"
        );
        assert!(
            line.contains("\"unix_us\":") && line.ends_with('}'),
            "{line}"
        );
        assert!(line.contains(",\"duration_us\":"), "{line}");
        let ok = i != 3;
        assert_eq!(line.contains("\"result\":\"ok\""), ok, "{line}");
    }
    assert!(lines[2].contains("\"fd_kind\":\"native\""));
    assert!(
        lines[3].contains("\"result\":\"error\",\"errno\":97,\"errname\":\"EAFNOSUPPORT\""),
        "{}",
        lines[3]
    );
    // A file path: the trail is that file, appended to by every stack that names it.
    let one = dir.join("one.jsonl");
    for _ in 0..2 {
        let st = Stack::builder("kernel").audit(&one).build().unwrap();
        let pid = st.pid().unwrap();
        st.delete().map_err(ioth::Error::from).unwrap();
        assert!(host_reaped(pid));
    }
    let text = std::fs::read_to_string(&one).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"event\":\"request\""))
            .count(),
        6,
        "{text}"
    );
    // A trail that cannot be opened fails the creation.
    let e = Stack::builder("kernel")
        .audit(dir.join("no/such/dir/x.jsonl"))
        .build()
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stats_pid_and_process_name() {
    let _g = setup();
    let stack = kernel();
    let pid = stack.pid().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        "ioth-host\n"
    );
    let a = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let b = stack.msocket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    let c = stack.msocket(libc::AF_INET6, libc::SOCK_DGRAM, 0).unwrap();
    drop(c);
    let st = stack.stats().unwrap();
    println!("{st:?}");
    // Hello, NewStack and three Sockets before this Stats.
    assert_eq!(st.requests, 5);
    assert_eq!(st.sockets_created, 3);
    assert_eq!(st.open_sockets, 2);
    assert!(st.rss_bytes > 0 && st.pss_bytes > 0 && st.pss_bytes <= st.rss_bytes);
    assert!(st.host_fds >= 4, "{st:?}");
    let st2 = stack.stats().unwrap();
    assert_eq!(st2.requests, 6);
    assert!(st2.cpu_time >= st.cpu_time);
    drop((a, b));
    assert_eq!(stack.stats().unwrap().open_sockets, 0);
    // The C view of the pid.
    // SAFETY: a NUL-terminated name and a NULL VNL.
    let p = unsafe { ioth::capi::ioth_newstack(c"kernel".as_ptr(), std::ptr::null()) };
    assert!(!p.is_null());
    // SAFETY: p is a live stack.
    let cpid = unsafe { ioth::capi::ioth_stack_pid(p) };
    assert!(host_running(cpid as u32));
    // SAFETY: p is a live stack without sockets; freed here.
    assert_eq!(unsafe { ioth::capi::ioth_delstack(p) }, 0);
    assert!(host_reaped(cpid as u32));
    stack.delete().map_err(ioth::Error::from).unwrap();
}

#[test]
fn limits_bind_only_their_own_stack() {
    let _g = setup();
    let bystander = Bystander::start();
    // Open files: the plug-in gets EMFILE and says so; its host lives on.
    let fdhog = Stack::builder("fdhog")
        .limit_open_files(64)
        .build()
        .unwrap();
    let pid = fdhog.pid().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits.lines().any(|l| l.starts_with("Max open files")
            && l.split_whitespace().nth(3) == Some("64")
            && l.split_whitespace().nth(4) == Some("64")),
        "{limits}"
    );
    let e = fdhog
        .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EMFILE, "{e}");
    println!("fdhog: {e}");
    assert!(fdhog.stats().is_ok());
    fdhog.delete().map_err(ioth::Error::from).unwrap();
    // Address space: malloc fails, the careless plug-in dies of it, alone.
    let memhog = Stack::builder("memhog")
        .limit_address_space(64 << 20)
        .limit_core_size(0)
        .build()
        .unwrap();
    let e = memhog
        .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .unwrap_err();
    println!("memhog: {e}");
    assert_died(&e, "SIGSEGV");
    memhog.delete().map_err(ioth::Error::from).unwrap();
    // A kernel stack under tighter limits works (the host needs ~6 MB of address space).
    let k = Stack::builder("kernel")
        .limit_open_files(32)
        .limit_address_space(32 << 20)
        .build()
        .unwrap();
    let socks: Vec<_> = (0..10).map(|_| udp_on(&k)).collect();
    for s in &socks {
        udp_echo(s);
    }
    drop(socks);
    k.delete().map_err(ioth::Error::from).unwrap();
    println!(
        "bystander kernel stack served {} rounds",
        bystander.finish()
    );
}
