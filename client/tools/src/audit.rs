//! `ioth audit`: reads trails (JSON lines of schema 2, docs/audit.md): per stack a summary, or
//! the events filtered by stack, kind and time; `--follow` waits for more lines; `--json` prints
//! JSON (the summary as one object per stack, events as their lines).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Default)]
struct Opts {
    events: bool,
    pid: Option<u64>,
    kinds: Vec<String>,
    since: Option<Bound>,
    until: Option<Bound>,
    follow: bool,
    json: bool,
    files: Vec<String>,
}

/// A time bound: µs since the epoch, or an RFC 3339 prefix compared with the `time` key.
enum Bound {
    Us(u64),
    Text(String),
}

impl Bound {
    fn parse(s: &str) -> Result<Bound, String> {
        if let Ok(secs) = s.parse::<f64>() {
            return Ok(Bound::Us((secs * 1e6) as u64));
        }
        if s.len() >= 4 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
            return Ok(Bound::Text(s.trim_end_matches('Z').to_owned()));
        }
        Err(format!(
            "bad time {s:?}: seconds since the epoch or RFC 3339 UTC"
        ))
    }

    /// Whether event `e` is at or after (`after`) / before or at the bound.
    fn admits(&self, e: &Value, after: bool) -> bool {
        match self {
            Bound::Us(b) => {
                let t = e["unix_us"].as_u64().unwrap_or(0);
                if after {
                    t >= *b
                } else {
                    t <= *b
                }
            }
            Bound::Text(b) => {
                let t = e["time"].as_str().unwrap_or("");
                let t = &t[..t.len().min(b.len())];
                if after {
                    t >= b.as_str()
                } else {
                    t <= b.as_str()
                }
            }
        }
    }
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--events" => o.events = true,
            "--follow" | "-f" => o.follow = true,
            "--json" => o.json = true,
            "--pid" => {
                let v = val("--pid")?;
                o.pid = Some(v.parse().map_err(|_| format!("bad pid {v:?}"))?);
            }
            "--kind" => {
                o.events = true;
                o.kinds.extend(val("--kind")?.split(',').map(str::to_owned));
            }
            "--since" => o.since = Some(Bound::parse(&val("--since")?)?),
            "--until" => o.until = Some(Bound::parse(&val("--until")?)?),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            f => o.files.push(f.to_owned()),
        }
    }
    if o.files.is_empty() {
        return Err("no trail given".into());
    }
    Ok(o)
}

impl Opts {
    fn admits(&self, e: &Value) -> bool {
        self.pid.is_none_or(|p| e["pid"].as_u64() == Some(p))
            && (self.kinds.is_empty()
                || self
                    .kinds
                    .iter()
                    .any(|k| e["event"].as_str() == Some(k.as_str())))
            && self.since.as_ref().is_none_or(|b| b.admits(e, true))
            && self.until.as_ref().is_none_or(|b| b.admits(e, false))
    }
}

/// An interface in a summary: its addresses, its first and last counters (rx/tx bytes, rx/tx
/// packets).
type IfaceSeen = (Vec<String>, Option<[u64; 4]>, Option<[u64; 4]>);

/// What a summary gathers of one stack.
#[derive(Default)]
struct Stack {
    plugin: String,
    first: Option<(String, u64)>,
    last: u64,
    schema: Option<u64>,
    vnls: Vec<String>,
    requests: u64,
    errors: u64,
    sockets: u64,
    /// inode or "p<id>" → (peer, type, last counters [sent, received]).
    conns: BTreeMap<String, (String, String, Option<[u64; 2]>)>,
    refused: Vec<String>,
    protections: Vec<String>,
    ifaces: BTreeMap<String, IfaceSeen>,
    children: u64,
    /// Program → the children seen running it.
    programs: BTreeMap<String, BTreeSet<u64>>,
    stopped: Option<String>,
}

impl Stack {
    fn add(&mut self, e: &Value) {
        let us = e["unix_us"].as_u64().unwrap_or(0);
        if self.first.is_none() {
            self.first = Some((e["time"].as_str().unwrap_or("").to_owned(), us));
        }
        self.last = self.last.max(us);
        self.plugin = e["plugin"].as_str().unwrap_or("").to_owned();
        let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
        match e["event"].as_str().unwrap_or("") {
            "trail" => self.schema = e["schema"].as_u64(),
            "stack" => self.vnls = strings(&e["vnls"]),
            "request" => {
                self.requests += 1;
                if e["result"] == "error" {
                    self.errors += 1;
                }
                if e["fd_kind"] == "proxied" {
                    self.sockets += 1;
                    let id = e["id"].as_u64().unwrap_or(0);
                    let ty = if e["args"]["type"].as_i64().unwrap_or(0) & 0xf == 1 {
                        "tcp"
                    } else {
                        "udp"
                    };
                    self.conns
                        .insert(format!("p{id}"), (String::new(), ty.into(), None));
                }
                let op = e["args"]["op"].as_str().unwrap_or("");
                let id = e["args"]["id"].as_u64().unwrap_or(0);
                if op == "connect" {
                    if let Some(c) = self.conns.get_mut(&format!("p{id}")) {
                        c.0 = e["args"]["addr"].as_str().unwrap_or("").to_owned();
                    }
                }
                if op == "accept" && e["result"] == "ok" {
                    self.sockets += 1;
                    let new = e["id"].as_u64().unwrap_or(0);
                    self.conns
                        .insert(format!("p{new}"), (s("peer"), "tcp".into(), None));
                }
            }
            "socket_open" | "socket_state" | "socket_stats" | "socket_close" => {
                // A proxied socket (schema 3: it has the `id` of its requests) is one already
                // counted from its `Socket` or `accept`.
                let key = match e["id"].as_u64() {
                    Some(id) => format!("p{id}"),
                    None => e["inode"].as_u64().unwrap_or(0).to_string(),
                };
                if e["event"] == "socket_open" && e["id"].is_null() {
                    self.sockets += 1;
                }
                let c = self
                    .conns
                    .entry(key)
                    .or_insert_with(|| (s("peer"), s("type"), None));
                if let Some(p) = e["peer"].as_str() {
                    c.0 = p.to_owned();
                }
                if let (Some(a), Some(b)) = (e["bytes_sent"].as_u64(), e["bytes_received"].as_u64())
                {
                    c.2 = Some([a, b]);
                }
            }
            // A request whose plug-in call failed, or (schema 3) a system call the sandbox
            // refused.
            "refused" if e["syscall"].is_string() => {
                let args: Vec<&str> = e["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str())
                    .collect();
                self.refused.push(format!(
                    "syscall {}({}) {}",
                    s("syscall"),
                    args.join(", "),
                    s("errname")
                ));
            }
            "refused" => self.refused.push(format!(
                "{} {} {} {}",
                s("request"),
                e["args"],
                s("errname"),
                s("message")
            )),
            "protections" => self.protections = strings(&e["in_force"]),
            "interface" => {
                let f = self.ifaces.entry(s("name")).or_default();
                f.0 = strings(&e["addresses"]);
            }
            "interface_stats" => {
                let c = ["rx_bytes", "tx_bytes", "rx_packets", "tx_packets"]
                    .map(|k| e[k].as_u64().unwrap_or(0));
                let f = self.ifaces.entry(s("name")).or_default();
                if f.1.is_none() {
                    f.1 = Some(c);
                }
                f.2 = Some(c);
            }
            "process_start" | "process_exec" => {
                if e["event"] == "process_start" {
                    self.children += 1;
                }
                if let (Some(p), Some(c)) = (e["program"].as_str(), e["child"].as_u64()) {
                    self.programs.entry(p.to_owned()).or_default().insert(c);
                }
            }
            "stop" => self.stopped = Some(s("why")),
            _ => {}
        }
    }

    /// Peers: address → (connections, bytes sent, bytes received; None where unknown).
    fn peers(&self) -> BTreeMap<String, (u64, Option<u64>, Option<u64>)> {
        let mut out: BTreeMap<String, (u64, Option<u64>, Option<u64>)> = BTreeMap::new();
        for (peer, ty, c) in self.conns.values() {
            if peer.is_empty() || peer.ends_with(":0") {
                continue;
            }
            let p = out.entry(format!("{ty} {peer}")).or_default();
            p.0 += 1;
            if let Some([s, r]) = c {
                p.1 = Some(p.1.unwrap_or(0) + s);
                p.2 = Some(p.2.unwrap_or(0) + r);
            }
        }
        out
    }

    fn to_json(&self, pid: u64) -> Value {
        let first = self.first.clone().unwrap_or_default();
        let peers: Vec<Value> = self
            .peers()
            .into_iter()
            .map(|(p, (n, s, r))| {
                let (ty, addr) = p.split_once(' ').unwrap_or(("", &p));
                json!({"type": ty, "peer": addr, "connections": n, "bytes_sent": s,
                       "bytes_received": r})
            })
            .collect();
        let ifaces: Vec<Value> = self
            .ifaces
            .iter()
            .map(|(n, (addrs, a, b))| {
                let grow = |i: usize| match (a, b) {
                    (Some(a), Some(b)) => Some(b[i].saturating_sub(a[i])),
                    _ => None,
                };
                json!({"name": n, "addresses": addrs,
                       "rx_bytes": b.map(|b| b[0]), "tx_bytes": b.map(|b| b[1]),
                       "rx_bytes_during": grow(0), "tx_bytes_during": grow(1),
                       "rx_packets_during": grow(2), "tx_packets_during": grow(3)})
            })
            .collect();
        json!({
            "pid": pid,
            "plugin": self.plugin,
            "schema": self.schema,
            "vnls": self.vnls,
            "start": first.0,
            "lifetime_ms": self.last.saturating_sub(first.1) / 1000,
            "ended": self.stopped,
            "requests": self.requests,
            "errors": self.errors,
            "sockets": self.sockets,
            "peers": peers,
            "interfaces": ifaces,
            "refused": self.refused,
            "children": self.children,
            "programs": self
                .programs
                .iter()
                .map(|(p, c)| json!({"program": p, "children": c.len()}))
                .collect::<Vec<_>>(),
            "protections": self.protections,
        })
    }
}

/// The strings of a JSON array (none if it is not one).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn opt(v: &Value) -> String {
    v.as_u64().map_or("?".into(), |n| n.to_string())
}

fn print_summary(out: &mut impl Write, s: &Value) -> std::io::Result<()> {
    writeln!(
        out,
        "stack {} ({}) {}  started {}  lived {} ms{}",
        s["pid"],
        s["plugin"].as_str().unwrap_or(""),
        s["vnls"]
            .as_array()
            .map(|v| v
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default(),
        s["start"].as_str().unwrap_or(""),
        s["lifetime_ms"],
        match s["ended"].as_str() {
            Some(w) => format!(", ended ({w})"),
            None => ", no end recorded".into(),
        }
    )?;
    writeln!(
        out,
        "  requests {} ({} failed), sockets {}, child processes {}",
        s["requests"], s["errors"], s["sockets"], s["children"]
    )?;
    let prot: Vec<&str> = s["protections"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    writeln!(out, "  protections: {}", prot.join(" "))?;
    let programs: Vec<String> = s["programs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{} ({})",
                p["program"].as_str().unwrap_or(""),
                p["children"]
            )
        })
        .collect();
    if !programs.is_empty() {
        writeln!(out, "  programs: {}", programs.join(", "))?;
    }
    for p in s["peers"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  peer {} {}  connections {}  sent {}  received {}",
            p["type"].as_str().unwrap_or(""),
            p["peer"].as_str().unwrap_or(""),
            p["connections"],
            opt(&p["bytes_sent"]),
            opt(&p["bytes_received"])
        )?;
    }
    for i in s["interfaces"].as_array().into_iter().flatten() {
        let a: Vec<&str> = i["addresses"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        writeln!(
            out,
            "  interface {} {}  rx {} tx {} bytes (+{} / +{} while audited)",
            i["name"].as_str().unwrap_or(""),
            a.join(" "),
            opt(&i["rx_bytes"]),
            opt(&i["tx_bytes"]),
            opt(&i["rx_bytes_during"]),
            opt(&i["tx_bytes_during"])
        )?;
    }
    for r in s["refused"].as_array().into_iter().flatten() {
        writeln!(out, "  refused: {}", r.as_str().unwrap_or(""))?;
    }
    Ok(())
}

fn print_event(out: &mut impl Write, line: &str, e: &Value, json: bool) -> std::io::Result<()> {
    if json {
        return writeln!(out, "{line}");
    }
    let mut rest = e.clone();
    if let Value::Object(o) = &mut rest {
        for k in ["seq", "time", "unix_us", "pid", "plugin", "event"] {
            o.remove(k);
        }
    }
    writeln!(
        out,
        "{} {} {} {} {}",
        e["time"].as_str().unwrap_or(""),
        e["pid"],
        e["plugin"].as_str().unwrap_or(""),
        e["event"].as_str().unwrap_or(""),
        rest
    )
}

pub fn main(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut stacks: BTreeMap<u64, Stack> = BTreeMap::new();
    let mut readers = Vec::new();
    for f in &o.files {
        let file = std::fs::File::open(f).map_err(|e| format!("{f}: {e}"))?;
        readers.push((f.clone(), BufReader::new(file)));
    }
    let mut line = String::new();
    let mut bad = 0;
    // The lines there are; with --follow, then those that come, forever (until killed).
    loop {
        let mut any = false;
        for (_, r) in &mut readers {
            loop {
                line.clear();
                let n = r.read_line(&mut line).map_err(|e| e.to_string())?;
                if n == 0 || !line.ends_with('\n') {
                    // A partial last line: read it again once complete.
                    if n > 0 {
                        let back = -(n as i64);
                        r.seek(SeekFrom::Current(back)).map_err(|e| e.to_string())?;
                    }
                    break;
                }
                any = true;
                let Ok(e) = serde_json::from_str::<Value>(line.trim_end()) else {
                    bad += 1;
                    continue;
                };
                if !o.admits(&e) {
                    continue;
                }
                if o.events || o.follow {
                    print_event(&mut out, line.trim_end(), &e, o.json)
                        .map_err(|e| e.to_string())?;
                } else {
                    let pid = e["pid"].as_u64().unwrap_or(0);
                    stacks.entry(pid).or_default().add(&e);
                }
            }
        }
        if !o.follow {
            break;
        }
        if !any {
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if !o.events {
        for (pid, s) in &stacks {
            let v = s.to_json(*pid);
            if o.json {
                writeln!(out, "{v}").map_err(|e| e.to_string())?;
            } else {
                print_summary(&mut out, &v).map_err(|e| e.to_string())?;
            }
        }
    }
    if bad > 0 {
        eprintln!("ioth audit: {bad} line(s) that are not JSON skipped");
    }
    Ok(())
}
