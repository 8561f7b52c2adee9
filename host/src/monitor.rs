//! The audit thread of a host: at the start of the stack, at every interval and at its end it
//! looks at the stack from outside the plug-in ([`crate::observe`]) and writes what changed to
//! the trail — sockets opened, changing state, their counters, closed; interfaces, addresses,
//! routes and their counters; child processes — and it answers `ioth ps` on the host's status
//! socket ([`ioth_proto::status`]). The serving thread tells it what only requests show: the
//! native fds handed to the application, the proxied sockets' table, the protections.
//!
//! Nothing here runs per packet or in the application: the cost is one sock_diag and one
//! rtnetlink dump per interval (`IOTH_AUDIT_INTERVAL`, milliseconds, default 1000; 0: only at
//! the start and the end), and none at all without a trail.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ioth_proto::Reply;
use serde_json::{json, Value};

use crate::audit::{self, Audit};
use crate::observe::{Iface, Netlink, ProcView, Sock};

mod json;
mod thread;
use json::{bind_status, counters_into, counters_of_iface, iface_json, owner_of, sock_json};

/// The default interval between two looks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// A socket being followed: what was seen last, since when, whose.
struct Seen {
    sock: Sock,
    since: Instant,
    owner: &'static str,
}

/// A proxied socket of the host's table, as its requests show it.
#[derive(Default)]
struct Proxied {
    domain: i64,
    ty: i64,
    local: Option<String>,
    peer: Option<String>,
    state: &'static str,
    since: Option<Instant>,
    /// Payload bytes (sent, received), where the host's pump counted them.
    bytes: Option<(u64, u64)>,
}

/// What the audit thread and the serving thread share.
struct State {
    proc: ProcView,
    /// Inodes of the native sockets handed to the application.
    handed: HashSet<u64>,
    /// Inodes of the application's ends of proxied sockets, with their ids.
    proxied_inodes: BTreeMap<u64, u64>,
    socks: BTreeMap<u64, Seen>,
    ifs: BTreeMap<u32, Iface>,
    routes: Vec<String>,
    /// The host's child processes, with the program each runs (once it is known).
    children: BTreeMap<u32, Option<String>>,
    proxied: BTreeMap<u64, Proxied>,
    protections: Value,
    requests: u64,
    /// System calls the sandbox refused (and the trail recorded).
    refusals: u64,
    /// The stack is ending: no more looks start.
    ended: bool,
    /// The last look and the `stop` event are written: nothing more is.
    stopped: bool,
}

/// What one look's dumps returned (`None`: could not be dumped).
struct Snapshot {
    kernel: Option<BTreeMap<u64, Sock>>,
    stack: Option<BTreeMap<u64, Sock>>,
    ifs: Option<(BTreeMap<u32, Iface>, Vec<String>)>,
}

/// The facts of the stack that never change.
struct Info {
    plugin: String,
    vnls: Vec<String>,
    /// `native`, `fd-data` or `host-pump`.
    data_path: &'static str,
    /// Whether the host's network namespace is its own (vdestack) or shared with its
    /// application (kernel: then only the sockets known to be the stack's are followed).
    own_netns: bool,
    interval: Option<Duration>,
    audit_path: Option<PathBuf>,
    started: Instant,
}

struct Shared {
    audit: Option<Arc<Mutex<Audit>>>,
    info: Info,
    state: Mutex<State>,
    /// Where the dumps go. Locked for a whole look (dumps, then the state to diff them), so
    /// that looks apply in order; the state alone is locked only while they are compared, so
    /// that the serving thread never waits for a dump.
    nl: Mutex<Netlink>,
    /// The pipe of refused system calls ([`crate::sigsys`]), once the sandbox made it.
    refused: std::sync::OnceLock<std::os::fd::OwnedFd>,
    /// Held while records drained from that pipe become events, so that the end of the stack
    /// waits for a batch the audit thread is writing (its `stop` counts them all).
    refusing: Mutex<()>,
}

/// The monitor of one stack (see the module doc).
pub struct Monitor {
    shared: Arc<Shared>,
    listener: Option<UnixListener>,
    status_path: Option<PathBuf>,
}

/// The interval: the stack's own (`NewStack`'s `audit_interval_ms`), else
/// `IOTH_AUDIT_INTERVAL` (ms; 0 = none), else [`DEFAULT_INTERVAL`].
fn interval(own: Option<u64>) -> Option<Duration> {
    let env = || {
        std::env::var("IOTH_AUDIT_INTERVAL")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    };
    match own.or_else(env) {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms.max(10))),
        None => Some(DEFAULT_INTERVAL),
    }
}

/// The network namespace (inode) of this process's parent, the application, read once per
/// process: the fork server, whose parent is the application its hosts are forked for
/// (`CLONE_PARENT`), reads it before its first fork ([`prepare`]).
fn parent_netns() -> Option<u64> {
    static NS: OnceLock<Option<u64>> = OnceLock::new();
    *NS.get_or_init(|| {
        let parent = std::os::unix::process::parent_id();
        std::fs::metadata(format!("/proc/{parent}/ns/net"))
            .map(|m| m.ino())
            .ok()
    })
}

/// Looks up what every host's monitor uses and does not depend on its plug-in (the status
/// directory, the application's network namespace), so that the fork server does it once for
/// all the hosts it forks.
pub fn prepare() {
    let _ = json::status_dir();
    let _ = parent_netns();
}

fn same_netns_as_parent() -> bool {
    let me = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino());
    match (me, parent_netns()) {
        (Ok(a), Some(b)) => a == b,
        // Unknown: follow only the sockets known to be the stack's.
        _ => true,
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: &str, body: Value) {
        if let Some(a) = &self.audit {
            a.lock()
                .unwrap_or_else(|e| e.into_inner())
                .event(audit::now(), event, body);
        }
    }

    /// What the dumps show now (no lock of the state held: they take milliseconds).
    fn fetch(&self, nl: &Netlink) -> Snapshot {
        let native = self.info.data_path == "native";
        // A proxied stack's own inet sockets in the host's namespace are the kernel's.
        let kernel = Netlink::Kernel.sockets().ok();
        let (stack, ifs) = if native {
            (None, Netlink::Kernel.interfaces().ok())
        } else {
            (nl.sockets().ok(), nl.interfaces().ok())
        };
        Snapshot { kernel, stack, ifs }
    }

    /// The stack's sockets in `snap`: in a shared namespace, those it handed out, its own, and
    /// the connections accepted on a listener of those; of a proxied stack, those the stack
    /// lists and the plug-in's own kernel sockets. `None`: nothing could be dumped.
    fn stack_sockets(
        &self,
        st: &State,
        own: &HashSet<u64>,
        snap: &mut Snapshot,
    ) -> Option<BTreeMap<u64, Sock>> {
        let native = self.info.data_path == "native";
        let kernel = snap.kernel.take();
        if !native {
            let mut now: BTreeMap<u64, Sock> = kernel
                .unwrap_or_default()
                .into_iter()
                .filter(|(i, _)| own.contains(i))
                .collect();
            now.extend(snap.stack.take()?);
            return Some(now);
        }
        let all = kernel?;
        if self.info.own_netns {
            return Some(all);
        }
        let listeners: HashSet<_> = all
            .values()
            .filter(|s| {
                s.state == "LISTEN" && (st.handed.contains(&s.inode) || own.contains(&s.inode))
            })
            .map(|s| (s.local, s.tcp))
            .collect();
        Some(
            all.into_iter()
                .filter(|(i, s)| {
                    st.handed.contains(i)
                        || own.contains(i)
                        || listeners.contains(&(s.local, s.tcp))
                })
                .collect(),
        )
    }

    /// One look: the differences since the last one become events; `counters` also writes the
    /// counters that changed. Looks are serialised by the netlink lock; the state is locked
    /// only to compare.
    fn look(&self, counters: bool) {
        let nl = self.nl.lock().unwrap_or_else(|e| e.into_inner());
        let mut snap = self.fetch(&nl);
        let mut st = self.lock();
        if st.stopped {
            return;
        }
        self.apply(&mut st, &mut snap, counters);
    }

    fn apply(&self, st: &mut State, snap: &mut Snapshot, counters: bool) {
        let own: HashSet<u64> = st.proc.socket_inodes().into_iter().collect();
        if let Some(now) = self.stack_sockets(st, &own, snap) {
            let gone: Vec<u64> = st
                .socks
                .keys()
                .filter(|i| !now.contains_key(i))
                .copied()
                .collect();
            for i in gone {
                if let Some(seen) = st.socks.remove(&i) {
                    let mut v = sock_json(&seen.sock, &st.proxied_inodes);
                    if let Value::Object(o) = &mut v {
                        o.insert("owner".into(), json!(seen.owner));
                        o.insert(
                            "lifetime_ms".into(),
                            json!(seen.since.elapsed().as_millis() as u64),
                        );
                    }
                    self.emit("socket_close", v);
                }
            }
            for (i, s) in now {
                match st.socks.get_mut(&i) {
                    None => {
                        let owner = owner_of(st, &own, i);
                        let mut v = sock_json(&s, &st.proxied_inodes);
                        if let Value::Object(o) = &mut v {
                            o.insert("owner".into(), json!(owner));
                        }
                        self.emit("socket_open", v);
                        st.socks.insert(
                            i,
                            Seen {
                                sock: s,
                                since: Instant::now(),
                                owner,
                            },
                        );
                    }
                    Some(seen) => {
                        let changed_state = seen.sock.state != s.state || seen.sock.peer != s.peer;
                        let changed_counters = seen.sock.counters != s.counters;
                        if changed_state {
                            let mut v = sock_json(&s, &st.proxied_inodes);
                            if let Value::Object(o) = &mut v {
                                o.insert("previous".into(), json!(seen.sock.state));
                            }
                            self.emit("socket_state", v);
                            seen.sock = s;
                        } else if changed_counters && counters {
                            let mut o = serde_json::Map::new();
                            o.insert("inode".into(), json!(i));
                            if let Some(id) = st.proxied_inodes.get(&i) {
                                o.insert("id".into(), json!(id));
                            }
                            if let Some(c) = s.counters {
                                counters_into(&mut o, c);
                            }
                            self.emit("socket_stats", Value::Object(o));
                            seen.sock = s;
                        }
                    }
                }
            }
        }
        if let Some((ifs, routes)) = snap.ifs.take() {
            for (i, f) in &ifs {
                let before = st.ifs.get(i);
                let same = before.is_some_and(|b| {
                    (&b.name, b.up, b.mtu, &b.mac, &b.addresses)
                        == (&f.name, f.up, f.mtu, &f.mac, &f.addresses)
                });
                if !same {
                    self.emit("interface", iface_json(f, false));
                }
                if (counters || before.is_none()) && before.is_none_or(|b| b.counters != f.counters)
                {
                    let mut o = serde_json::Map::new();
                    o.insert("index".into(), json!(f.index));
                    o.insert("name".into(), json!(f.name));
                    counters_of_iface(&mut o, f);
                    self.emit("interface_stats", Value::Object(o));
                } else if let Some(b) = before {
                    // Counters not written this time stay those last written.
                    let keep = b.counters;
                    let mut f2 = f.clone();
                    f2.counters = keep;
                    st.ifs.insert(*i, f2);
                    continue;
                }
                st.ifs.insert(*i, f.clone());
            }
            let gone: Vec<u32> = st
                .ifs
                .keys()
                .filter(|i| !ifs.contains_key(i))
                .copied()
                .collect();
            for i in gone {
                if let Some(f) = st.ifs.remove(&i) {
                    self.emit("interface_gone", json!({"index": i, "name": f.name}));
                }
            }
            if routes != st.routes {
                self.emit("routes", json!({ "routes": routes }));
                st.routes = routes.clone();
            }
        }
        let mut kids = st.proc.programs();
        for (p, program) in kids.iter_mut() {
            match st.children.get(p) {
                None => self.emit("process_start", json!({ "child": p, "program": program })),
                // No longer readable (it ran a setuid program): still the last one seen.
                Some(before) if program.is_none() => program.clone_from(before),
                // It ran a program since the last look (or another one).
                Some(before) if program != before => {
                    self.emit("process_exec", json!({ "child": p, "program": program }))
                }
                Some(_) => {}
            }
        }
        for p in st.children.keys().filter(|p| !kids.contains_key(p)) {
            self.emit("process_end", json!({ "child": p }));
        }
        st.children = kids;
    }

    /// The host's status, for `ioth ps`.
    fn status(&self) -> Value {
        let nl = self.nl.lock().unwrap_or_else(|e| e.into_inner());
        let mut snap = self.fetch(&nl);
        let mut st = self.lock();
        let own: HashSet<u64> = st.proc.socket_inodes().into_iter().collect();
        let sockets: Vec<Value> = self
            .stack_sockets(&st, &own, &mut snap)
            .unwrap_or_default()
            .values()
            .map(|s| {
                let mut v = sock_json(s, &st.proxied_inodes);
                if let Value::Object(o) = &mut v {
                    o.insert("owner".into(), json!(owner_of(&st, &own, s.inode)));
                }
                v
            })
            .collect();
        let interfaces: Value = match snap.ifs.take() {
            Some((ifs, _)) => ifs.values().map(|i| iface_json(i, true)).collect(),
            None => Value::Null,
        };
        let proxied: Vec<Value> = st
            .proxied
            .iter()
            .map(|(id, p)| {
                json!({"id": id, "domain": p.domain, "type": p.ty, "local": p.local,
                       "peer": p.peer, "state": p.state})
            })
            .collect();
        let kids = st.proc.programs();
        json!({
            "schema": audit::SCHEMA,
            "pid": std::process::id(),
            "plugin": self.info.plugin,
            "vnls": self.info.vnls,
            "data_path": self.info.data_path,
            "netns": if self.info.own_netns { "own" } else { "shared" },
            "uptime_ms": self.info.started.elapsed().as_millis() as u64,
            "requests": st.requests,
            "refused": st.refusals,
            "protections": st.protections,
            "audit": self.info.audit_path.as_ref().map(|p| p.display().to_string()),
            "interfaces": interfaces,
            "sockets": sockets,
            "proxied": proxied,
            "children": kids.keys().collect::<Vec<_>>(),
            "programs": kids.iter().map(|(p, e)| json!({"pid": p, "program": e})).collect::<Vec<_>>(),
        })
    }
}

impl Monitor {
    /// The monitor of the stack just loaded; runs before the sandbox (it opens what it will
    /// need: `/proc/self` views, the status socket). `nl`: where its dumps go; `interval_ms`:
    /// the stack's own audit interval. Writes the `stack` event.
    pub fn new(
        audit: Option<Arc<Mutex<Audit>>>,
        plugin: &str,
        vnls: &[String],
        data_path: &'static str,
        nl: Netlink,
        interval_ms: Option<u64>,
    ) -> Monitor {
        let (listener, status_path) = match bind_status() {
            Some((l, p)) => (Some(l), Some(p)),
            None => (None, None),
        };
        let audit_path = audit.as_ref().map(|a| {
            a.lock()
                .unwrap_or_else(|e| e.into_inner())
                .path()
                .to_path_buf()
        });
        let info = Info {
            plugin: plugin.to_owned(),
            vnls: vnls.to_vec(),
            data_path,
            own_netns: !same_netns_as_parent(),
            interval: interval(interval_ms),
            audit_path,
            started: Instant::now(),
        };
        let state = State {
            proc: ProcView::open(),
            handed: HashSet::new(),
            proxied_inodes: BTreeMap::new(),
            socks: BTreeMap::new(),
            ifs: BTreeMap::new(),
            routes: Vec::new(),
            children: BTreeMap::new(),
            proxied: BTreeMap::new(),
            protections: Value::Null,
            // The Hello before the NewStack that creates the monitor.
            requests: 1,
            refusals: 0,
            ended: false,
            stopped: false,
        };
        let observed = match &nl {
            Netlink::Kernel => "kernel",
            Netlink::Plugin {
                diag: Some(_),
                route: Some(_),
            } => "plugin",
            Netlink::Plugin { .. } => "requests",
        };
        let shared = Arc::new(Shared {
            audit,
            info,
            state: Mutex::new(state),
            nl: Mutex::new(nl),
            refused: std::sync::OnceLock::new(),
            refusing: Mutex::new(()),
        });
        shared.emit(
            "stack",
            json!({
                "vnls": shared.info.vnls,
                "data_path": data_path,
                "netns": if shared.info.own_netns { "own" } else { "shared" },
                "interval_ms": shared.info.interval.map(|d| d.as_millis() as u64),
                "observed": observed,
                "status": status_path.as_ref().map(|p| p.display().to_string()),
            }),
        );
        Monitor {
            shared,
            listener,
            status_path,
        }
    }

    /// The directory of the status socket, if there is one.
    pub fn status_dir(&self) -> Option<PathBuf> {
        self.status_path
            .as_ref()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
    }

    /// Notes the protections in force, the plug-in's declared relaxations and the limits
    /// (the `protections` event).
    pub fn protections(&self, in_force: u32, note: &str, relax: Value, limits: Value) {
        let v = json!({
            "in_force": audit::protection_names(in_force),
            "note": note,
            "declared": relax,
            "limits": limits,
        });
        self.shared.lock().protections = v.clone();
        self.shared.emit("protections", v);
    }

    /// A socket handed to the application: the inode of a native one, or of the application's
    /// end of proxied socket `id`.
    pub fn handed(&self, inode: u64, proxied: Option<u64>) {
        let mut st = self.shared.lock();
        match proxied {
            None => {
                st.handed.insert(inode);
            }
            Some(id) => {
                st.proxied_inodes.insert(inode, id);
            }
        }
    }

    /// A request served: keeps the proxied table (`args` as the trail has them).
    pub fn served(&self, request: &str, args: &Value, reply: &Reply) {
        let mut st = self.shared.lock();
        st.requests += 1;
        let ok = !matches!(reply, Reply::Error(_));
        let id = args.get("id").and_then(Value::as_u64);
        match (request, reply) {
            (
                "Socket",
                Reply::Socket {
                    kind: ioth_proto::FdKind::Proxied { id },
                },
            ) => {
                st.proxied.insert(
                    *id,
                    Proxied {
                        domain: args["domain"].as_i64().unwrap_or(0),
                        ty: args["type"].as_i64().unwrap_or(0),
                        state: "open",
                        since: Some(Instant::now()),
                        ..Proxied::default()
                    },
                );
            }
            ("Control", Reply::Accepted { id: new, peer }) => {
                let from = id.and_then(|i| st.proxied.get(&i));
                let p = Proxied {
                    domain: from.map_or(0, |f| f.domain),
                    ty: from.map_or(0, |f| f.ty),
                    local: from.and_then(|f| f.local.clone()),
                    peer: Some(audit::sockaddr_text(peer)),
                    state: "connected",
                    since: Some(Instant::now()),
                    bytes: None,
                };
                st.proxied.insert(*new, p);
            }
            ("Control", _) => {
                let addr = args.get("addr").and_then(Value::as_str).map(str::to_owned);
                let op = args.get("op").and_then(Value::as_str).unwrap_or("");
                let in_progress = matches!(reply, Reply::Error(e) if e.errno == libc::EINPROGRESS);
                if let Some(p) = id.and_then(|i| st.proxied.get_mut(&i)) {
                    match op {
                        "bind" if ok => p.local = addr,
                        "connect" if ok || in_progress => {
                            p.peer = addr;
                            p.state = "connected";
                        }
                        "listen" if ok => p.state = "listening",
                        _ => {}
                    }
                }
            }
            ("Close", _) if ok => {
                if let Some(i) = id {
                    if let Some(p) = st.proxied.remove(&i) {
                        // The host pump's count, else the counters of the last look, if the
                        // stack lists its sockets.
                        let bytes = p
                            .bytes
                            .or_else(|| {
                                st.proxied_inodes
                                    .iter()
                                    .find(|(_, id)| **id == i)
                                    .and_then(|(inode, _)| st.socks.get(inode))
                                    .and_then(|s| s.sock.counters)
                                    .map(|c| (c.sent, c.received))
                            })
                            .map(|(sent, received)| json!({"sent": sent, "received": received}));
                        drop(st);
                        self.shared.emit(
                            "proxied_close",
                            json!({"id": i, "local": p.local, "peer": p.peer, "state": p.state,
                                   "lifetime_ms": p.since.map(|s| s.elapsed().as_millis() as u64),
                                   "bytes": bytes}),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// The bytes the host's pump moved for proxied socket `id`, noted before its `Close`.
    pub fn proxied_bytes(&self, id: u64, sent: u64, received: u64) {
        if let Some(p) = self.shared.lock().proxied.get_mut(&id) {
            p.bytes = Some((sent, received));
        }
    }

    /// Starts the audit thread (after the sandbox: it inherits it). With `watch`, a duplicate
    /// of the channel, it is also the host's watchdog ([`crate::watchdog`]) for as long as the
    /// process lives. Without a trail, a status socket or `watch` there is nothing to do and no
    /// thread.
    pub fn start(&mut self, watch: Option<OwnedFd>) -> std::io::Result<()> {
        let listener = self.listener.take();
        if let Some(r) = crate::sigsys::reader() {
            let _ = self.shared.refused.set(r);
        }
        if self.shared.audit.is_none() && listener.is_none() && watch.is_none() {
            return Ok(());
        }
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("ioth-audit".into())
            .stack_size(256 * 1024)
            .spawn(move || thread::run(shared, listener, watch))
            .map(drop)
    }

    /// The plug-in is about to delete its stack: a proxied stack's last look at itself (it
    /// cannot answer once deleted; the look at [`Monitor::finish`] then sees the kernel only).
    pub fn before_delstack(&self) {
        let s = &self.shared;
        if s.info.data_path == "native" {
            return;
        }
        if s.audit.is_some() {
            s.look(true);
        }
        *s.nl.lock().unwrap_or_else(|e| e.into_inner()) = Netlink::Plugin {
            diag: None,
            route: None,
        };
    }

    /// The stack ends (`DelStack`, or the application went away): a last look, the `stop`
    /// event, the status socket removed.
    pub fn finish(&self, why: &str) {
        let s = &self.shared;
        {
            let mut st = s.lock();
            if st.ended {
                return;
            }
            st.ended = true;
        }
        // What the audit thread has not read yet.
        if let Some(r) = s.refused.get() {
            thread::refusals(s, r);
        }
        if s.audit.is_some() {
            s.look(true);
            let mut st = s.lock();
            st.stopped = true;
            let open: Vec<u64> = st.socks.keys().copied().collect();
            let requests = st.requests;
            let refused = st.refusals;
            drop(st);
            s.emit(
                "stop",
                json!({"why": why, "requests": requests, "refused": refused,
                       "lifetime_ms": s.info.started.elapsed().as_millis() as u64,
                       "sockets_open": open}),
            );
        }
        if let Some(p) = &self.status_path {
            let _ = std::fs::remove_file(p);
        }
    }
}
