//! `ioth ps`: the stacks running on this machine that the user may see. From `/proc`: every
//! process whose argv[0] is `ioth-host[<plugin>]` (its VNLs follow), its owner, its parent (the
//! application) and that one's command line. The rest — interfaces, addresses, sockets, bytes,
//! protections — from the host itself, over its status socket (docs/audit.md): hosts are not
//! dumpable, so their `/proc/<pid>/fd`, `net` and namespaces are closed to their own user.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

/// One host seen in `/proc`.
struct Host {
    pid: u32,
    uid: u32,
    plugin: String,
    vnls: Vec<String>,
    app: Option<u32>,
    app_cmd: String,
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let b = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        b.split(|c| *c == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state, then ppid.
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every ioth host in `/proc` that `me` may see (its own, or all for root).
fn hosts(me: u32) -> Vec<Host> {
    let mut out = Vec::new();
    let Ok(d) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in d.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(meta) = e.metadata() else { continue };
        if me != 0 && meta.uid() != me {
            continue;
        }
        let Some(argv) = cmdline(pid) else { continue };
        let Some(plugin) = argv
            .first()
            .and_then(|a| a.strip_prefix("ioth-host["))
            .and_then(|a| a.strip_suffix(']'))
        else {
            continue;
        };
        let app = ppid(pid).filter(|p| *p > 1);
        let app_cmd = app
            .and_then(cmdline)
            .map(|a| a.join(" "))
            .unwrap_or_default();
        out.push(Host {
            pid,
            uid: meta.uid(),
            plugin: plugin.to_owned(),
            vnls: argv[1..].to_vec(),
            app,
            app_cmd,
        });
    }
    out.sort_by_key(|h| h.pid);
    out
}

/// The status of host `pid` of user `uid`, from its socket.
fn status(uid: u32, pid: u32) -> Option<Value> {
    let dir = ioth_proto::status::dir_from_env(uid)?;
    let mut c = UnixStream::connect(ioth_proto::status::socket(&dir, pid)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut s = String::new();
    c.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// Removes the status sockets of `me`'s hosts that are gone (a host killed by a signal cannot
/// remove its own; its application does when it reaps it, unless it was killed too).
fn sweep(me: u32, alive: &[u32]) {
    let Some(dir) = ioth_proto::status::dir_from_env(me) else {
        return;
    };
    let Ok(d) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in d.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".sock"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !alive.contains(&pid) {
            ioth_proto::status::remove_stale(&e.path());
        }
    }
}

fn sum(v: &Value, key: &str) -> Option<u64> {
    let a = v.as_array()?;
    Some(
        a.iter()
            .filter(|i| i["name"] != "lo")
            .filter_map(|i| i[key].as_u64())
            .sum(),
    )
}

pub fn main(args: &[String]) -> Result<(), String> {
    let mut as_json = false;
    for a in args {
        match a.as_str() {
            "--json" => as_json = true,
            s => return Err(format!("ioth ps: unknown argument {s:?}")),
        }
    }
    let me = nix_uid();
    let hs = hosts(me);
    sweep(me, &hs.iter().map(|h| h.pid).collect::<Vec<_>>());
    let mut all = Vec::new();
    for h in &hs {
        let st = status(h.uid, h.pid);
        let mut v = json!({
            "pid": h.pid,
            "uid": h.uid,
            "plugin": h.plugin,
            "vnls": h.vnls,
            "app_pid": h.app,
            "app_command": h.app_cmd,
        });
        if let (Some(st), Value::Object(o)) = (st, &mut v) {
            for k in [
                "data_path",
                "netns",
                "uptime_ms",
                "requests",
                "protections",
                "audit",
                "interfaces",
                "sockets",
                "proxied",
                "children",
                "programs",
            ] {
                o.insert(k.into(), st[k].clone());
            }
        }
        all.push(v);
    }
    if as_json {
        println!("{}", Value::Array(all));
    } else {
        print!("{}", text(&all));
    }
    Ok(())
}

/// The table of `ioth ps` for the hosts `all` (as `--json` prints them).
fn text(all: &[Value]) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:>7} {:>7} {:<10} {:<28} {:>7} {:>12} {:>12}  APPLICATION",
        "PID", "APP", "PLUGIN", "VNLS", "SOCKETS", "BYTES IN", "BYTES OUT"
    );
    for v in all {
        // A proxied socket the stack reports (with the `id` of its requests) is in both lists.
        let socks = v["sockets"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|s| s["id"].is_null()).count())
            + v["proxied"].as_array().map_or(0, Vec::len);
        let opt = |x: Option<u64>| x.map_or("-".into(), |n| n.to_string());
        let _ = writeln!(
            t,
            "{:>7} {:>7} {:<10} {:<28} {:>7} {:>12} {:>12}  {}",
            v["pid"],
            v["app_pid"].as_u64().map_or("-".into(), |p| p.to_string()),
            v["plugin"].as_str().unwrap_or(""),
            v["vnls"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default(),
            if v.get("data_path").is_some() {
                socks.to_string()
            } else {
                "?".into()
            },
            opt(sum(&v["interfaces"], "rx_bytes")),
            opt(sum(&v["interfaces"], "tx_bytes")),
            match v["app_command"].as_str() {
                // Its parent is init: the application ended, and the host is ending too.
                _ if v["app_pid"].is_null() => "(application gone: ending)",
                Some(c) => c,
                None => "",
            }
        );
        for i in v["interfaces"].as_array().into_iter().flatten() {
            let a: Vec<&str> = i["addresses"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "        interface {} {} {}",
                i["name"].as_str().unwrap_or(""),
                if i["up"] == true { "up" } else { "down" },
                a.join(" ")
            );
        }
        for s in v["sockets"].as_array().into_iter().flatten() {
            let _ = writeln!(
                t,
                "        {} {} {} -> {} {}",
                s["type"].as_str().unwrap_or(""),
                s["owner"].as_str().unwrap_or(""),
                s["local"].as_str().unwrap_or(""),
                s["peer"].as_str().unwrap_or(""),
                s["state"].as_str().unwrap_or("")
            );
        }
        for s in v["proxied"].as_array().into_iter().flatten() {
            let _ = writeln!(
                t,
                "        proxied #{} {} {} -> {}",
                s["id"],
                s["state"].as_str().unwrap_or(""),
                s["local"].as_str().unwrap_or("-"),
                s["peer"].as_str().unwrap_or("-")
            );
        }
        for p in v["programs"].as_array().into_iter().flatten() {
            let _ = writeln!(
                t,
                "        process {} {}",
                p["pid"],
                p["program"].as_str().unwrap_or("(no program run yet)")
            );
        }
        if let Some(p) = v["protections"]["in_force"].as_array() {
            let p: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
            println!("        protections: {}", p.join(" "));
        }
    }
    t
}

/// The real uid of this process.
fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_programs_and_a_host_whose_application_is_gone() {
        let live = json!({"pid": 10, "app_pid": 9, "plugin": "kernel", "vnls": [],
                          "app_command": "app --x", "data_path": "native", "interfaces": [],
                          "programs": [{"pid": 11, "program": "/usr/bin/sleep"},
                                       {"pid": 13, "program": null}]});
        let ending = json!({"pid": 12, "app_pid": null, "plugin": "vdestack",
                            "vnls": ["vde:///s"], "app_command": ""});
        let t = text(&[live, ending]);
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 5, "{t}");
        assert!(rows[1].ends_with("  app --x"), "{t}");
        assert_eq!(rows[2].trim(), "process 11 /usr/bin/sleep", "{t}");
        assert_eq!(rows[3].trim(), "process 13 (no program run yet)", "{t}");
        assert!(
            rows[4].contains(" vde:///s ") && rows[4].contains(" ? "),
            "{t}"
        );
        assert!(rows[4].ends_with("  (application gone: ending)"), "{t}");
    }
}
