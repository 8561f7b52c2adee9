//! The audit trail: one JSON line per request the host served. Runs in the host process only.
//!
//! The host opens the file itself (path from `NewStack`), so the lines come from the process that
//! served the requests, not from the application's code. Each line is written with one `write(2)`
//! on an `O_APPEND` file, unbuffered, the moment its reply has been sent: a crash loses nothing
//! already served. A request during which the host died has no line.
//!
//! Line format (keys in this order, no other whitespace):
//!
//! ```text
//! {"seq":3,"time":"2025-01-31T12:00:00.123456Z","unix_us":1738324800123456,"pid":4242,
//!  "plugin":"kernel","request":"Socket","args":{"domain":2,"type":1,"protocol":0},
//!  "result":"ok","duration_us":17}
//! ```
//!
//! A failed request has `"result":"error","errno":24,"errname":"EMFILE","message":"…"`; a
//! successful `Socket` adds `"fd_kind":"native"`, or `"fd_kind":"proxied","id":7`; an
//! `Accepted` adds `"id":8,"peer":"10.0.0.2:40000"`. A `Control` request's args are
//! `{"id":7,"op":"bind","addr":"10.0.0.1:80"}` (`backlog`, `level`/`name`/`len` — an option's
//! length, never its value — or `how`, as the call has them); a `Close`'s `{"id":7}`. Strings are escaped as JSON requires (`"`, `\`,
//! control characters as `\u00XX`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ioth_proto::{ControlOp, FdKind, Limits, Reply, Request, WireError};

use crate::error::HostError;

/// An open audit trail.
pub struct Audit {
    file: File,
    plugin: String,
    seq: u64,
    /// The host's protections, for the `NewStack` line (`"sandbox":{…}`).
    sandbox: Option<String>,
}

/// Appends `s` to `out` as a JSON string literal.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

fn json_opt_u64(out: &mut String, v: Option<u64>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

fn json_str_array(out: &mut String, v: &[String]) {
    out.push('[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, s);
    }
    out.push(']');
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
pub fn args_json(req: &Request) -> String {
    let mut o = String::from("{");
    match req {
        Request::Hello { version } => {
            let _ = write!(o, "\"version\":{version}");
        }
        Request::NewStack {
            plugin,
            options,
            vnls,
            search_path,
            app_license,
            limits,
            audit,
        } => {
            o.push_str("\"plugin\":");
            json_str(&mut o, plugin);
            o.push_str(",\"options\":");
            json_str(&mut o, options);
            o.push_str(",\"vnls\":");
            json_str_array(&mut o, vnls);
            o.push_str(",\"search_path\":");
            json_str_array(&mut o, search_path);
            o.push_str(",\"app_license\":");
            json_opt_str(&mut o, app_license.as_deref());
            o.push_str(",\"limits\":");
            limits_json(&mut o, limits);
            o.push_str(",\"audit\":");
            json_opt_str(&mut o, audit.as_deref());
        }
        Request::Socket {
            domain,
            ty,
            protocol,
        } => {
            let _ = write!(
                o,
                "\"domain\":{domain},\"type\":{ty},\"protocol\":{protocol}"
            );
        }
        Request::Stats | Request::DelStack => {}
        Request::Control { id, op } => {
            let _ = write!(o, "\"id\":{id},\"op\":\"{}\"", op.name());
            match op {
                ControlOp::Bind(a) | ControlOp::Connect(a) => {
                    o.push_str(",\"addr\":");
                    json_str(&mut o, &sockaddr_text(a));
                }
                ControlOp::Listen(backlog) => {
                    let _ = write!(o, ",\"backlog\":{backlog}");
                }
                // The value's length only: an option may carry a secret (TCP_MD5SIG keys).
                ControlOp::SetSockOpt { level, name, value } => {
                    let _ = write!(
                        o,
                        ",\"level\":{level},\"name\":{name},\"len\":{}",
                        value.len()
                    );
                }
                ControlOp::GetSockOpt { level, name, len } => {
                    let _ = write!(o, ",\"level\":{level},\"name\":{name},\"len\":{len}");
                }
                ControlOp::Shutdown(how) => {
                    let _ = write!(o, ",\"how\":{how}");
                }
                ControlOp::Accept | ControlOp::GetSockName | ControlOp::GetPeerName => {}
            }
        }
        Request::Close { id } => {
            let _ = write!(o, "\"id\":{id}");
        }
        Request::Namespace { kind } => {
            let _ = write!(o, "\"kind\":\"{}\"", kind.name());
        }
    }
    o.push('}');
    o
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

fn limits_json(o: &mut String, l: &Limits) {
    o.push_str("{\"address_space\":");
    json_opt_u64(o, l.address_space);
    o.push_str(",\"open_files\":");
    json_opt_u64(o, l.open_files);
    o.push_str(",\"cpu_seconds\":");
    json_opt_u64(o, l.cpu_seconds);
    o.push_str(",\"core_size\":");
    json_opt_u64(o, l.core_size);
    o.push('}');
}

/// One audit line (with its trailing newline) for a request named `request` with arguments
/// `args` (a JSON object), answered by `reply`, started at `start` (since the epoch) and lasting
/// `took`.
#[allow(clippy::too_many_arguments)]
pub fn line(
    seq: u64,
    start: Duration,
    pid: u32,
    plugin: &str,
    request: &str,
    args: &str,
    reply: &Reply,
    took: Duration,
) -> String {
    let mut o = String::with_capacity(256);
    let _ = write!(o, "{{\"seq\":{seq},\"time\":\"{}\"", rfc3339(start));
    let _ = write!(
        o,
        ",\"unix_us\":{},\"pid\":{pid},\"plugin\":",
        start.as_micros()
    );
    json_str(&mut o, plugin);
    o.push_str(",\"request\":");
    json_str(&mut o, request);
    o.push_str(",\"args\":");
    o.push_str(args);
    match reply {
        Reply::Error(WireError { errno, message, .. }) => {
            let _ = write!(
                o,
                ",\"result\":\"error\",\"errno\":{errno},\"errname\":\"{}\",\"message\":",
                errname(*errno)
            );
            json_str(&mut o, message);
        }
        Reply::Socket {
            kind: FdKind::Native,
        } => o.push_str(",\"result\":\"ok\",\"fd_kind\":\"native\""),
        Reply::Socket {
            kind: FdKind::Proxied { id },
        } => {
            let _ = write!(o, ",\"result\":\"ok\",\"fd_kind\":\"proxied\",\"id\":{id}");
        }
        Reply::Accepted { id, peer } => {
            let _ = write!(o, ",\"result\":\"ok\",\"id\":{id},\"peer\":");
            json_str(&mut o, &sockaddr_text(peer));
        }
        _ => o.push_str(",\"result\":\"ok\""),
    }
    let _ = writeln!(o, ",\"duration_us\":{}}}", took.as_micros());
    o
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
            plugin: plugin.to_owned(),
            seq: 0,
            sandbox: None,
        })
    }

    /// Notes the host's protections (bits of [`ioth_proto::protections`]) and what is missing,
    /// for the `NewStack` line: `"sandbox":{"in_force":[…],"note":"…"}`.
    pub fn note_sandbox(&mut self, protections: u32, note: &str) {
        let mut o = String::from("\"sandbox\":{\"in_force\":[");
        let names: Vec<String> = ioth_proto::protections::NAMES
            .iter()
            .filter(|(b, _)| protections & b != 0)
            .map(|(_, n)| format!("\"{n}\""))
            .collect();
        o.push_str(&names.join(","));
        o.push_str("],\"note\":");
        json_str(&mut o, note);
        o.push('}');
        self.sandbox = Some(o);
    }

    /// Writes the line of one served request.
    pub fn record(
        &mut self,
        start: Duration,
        request: &str,
        args: &str,
        reply: &Reply,
        took: Duration,
    ) {
        self.seq += 1;
        let l = line(
            self.seq,
            start,
            std::process::id(),
            &self.plugin,
            request,
            args,
            reply,
            took,
        );
        let l = match (request, self.sandbox.take()) {
            ("NewStack", Some(sb)) => match l.rfind(",\"duration_us\"") {
                Some(at) => format!("{},{sb}{}", &l[..at], &l[at..]),
                None => l,
            },
            (_, sb) => {
                self.sandbox = sb;
                l
            }
        };
        // One write(2) per line on an O_APPEND file: lines of concurrent writers do not mix.
        if let Err(e) = self.file.write_all(l.as_bytes()) {
            eprintln!("ioth-host: audit: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\nd\u{1}e\u{7f}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001e\u007fé""#);
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
        );
        assert_eq!(
            ok,
            "{\"seq\":1,\"time\":\"1970-01-01T00:00:01.000000Z\",\"unix_us\":1000000,\"pid\":7,\
             \"plugin\":\"kernel\",\"request\":\"Socket\",\"args\":{\"domain\":2,\"type\":1,\
             \"protocol\":0},\"result\":\"ok\",\"fd_kind\":\"native\",\"duration_us\":12}\n"
        );
        let err = line(
            2,
            Duration::ZERO,
            7,
            "k",
            "Socket",
            "{}",
            &Reply::Error(WireError::os(libc::EMFILE, "socket: \"too many\"")),
            Duration::ZERO,
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
        };
        let bind = Request::Control {
            id: 7,
            op: ControlOp::Bind(vec![2, 0, 0x13, 0x88, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        };
        assert_eq!(
            args_json(&bind),
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
            args_json(&opt),
            "{\"id\":7,\"op\":\"setsockopt\",\"level\":6,\"name\":14,\"len\":80}"
        );
        assert_eq!(args_json(&Request::Close { id: 9 }), "{\"id\":9}");
        let prox = line(
            3,
            Duration::ZERO,
            7,
            "smoltcp",
            "Socket",
            "{}",
            &Reply::Socket {
                kind: FdKind::Proxied { id: 4 },
            },
            Duration::ZERO,
        );
        assert!(prox.contains("\"result\":\"ok\",\"fd_kind\":\"proxied\",\"id\":4,"));
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
            "{}",
            &Reply::Accepted { id: 5, peer: v6 },
            Duration::ZERO,
        );
        assert!(acc.contains("\"id\":5,\"peer\":\"[fd00::1]:80\""));
        assert_eq!(sockaddr_text(&[0, 0]), "AF_UNSPEC");
        assert_eq!(
            args_json(&ns),
            "{\"plugin\":\"x\\\"y\",\"options\":\"\",\"vnls\":[\"vde:///tmp/sw\"],\"search_path\":[],\
             \"app_license\":null,\"limits\":{\"address_space\":null,\"open_files\":64,\
             \"cpu_seconds\":null,\"core_size\":null},\"audit\":null}"
        );
    }
}
