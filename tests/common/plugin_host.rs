//! The smoltcp plug-in driven through its C ABI as the host drives it (tests/smoltcp_plugin.rs):
//! the test process dlopens `libioth_smoltcp.so`, fills a `struct ioth_functions`, calls
//! `ioth_smoltcp_newstack` and the function pointers the plug-in set ([`Smol`], [`PSock`]);
//! rtnetlink requests on the stack's `AF_NETLINK` socket; a `vdestack` peer on the same switch
//! ([`Pair`]). Every wait is bounded.

use std::cell::Cell;
use std::ffi::{c_void, CString};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::dad::retry_unavailable;
use crate::vde::Switch;
use ioth::Stack;
use ioth_plugin_sdk::abi::{IothFunctions, NewStackFn};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Upper bound of any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- the plug-in, as a host

pub struct Lib {
    pub _lib: libloading::Library,
    pub newstack: NewStackFn,
    pub delstack: unsafe extern "C" fn(*mut c_void) -> libc::c_int,
}

pub fn lib() -> &'static Lib {
    static LIB: OnceLock<Lib> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir: PathBuf = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
        let path = dir.join("libioth_smoltcp.so");
        assert!(
            path.is_file(),
            "{} missing: run `cargo build --workspace` first",
            path.display()
        );
        // SAFETY: loading our own plug-in; its initialisers only register its statics.
        let lib = unsafe { libloading::Library::new(&path) }.expect("dlopen ioth_smoltcp");
        // SAFETY: the symbols have the ABI's signatures.
        unsafe {
            let newstack = *lib
                .get::<NewStackFn>(b"ioth_smoltcp_newstack\0")
                .expect("newstack");
            let delstack = *lib
                .get::<unsafe extern "C" fn(*mut c_void) -> libc::c_int>(b"ioth_smoltcp_delstack\0")
                .expect("delstack");
            Lib {
                _lib: lib,
                newstack,
                delstack,
            }
        }
    })
}

thread_local! {
    /// What `getstackdata` returns on this thread (each test runs on its own thread).
    static CURRENT: Cell<*mut c_void> = const { Cell::new(std::ptr::null_mut()) };
}

unsafe extern "C" fn getstackdata() -> *mut c_void {
    CURRENT.with(|c| c.get())
}

pub fn last_err() -> io::Error {
    io::Error::last_os_error()
}

pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

pub fn sockaddr(a: SocketAddr) -> (Vec<u8>, libc::socklen_t) {
    let s2: socket2::SockAddr = a.into();
    // SAFETY: SockAddr holds a valid sockaddr of len() bytes.
    let b = unsafe { std::slice::from_raw_parts(s2.as_ptr().cast::<u8>(), s2.len() as usize) };
    (b.to_vec(), s2.len())
}

pub fn parse_sockaddr(b: &[u8]) -> SocketAddr {
    let fam = i32::from(u16::from_ne_bytes([b[0], b[1]]));
    let port = u16::from_be_bytes([b[2], b[3]]);
    if fam == libc::AF_INET {
        SocketAddr::new(IpAddr::from([b[4], b[5], b[6], b[7]]), port)
    } else {
        let o: [u8; 16] = b[8..24].try_into().unwrap();
        SocketAddr::new(IpAddr::from(o), port)
    }
}

/// A smoltcp stack made through the plug-in's ABI.
pub struct Smol {
    pub data: *mut c_void,
    pub f: Box<IothFunctions>,
}

// SAFETY: the stack pointer is only handed back to the plug-in, whose functions are thread-safe
// (every call takes the stack's mutex); IothFunctions is a table of function pointers.
unsafe impl Sync for Smol {}

impl Smol {
    pub fn new(vnls: &[&str]) -> io::Result<Smol> {
        let mut f = Box::<IothFunctions>::default();
        f.getstackdata = Some(getstackdata);
        let c: Vec<CString> = vnls.iter().map(|v| CString::new(*v).unwrap()).collect();
        let mut v: Vec<*const libc::c_char> = c.iter().map(|s| s.as_ptr()).collect();
        v.push(std::ptr::null());
        // SAFETY: v is a NULL-terminated vector of live C strings, the options a C string; f
        // lives as long as the stack.
        let data = unsafe { (lib().newstack)(v.as_ptr(), c"".as_ptr(), &mut *f) };
        if data.is_null() {
            return Err(last_err());
        }
        Ok(Smol { data, f })
    }

    pub fn socket(&self, domain: i32, ty: i32) -> io::Result<PSock<'_>> {
        CURRENT.with(|c| c.set(self.data));
        // SAFETY: the plug-in's socket(2).
        let fd = unsafe { (self.f.socket.unwrap())(domain, ty, 0) };
        if fd < 0 {
            return Err(last_err());
        }
        Ok(PSock { st: self, fd })
    }

    pub fn tcp(&self, a: &SocketAddr) -> PSock<'_> {
        self.socket(domain(a), libc::SOCK_STREAM).expect("socket")
    }

    pub fn netlink(&self) -> PSock<'_> {
        self.socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC)
            .expect("netlink socket")
    }
}

impl Drop for Smol {
    fn drop(&mut self) {
        // SAFETY: data is what newstack returned, deleted once.
        unsafe { (lib().delstack)(self.data) };
    }
}

pub fn domain(a: &SocketAddr) -> i32 {
    if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// A socket of the smoltcp stack: the application's fd, which is also its handle.
pub struct PSock<'a> {
    pub st: &'a Smol,
    pub fd: RawFd,
}

pub fn rc(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(last_err())
    } else {
        Ok(r)
    }
}

impl<'a> PSock<'a> {
    pub fn f(&self) -> &IothFunctions {
        &self.st.f
    }

    pub fn bind(&self, a: SocketAddr) -> io::Result<()> {
        let (b, l) = sockaddr(a);
        // SAFETY: b is a valid sockaddr of l bytes.
        rc(unsafe { (self.f().bind.unwrap())(self.fd, b.as_ptr().cast(), l) }).map(drop)
    }

    pub fn connect_start(&self, a: SocketAddr) -> io::Result<()> {
        let (b, l) = sockaddr(a);
        // SAFETY: b is a valid sockaddr of l bytes.
        rc(unsafe { (self.f().connect.unwrap())(self.fd, b.as_ptr().cast(), l) }).map(drop)
    }

    /// A blocking connect as the client library does it: EINPROGRESS, POLLOUT, SO_ERROR.
    pub fn connect(&self, a: SocketAddr) -> io::Result<()> {
        match self.connect_start(a) {
            Err(e) if errno(&e) == libc::EINPROGRESS => {}
            r => return r,
        }
        assert!(
            wait(self.as_fd(), PollFlags::POLLOUT),
            "connect {a}: no POLLOUT within {WAIT:?}"
        );
        match self.so_error() {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    pub fn listen(&self, backlog: i32) -> io::Result<()> {
        // SAFETY: plain integers.
        rc(unsafe { (self.f().listen.unwrap())(self.fd, backlog) }).map(drop)
    }

    pub fn try_accept(&self) -> io::Result<(PSock<'a>, SocketAddr)> {
        let mut b = [0u8; 128];
        let mut l = b.len() as libc::socklen_t;
        // SAFETY: b is writable for l bytes.
        let fd = rc(unsafe { (self.f().accept.unwrap())(self.fd, b.as_mut_ptr().cast(), &mut l) })?;
        Ok((PSock { st: self.st, fd }, parse_sockaddr(&b[..l as usize])))
    }

    /// A blocking accept as the client library does it: POLLIN, then accept.
    pub fn accept(&self) -> (PSock<'a>, SocketAddr) {
        assert!(
            wait(self.as_fd(), PollFlags::POLLIN),
            "no connection within {WAIT:?}"
        );
        self.try_accept().expect("accept after POLLIN")
    }

    pub fn name(&self, peer: bool) -> io::Result<SocketAddr> {
        let mut b = [0u8; 128];
        let mut l = b.len() as libc::socklen_t;
        let f = if peer {
            self.f().getpeername.unwrap()
        } else {
            self.f().getsockname.unwrap()
        };
        // SAFETY: b is writable for l bytes.
        rc(unsafe { f(self.fd, b.as_mut_ptr().cast(), &mut l) })?;
        Ok(parse_sockaddr(&b[..l as usize]))
    }

    pub fn getsockopt_int(&self, level: i32, name: i32) -> io::Result<i32> {
        let mut v: i32 = 0;
        let mut l = 4 as libc::socklen_t;
        // SAFETY: v is a writable int of l bytes.
        rc(unsafe {
            (self.f().getsockopt.unwrap())(
                self.fd,
                level,
                name,
                (&mut v as *mut i32).cast(),
                &mut l,
            )
        })?;
        Ok(v)
    }

    pub fn setsockopt_bytes(&self, level: i32, name: i32, v: &[u8]) -> io::Result<()> {
        // SAFETY: v is readable for its length.
        rc(unsafe {
            (self.f().setsockopt.unwrap())(self.fd, level, name, v.as_ptr().cast(), v.len() as u32)
        })
        .map(drop)
    }

    pub fn so_error(&self) -> i32 {
        self.getsockopt_int(libc::SOL_SOCKET, libc::SO_ERROR)
            .expect("SO_ERROR")
    }

    pub fn shutdown(&self, how: i32) -> io::Result<()> {
        // SAFETY: plain integers.
        rc(unsafe { (self.f().shutdown.unwrap())(self.fd, how) }).map(drop)
    }

    pub fn set_read_timeout(&self) {
        let tv = libc::timeval {
            tv_sec: WAIT.as_secs() as _,
            tv_usec: 0,
        };
        // SAFETY: tv is a live timeval; SO_RCVTIMEO acts on the application's end natively.
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
    }
}

impl AsFd for PSock<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: fd stays open until drop.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

impl Read for &PSock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(last_err())
        } else {
            Ok(n as usize)
        }
    }
}

impl Write for &PSock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: buf is readable for its length.
        let n = unsafe { libc::send(self.fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(last_err())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PSock<'_> {
    fn drop(&mut self) {
        // As the host: the plug-in's close, then our copy of the fd.
        // SAFETY: fd is the handle the plug-in gave; closed once, after the plug-in's close.
        unsafe {
            (self.f().close.unwrap())(self.fd);
            libc::close(self.fd);
        }
    }
}

/// Waits (bounded) until `fd` reports `ev`.
pub fn wait(fd: BorrowedFd<'_>, ev: PollFlags) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = [PollFd::new(fd, ev)];
        match poll(
            &mut p,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO),
        ) {
            Ok(n) if n > 0 => return p[0].revents().is_some_and(|r| r.intersects(ev)),
            Ok(_) => return false,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

pub fn ready_now(fd: BorrowedFd<'_>, ev: PollFlags) -> bool {
    let mut p = [PollFd::new(fd, ev)];
    matches!(poll(&mut p, PollTimeout::ZERO), Ok(1))
        && p[0].revents().is_some_and(|r| r.intersects(ev))
}

// ---------------------------------------------------------------- rtnetlink on the stack

/// Sends one request on a smoltcp netlink socket; returns the reply messages, or the NACK's
/// errno (negative codes made positive).
pub fn nl(
    sock: &PSock<'_>,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, i32> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(100);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut h = NetlinkHeader::default();
    h.flags = NLM_F_REQUEST | flags;
    h.sequence_number = seq;
    let mut m = NetlinkMessage::new(h, NetlinkPayload::from(msg));
    m.finalize();
    let mut out = vec![0u8; m.buffer_len()];
    m.serialize(&mut out);
    (&*sock).write_all(&out).expect("netlink send");
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..1000 {
        assert!(
            wait(sock.as_fd(), PollFlags::POLLIN),
            "no netlink answer within {WAIT:?}"
        );
        let n = (&*sock).read(&mut buf).expect("netlink recv");
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            assert!(len >= 16 && off + len <= n, "malformed reply");
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len])
                .expect("undecodable reply");
            off += (len + 3) & !3;
            assert_eq!(m.header.sequence_number, seq, "sequence number echoed");
            match m.payload {
                NetlinkPayload::Error(e) => match e.code {
                    None if !dump => return Ok(replies),
                    None => {}
                    Some(c) => return Err(-c.get()),
                },
                NetlinkPayload::Done(_) if dump => return Ok(replies),
                NetlinkPayload::InnerMessage(r) => {
                    if dump {
                        assert!(m.header.flags & netlink_packet_core::NLM_F_MULTIPART != 0);
                    }
                    replies.push(r)
                }
                _ => {}
            }
        }
    }
    panic!("netlink: no end of reply");
}

pub fn index_of(nls: &PSock<'_>, name: &str) -> Result<u32, i32> {
    let mut l = LinkMessage::default();
    l.attributes.push(LinkAttribute::IfName(name.into()));
    let r = nl(nls, RouteNetlinkMessage::GetLink(l), NLM_F_ACK)?;
    match r.first() {
        Some(RouteNetlinkMessage::NewLink(l)) => Ok(l.header.index),
        _ => Err(libc::ENODEV),
    }
}

pub fn link_up(nls: &PSock<'_>, idx: u32, up: bool) -> Result<(), i32> {
    let mut l = LinkMessage::default();
    l.header.index = idx;
    l.header.flags = if up {
        LinkFlags::Up
    } else {
        LinkFlags::empty()
    };
    l.header.change_mask = LinkFlags::Up;
    nl(nls, RouteNetlinkMessage::SetLink(l), NLM_F_ACK).map(drop)
}

pub fn addr_msg(ip: IpAddr, prefix: u8, idx: u32) -> AddressMessage {
    let mut a = AddressMessage::default();
    a.header.family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    a.header.prefix_len = prefix;
    a.header.index = idx;
    a.attributes.push(AddressAttribute::Local(ip));
    a.attributes.push(AddressAttribute::Address(ip));
    a
}

pub fn addr_add(nls: &PSock<'_>, ip: &str, prefix: u8, idx: u32) -> Result<(), i32> {
    nl(
        nls,
        RouteNetlinkMessage::NewAddress(addr_msg(ip.parse().unwrap(), prefix, idx)),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

pub fn addr_del(nls: &PSock<'_>, ip: &str, prefix: u8, idx: u32) -> Result<(), i32> {
    nl(
        nls,
        RouteNetlinkMessage::DelAddress(addr_msg(ip.parse().unwrap(), prefix, idx)),
        NLM_F_ACK,
    )
    .map(drop)
}

pub fn route_msg(dst: Option<(&str, u8)>, gw: Option<&str>, v6: bool) -> RouteMessage {
    let mut r = RouteMessage::default();
    r.header = RouteHeader {
        address_family: if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        },
        destination_prefix_length: dst.map_or(0, |d| d.1),
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..Default::default()
    };
    if let Some((d, _)) = dst {
        let ip: IpAddr = d.parse().unwrap();
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(ip)));
    }
    if let Some(g) = gw {
        let ip: IpAddr = g.parse().unwrap();
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(ip)));
    }
    r
}

pub fn addresses(nls: &PSock<'_>) -> Vec<(u32, IpAddr, u8)> {
    nl(
        nls,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        NLM_F_DUMP,
    )
    .expect("addr dump")
    .into_iter()
    .filter_map(|m| match m {
        RouteNetlinkMessage::NewAddress(a) => {
            let ip = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })?;
            Some((a.header.index, ip, a.header.prefix_len))
        }
        _ => None,
    })
    .collect()
}

/// Configures a smoltcp stack's vde0 with `v4`/24 and `v6`/64, up.
pub fn configure_smol(s: &Smol, v4: &str, v6: &str) {
    let nls = s.netlink();
    let idx = index_of(&nls, "vde0").expect("vde0");
    link_up(&nls, idx, true).unwrap();
    addr_add(&nls, v4, 24, idx).unwrap();
    addr_add(&nls, v6, 64, idx).unwrap();
}

// ---------------------------------------------------------------- the peer

/// A switch, a smoltcp stack (10.0.0.1, fd00::1) and a vdestack stack (10.0.0.2, fd00::2).
/// Fields drop in order: the stacks, then the switch.
pub struct Pair {
    pub smol: Smol,
    pub peer: Stack,
    pub _sw: Switch,
}

pub fn pair() -> Pair {
    let sw = Switch::start();
    let smol = Smol::new(&[&sw.vnl()]).expect("newstack smoltcp");
    configure_smol(&smol, "10.0.0.1", "fd00::1");
    let peer = Stack::new("vdestack", &[sw.vnl()]).expect("newstack vdestack");
    let idx = peer.if_nametoindex("vde0").unwrap();
    peer.ipaddr_add("10.0.0.2".parse().unwrap(), 24, idx)
        .unwrap();
    // With duplicate address detection, as users add it: the peer_* helpers wait for it.
    peer.ipaddr_add("fd00::2".parse().unwrap(), 64, idx)
        .unwrap();
    peer.link_set_up(idx, true).unwrap();
    Pair {
        smol,
        peer,
        _sw: sw,
    }
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn peer_listen(st: &Stack, at: SocketAddr) -> TcpListener {
    let s: socket2::Socket = st
        .msocket(domain(&at), libc::SOCK_STREAM, 0)
        .expect("msocket")
        .into();
    s.set_reuse_address(true).unwrap();
    retry_unavailable(|| s.bind(&at.into())).unwrap_or_else(|e| panic!("peer bind {at}: {e}"));
    s.listen(16).unwrap();
    s.into()
}

pub fn peer_connect(st: &Stack, to: SocketAddr) -> TcpStream {
    // The first SYN may wait for neighbour discovery; a connect without a usable source address
    // yet (duplicate address detection) fails with EADDRNOTAVAIL and is retried.
    let s = retry_unavailable(|| {
        let s: socket2::Socket = st
            .msocket(domain(&to), libc::SOCK_STREAM, 0)
            .expect("msocket")
            .into();
        s.connect_timeout(&to.into(), WAIT).map(|()| s)
    })
    .unwrap_or_else(|e| panic!("peer connect {to}: {e}"));
    let t: TcpStream = s.into();
    t.set_read_timeout(Some(WAIT)).unwrap();
    t
}

pub fn peer_accept(l: &TcpListener) -> TcpStream {
    assert!(wait(l.as_fd(), PollFlags::POLLIN), "peer: no connection");
    let (c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

pub fn echo_round_trips(mut r: impl Read, mut w: impl Write) {
    for i in 0..20 {
        let msg = format!("hello {i} across the stacks");
        w.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        r.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}

/// Echoes on a std stream until EOF.
pub fn peer_echo(mut c: TcpStream) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = c.read(&mut buf).expect("peer read");
            if n == 0 {
                return total;
            }
            c.write_all(&buf[..n]).unwrap();
            total += n;
        }
    })
}
