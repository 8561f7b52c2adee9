//! The audit trail: JSON lines, one per event, written by the host process only (schema
//! [`SCHEMA`], docs/audit.md).
//!
//! The host opens the file itself (path from `NewStack`), so the lines come from the process that
//! served the requests, not from the application's code. Each line is written with one `write(2)`
//! on an `O_APPEND` file, unbuffered: a crash loses nothing already written. A request during
//! which the host died has no line. Lines come from two threads — the serving thread (requests)
//! and the audit thread ([`crate::monitor`]: sockets, interfaces, processes) — under one lock, so
//! `seq` grows by one per line of a host.
//!
//! Every line starts with the same keys, in this order: `seq`, `time`, `unix_us`, `pid`,
//! `plugin`, `event`; the first line of a host is its `trail` event, which carries `schema`.
//! A request line then has `request`, `args`, `result` (`ok`, or `error` with `errno`, `errname`,
//! `message`), what the reply adds (`fd_kind`, `id`, `peer`, a `Sockets` reply's `fds`), and
//! `duration_us`:
//!
//! ```text
//! {"seq":3,"time":"2025-01-31T12:00:00.123456Z","unix_us":1738324800123456,"pid":4242,
//!  "plugin":"kernel","event":"request","request":"Socket","args":{"domain":2,"type":1,
//!  "protocol":0},"result":"ok","fd_kind":"native","duration_us":17}
//! ```
//!
//! JSON is made by serde_json (with `preserve_order`, so keys keep the order they are inserted
//! in); a `Control` request's option value is never written, only its length (it may carry a
//! secret, e.g. a `TCP_MD5SIG` key).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ioth_proto::{ControlOp, FdKind, Limits, Reply, Request, WireError};
use serde_json::{json, Map, Value};

use crate::error::HostError;

/// The version of the trail's schema (docs/audit.md). 1 was the request-only trail without an
/// `event` key; 2 adds `event` to every line and the events of the audit thread; 3 the counters
/// and interfaces of proxied stacks (their socket events carry the `id` of the requests, a
/// `packets_*` counter may be null), `proxied_close` bytes, refused system calls and `exec`.
pub const SCHEMA: u32 = 3;

/// An open audit trail.
pub struct Audit {
    file: File,
    path: PathBuf,
    plugin: String,
    seq: u64,
    /// The host's protections, for the `NewStack` line (`"sandbox":{…}`).
    sandbox: Option<Value>,
}

/// `t` as RFC 3339 UTC with microseconds, e.g. `2025-01-31T12:00:00.123456Z`.
pub fn rfc3339(t: Duration) -> String {
    let secs = t.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        t.subsec_micros()
    )
}

/// The symbolic name of an errno (`"EMFILE"`), or `"E?"` for one the C library does not name.
pub fn errname(errno: i32) -> String {
    let e = nix::errno::Errno::from_raw(errno);
    if e == nix::errno::Errno::UnknownErrno {
        "E?".into()
    } else {
        // Errno's Debug form is its symbolic name.
        format!("{e:?}")
    }
}

/// The arguments of `req` as a JSON object.
pub fn args_json(req: &Request) -> Value {
    match req {
        Request::Hello { version } => json!({ "version": version }),
        Request::NewStack {
            plugin,
            options,
            vnls,
            search_path,
            app_license,
            limits,
            audit,
            audit_interval_ms,
        } => json!({
            "plugin": plugin,
            "options": options,
            "vnls": vnls,
            "search_path": search_path,
            "app_license": app_license,
            "limits": limits_json(limits),
            "audit": audit,
            "audit_interval_ms": audit_interval_ms,
        }),
        Request::Socket {
            domain,
            ty,
            protocol,
        } => json!({ "domain": domain, "type": ty, "protocol": protocol }),
        Request::Sockets {
            domain,
            ty,
            protocol,
            count,
        } => json!({ "domain": domain, "type": ty, "protocol": protocol, "count": count }),
        Request::Stats | Request::DelStack => json!({}),
        Request::Control { id, op } => {
            let mut o = Map::new();
            o.insert("id".into(), json!(id));
            o.insert("op".into(), json!(op.name()));
            match op {
                ControlOp::Bind(a) | ControlOp::Connect(a) => {
                    o.insert("addr".into(), json!(sockaddr_text(a)));
                }
                ControlOp::Listen(backlog) => {
                    o.insert("backlog".into(), json!(backlog));
                }
                // The value's length only: an option may carry a secret (TCP_MD5SIG keys).
                ControlOp::SetSockOpt { level, name, value } => {
                    o.insert("level".into(), json!(level));
                    o.insert("name".into(), json!(name));
                    o.insert("len".into(), json!(value.len()));
                }
                ControlOp::GetSockOpt { level, name, len } => {
                    o.insert("level".into(), json!(level));
                    o.insert("name".into(), json!(name));
                    o.insert("len".into(), json!(len));
                }
                ControlOp::Shutdown(how) => {
                    o.insert("how".into(), json!(how));
                }
                ControlOp::Accept | ControlOp::GetSockName | ControlOp::GetPeerName => {}
            }
            Value::Object(o)
        }
        Request::Close { id } => json!({ "id": id }),
        Request::Namespace { kind } => json!({ "kind": kind.name() }),
    }
}

/// The `sockaddr` bytes `a` in words: `10.0.0.1:80`, `[fd00::1]:80`, `AF_UNSPEC`, or the family
/// and length of anything else.
pub fn sockaddr_text(a: &[u8]) -> String {
    use std::net::{Ipv4Addr, Ipv6Addr};
    if a.len() < 2 {
        return format!("{} bytes", a.len());
    }
    let fam = i32::from(u16::from_ne_bytes([a[0], a[1]]));
    let port = |a: &[u8]| u16::from_be_bytes([a[2], a[3]]);
    match fam {
        libc::AF_INET if a.len() >= 16 => {
            format!("{}:{}", Ipv4Addr::new(a[4], a[5], a[6], a[7]), port(a))
        }
        libc::AF_INET6 if a.len() >= 24 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&a[8..24]);
            format!("[{}]:{}", Ipv6Addr::from(o), port(a))
        }
        libc::AF_UNSPEC => "AF_UNSPEC".into(),
        f => format!("family {f}, {} bytes", a.len()),
    }
}

/// The limits of a stack as a JSON object (`null` for a limit not set).
pub fn limits_json(l: &Limits) -> Value {
    json!({
        "address_space": l.address_space,
        "open_files": l.open_files,
        "cpu_seconds": l.cpu_seconds,
        "core_size": l.core_size,
    })
}

/// The keys every line starts with, in their order, for event `event` of host `pid`.
pub fn head(seq: u64, at: Duration, pid: u32, plugin: &str, event: &str) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("seq".into(), json!(seq));
    o.insert("time".into(), json!(rfc3339(at)));
    o.insert("unix_us".into(), json!(at.as_micros() as u64));
    o.insert("pid".into(), json!(pid));
    o.insert("plugin".into(), json!(plugin));
    o.insert("event".into(), json!(event));
    o
}

/// The keys a reply adds to its request's line: `result` and what comes with it.
pub fn reply_fields(o: &mut Map<String, Value>, reply: &Reply) {
    match reply {
        Reply::Error(WireError { errno, message, .. }) => {
            o.insert("result".into(), json!("error"));
            o.insert("errno".into(), json!(errno));
            o.insert("errname".into(), json!(errname(*errno)));
            o.insert("message".into(), json!(message));
        }
        Reply::Socket {
            kind: FdKind::Native,
        } => {
            o.insert("result".into(), json!("ok"));
            o.insert("fd_kind".into(), json!("native"));
        }
        Reply::Socket {
            kind: FdKind::Proxied { id },
        } => {
            o.insert("result".into(), json!("ok"));
            o.insert("fd_kind".into(), json!("proxied"));
            o.insert("id".into(), json!(id));
        }
        Reply::Sockets { count } => {
            o.insert("result".into(), json!("ok"));
            o.insert("fd_kind".into(), json!("native"));
            o.insert("fds".into(), json!(count));
        }
        Reply::Accepted { id, peer } => {
            o.insert("result".into(), json!("ok"));
            o.insert("id".into(), json!(id));
            o.insert("peer".into(), json!(sockaddr_text(peer)));
        }
        _ => {
            o.insert("result".into(), json!("ok"));
        }
    }
}

/// One line (with its trailing newline) from its keys.
pub fn to_line(o: Map<String, Value>) -> String {
    let mut l = Value::Object(o).to_string();
    l.push('\n');
    l
}

/// One request line for a request named `request` with arguments `args`, answered by `reply`,
/// started at `start` (since the epoch) and lasting `took`; `extra` keys go before
/// `duration_us`.
#[allow(clippy::too_many_arguments)]
pub fn line(
    seq: u64,
    start: Duration,
    pid: u32,
    plugin: &str,
    request: &str,
    args: &Value,
    reply: &Reply,
    took: Duration,
    extra: Option<(&str, Value)>,
) -> String {
    let mut o = head(seq, start, pid, plugin, "request");
    o.insert("request".into(), json!(request));
    o.insert("args".into(), args.clone());
    reply_fields(&mut o, reply);
    if let Some((k, v)) = extra {
        o.insert(k.into(), v);
    }
    o.insert("duration_us".into(), json!(took.as_micros() as u64));
    to_line(o)
}

/// Time since the epoch, now.
pub fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Audit {
    /// Opens the trail named by `path` for stack `plugin`: a directory gets
    /// `<plugin>-<pid>.jsonl`, anything else is the file itself (created 0600, appended).
    pub fn open(path: &str, plugin: &str) -> Result<Audit, HostError> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(HostError::Audit {
                errno: libc::EINVAL,
                message: format!("audit path {path:?} is not absolute"),
            });
        }
        let file_path: PathBuf = if p.is_dir() {
            p.join(format!("{plugin}-{}.jsonl", std::process::id()))
        } else {
            p.to_path_buf()
        };
        // O_NONBLOCK: a FIFO without a reader fails at once (ENXIO) instead of blocking the
        // host past the newstack timeout; anything but a regular file is refused below.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(&file_path)
            .map_err(|e| HostError::Audit {
                errno: e.raw_os_error().unwrap_or(libc::EIO),
                message: format!("cannot open audit file {}: {e}", file_path.display()),
            })?;
        let meta = file.metadata().map_err(|e| HostError::Audit {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            message: format!("cannot stat audit file {}: {e}", file_path.display()),
        })?;
        if !meta.is_file() {
            // A FIFO or a device (/dev/full) would block or lose the trail: a trail is a file.
            return Err(HostError::Audit {
                errno: libc::EINVAL,
                message: format!(
                    "audit file {} is not a regular file (a FIFO or a device cannot keep a trail)",
                    file_path.display()
                ),
            });
        }
        Ok(Audit {
            file,
            path: file_path,
            plugin: plugin.to_owned(),
            seq: 0,
            sandbox: None,
        })
    }

    /// The trail's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Notes the host's protections (bits of [`ioth_proto::protections`]) and what is missing,
    /// for the `NewStack` line: `"sandbox":{"in_force":[…],"note":"…"}`.
    pub fn note_sandbox(&mut self, protections: u32, note: &str) {
        self.sandbox = Some(json!({
            "in_force": protection_names(protections),
            "note": note,
        }));
    }

    /// Writes the line of one served request (the `NewStack` one carries the sandbox noted).
    pub fn record(
        &mut self,
        start: Duration,
        request: &str,
        args: &Value,
        reply: &Reply,
        took: Duration,
    ) {
        self.seq += 1;
        let extra = if request == "NewStack" {
            self.sandbox.take().map(|v| ("sandbox", v))
        } else {
            None
        };
        let l = line(
            self.seq,
            start,
            std::process::id(),
            &self.plugin,
            request,
            args,
            reply,
            took,
            extra,
        );
        self.write(&l);
        // What the host can see of the sandbox's refusals: a plug-in call that failed with
        // EPERM or EACCES (seccomp, capabilities, Landlock) and whose errno came back.
        if let Reply::Error(e) = reply {
            if e.errno == libc::EPERM || e.errno == libc::EACCES {
                self.event(
                    start,
                    "refused",
                    json!({"request": request, "args": args, "errno": e.errno,
                           "errname": errname(e.errno), "message": e.message}),
                );
            }
        }
    }

    /// Writes one event of kind `event` at `at` with the keys of `body` (an object).
    pub fn event(&mut self, at: Duration, event: &str, body: Value) {
        self.seq += 1;
        let mut o = head(self.seq, at, std::process::id(), &self.plugin, event);
        if let Value::Object(b) = body {
            o.extend(b);
        }
        let l = to_line(o);
        self.write(&l);
    }

    fn write(&mut self, l: &str) {
        // One write(2) per line on an O_APPEND file: lines of concurrent writers do not mix.
        if let Err(e) = self.file.write_all(l.as_bytes()) {
            eprintln!("ioth-host: audit: {e}");
        }
    }
}

/// The names of the protection bits set in `p` (`ioth_proto::protections::NAMES`).
pub fn protection_names(p: u32) -> Vec<&'static str> {
    ioth_proto::protections::NAMES
        .iter()
        .filter(|(b, _)| p & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let l = line(
            1,
            Duration::ZERO,
            7,
            "a\"b\\c\nd\u{1}e",
            "Socket",
            &json!({}),
            &Reply::Stats(Default::default()),
            Duration::ZERO,
            None,
        );
        assert!(l.contains(r#""plugin":"a\"b\\c\nd\u0001e""#), "{l}");
        assert!(l.ends_with("}\n") && !l[..l.len() - 1].contains('\n'));
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29T23:59:59.5Z (a leap day of a century leap year).
        assert_eq!(
            rfc3339(Duration::from_micros(951_868_799_500_000)),
            "2000-02-29T23:59:59.500000Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(1_735_689_600)),
            "2025-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn lines_have_every_field() {
        let req = Request::Socket {
            domain: 2,
            ty: 1,
            protocol: 0,
        };
        let ok = line(
            1,
            Duration::from_secs(1),
            7,
            "kernel",
            req.name(),
            &args_json(&req),
            &Reply::Socket {
                kind: ioth_proto::FdKind::Native,
            },
            Duration::from_micros(12),
            None,
        );
        assert_eq!(
            ok,
            "{\"seq\":1,\"time\":\"1970-01-01T00:00:01.000000Z\",\"unix_us\":1000000,\"pid\":7,\
             \"plugin\":\"kernel\",\"event\":\"request\",\"request\":\"Socket\",\"args\":{\"domain\":2,\
             \"type\":1,\"protocol\":0},\"result\":\"ok\",\"fd_kind\":\"native\",\"duration_us\":12}\n"
        );
        let err = line(
            2,
            Duration::ZERO,
            7,
            "k",
            "Socket",
            &json!({}),
            &Reply::Error(WireError::os(libc::EMFILE, "socket: \"too many\"")),
            Duration::ZERO,
            None,
        );
        assert!(err.contains(
            "\"result\":\"error\",\"errno\":24,\"errname\":\"EMFILE\",\
             \"message\":\"socket: \\\"too many\\\"\""
        ));
        let ns = Request::NewStack {
            plugin: "x\"y".into(),
            options: String::new(),
            vnls: vec!["vde:///tmp/sw".into()],
            search_path: vec![],
            app_license: None,
            limits: Limits {
                open_files: Some(64),
                ..Limits::default()
            },
            audit: None,
            audit_interval_ms: None,
        };
        let bind = Request::Control {
            id: 7,
            op: ControlOp::Bind(vec![2, 0, 0x13, 0x88, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        };
        assert_eq!(
            args_json(&bind).to_string(),
            "{\"id\":7,\"op\":\"bind\",\"addr\":\"10.0.0.1:5000\"}"
        );
        let opt = Request::Control {
            id: 7,
            op: ControlOp::SetSockOpt {
                level: 6,
                name: 14,
                value: vec![0xaa; 80],
            },
        };
        assert_eq!(
            args_json(&opt).to_string(),
            "{\"id\":7,\"op\":\"setsockopt\",\"level\":6,\"name\":14,\"len\":80}"
        );
        assert_eq!(
            args_json(&Request::Close { id: 9 }).to_string(),
            "{\"id\":9}"
        );
        let prox = line(
            3,
            Duration::ZERO,
            7,
            "smoltcp",
            "Socket",
            &json!({}),
            &Reply::Socket {
                kind: FdKind::Proxied { id: 4 },
            },
            Duration::ZERO,
            None,
        );
        assert!(prox.contains("\"result\":\"ok\",\"fd_kind\":\"proxied\",\"id\":4,"));
        let batch = Request::Sockets {
            domain: 2,
            ty: 1,
            protocol: 0,
            count: 8,
        };
        let many = line(
            5,
            Duration::ZERO,
            7,
            "kernel",
            batch.name(),
            &args_json(&batch),
            &Reply::Sockets { count: 5 },
            Duration::ZERO,
            None,
        );
        assert!(
            many.contains(
                "\"request\":\"Sockets\",\"args\":{\"domain\":2,\"type\":1,\"protocol\":0,\
                 \"count\":8},\"result\":\"ok\",\"fd_kind\":\"native\",\"fds\":5,"
            ),
            "{many}"
        );
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[3] = 80;
        v6[8] = 0xfd;
        v6[23] = 1;
        let acc = line(
            4,
            Duration::ZERO,
            7,
            "smoltcp",
            "Control",
            &json!({}),
            &Reply::Accepted { id: 5, peer: v6 },
            Duration::ZERO,
            Some(("sandbox", json!({"in_force": ["seccomp"]}))),
        );
        assert!(acc.contains("\"id\":5,\"peer\":\"[fd00::1]:80\""));
        assert!(acc.contains(",\"sandbox\":{\"in_force\":[\"seccomp\"]},\"duration_us\":0}"));
        assert_eq!(sockaddr_text(&[0, 0]), "AF_UNSPEC");
        assert_eq!(
            args_json(&ns).to_string(),
            "{\"plugin\":\"x\\\"y\",\"options\":\"\",\"vnls\":[\"vde:///tmp/sw\"],\"search_path\":[],\
             \"app_license\":null,\"limits\":{\"address_space\":null,\"open_files\":64,\
             \"cpu_seconds\":null,\"core_size\":null},\"audit\":null,\"audit_interval_ms\":null}"
        );
    }
}
