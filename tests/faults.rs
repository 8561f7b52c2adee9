//! Crash containment and limits, with purpose-built plug-ins
//! ([`ioth_tests::fault_plugins`], built here with gcc): a plug-in that cannot be loaded, that
//! crashes in newstack or on its third socket, that hangs in a call or in newstack, that hogs
//! fds or memory under a limit. The application and its other stacks carry on; a dead stack's
//! calls fail with `ENETDOWN` (C and Rust), its sockets and deletion behave as documented
//! (docs/faults.md). What happens to hosts when their application dies, and the counts of fds
//! and processes over many stacks, are tested in tests/lifecycle.rs.
//!
//! No timed assertions: waits are bounded with generous limits and the times measured are
//! printed (`cargo test --test faults -- --nocapture` shows them).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLockReadGuard};
use std::time::{Duration, Instant};

use ioth::{Error, Stack};
use ioth_tests::fault_plugins::{self, assert_died, plugin_dir, BOUND};
use ioth_tests::proc::{
    assert_status_socket_removed, cmdline, is_host, sigkill, status_socket, time_until,
};
use ioth_tests::stacks::kernel;
use ioth_tests::stdsock::{udp_echo_once, udp_loopback};

/// The fault plug-ins built (in this binary's directory), the shared lock taken.
fn setup() -> RwLockReadGuard<'static, ()> {
    fault_plugins::setup(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-plugins"))
}

fn loopback_any() -> socket2::SockAddr {
    "127.0.0.1:0"
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .into()
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
                let s = udp_loopback(&stack);
                if rounds.is_multiple_of(10) {
                    udp_echo_once(&s);
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
    udp_echo_once(&udp_loopback(&k));
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
    assert!(!is_host(pid), "host {pid} still there");
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
    udp_echo_once(&u);
    drop((l, u));
    // The sockets were converted into std types (the stack counts none open): delete works.
    stack.delete().map_err(ioth::Error::from).unwrap();
    // The same plug-in again: a new host, a working stack.
    let again = Stack::builder("crash3").limit_core_size(0).build().unwrap();
    assert_ne!(again.pid(), Some(pid));
    udp_echo_once(&udp_loopback(&again));
    again.delete().map_err(ioth::Error::from).unwrap();
    println!(
        "bystander kernel stack served {} rounds",
        bystander.finish()
    );
}

#[test]
fn delete_of_a_dead_stack_waits_for_its_sockets_then_succeeds() {
    let _g = setup();
    // One request per socket: crash3 dies in its third socket(), which a batch (the second
    // msocket of a kind) would reach at once.
    let stack = Stack::builder("crash3")
        .limit_core_size(0)
        .socket_batch(false)
        .build()
        .unwrap();
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
    // Three kinds of socket, each the first of its kind, so one request each: crash3 dies in
    // its third socket(), which a batch (the second msocket of a kind) would reach at once.
    let a = unsafe { ioth::capi::ioth_msocket(p, libc::AF_INET, libc::SOCK_DGRAM, 0) };
    // SAFETY: as above.
    let b = unsafe { ioth::capi::ioth_msocket(p, libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(a >= 0 && b >= 0);
    // SAFETY: as above.
    let c = unsafe { ioth::capi::ioth_msocket(p, libc::AF_INET6, libc::SOCK_DGRAM, 0) };
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
    assert!(!is_host(pid as u32));
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
    time_until(BOUND, || marker.exists()).expect("the hang plug-in never got the call");
    // A second thread queues behind it on the same stack.
    let s2 = stack.clone();
    let queued = std::thread::spawn(move || {
        let r = s2.stats();
        let _ = tx.send(("stats", r.map(drop), Instant::now()));
    });
    // Meanwhile other stacks serve.
    let k = kernel();
    for _ in 0..20 {
        udp_echo_once(&udp_loopback(&k));
    }
    assert!(rx.try_recv().is_err(), "a call on the hung stack returned");
    assert!(status_socket(pid).exists(), "no status socket of {pid}");
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
    assert!(!is_host(pid));
    stack.delete().map_err(ioth::Error::from).unwrap();
    assert_status_socket_removed(pid, BOUND);
    udp_echo_once(&udp_loopback(&k));
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
    assert!(status_socket(pid).exists(), "no status socket of {pid}");
    let t0 = Instant::now();
    let e = stack
        .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::ETIMEDOUT);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    println!("hung msocket failed after {took:?}: {e}");
    assert!(!is_host(pid));
    assert_status_socket_removed(pid, BOUND);
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
    assert!(!is_host(*pid), "host {pid} still there");
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
    let socks: Vec<_> = (0..10).map(|_| udp_loopback(&k)).collect();
    for s in &socks {
        udp_echo_once(s);
    }
    drop(socks);
    k.delete().map_err(ioth::Error::from).unwrap();
    println!(
        "bystander kernel stack served {} rounds",
        bystander.finish()
    );
}
