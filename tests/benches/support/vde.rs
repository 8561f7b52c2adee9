//! What the scenarios on a VDE switch (`vdestack-*`, `smoltcp-*`) share: the check that they
//! can run here, the table they return when they cannot, stacks configured with ioth's netlink
//! calls, and the interleaved UDP round trips with their lost-datagram tally.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ioth::Stack;

use super::udp_echo::{Client, Datagram, Echo};
use super::{release_host, Report, Samples};

/// The interface a stack gets on its VNL.
pub const IFNAME: &str = "vde0";

/// Round trips per path before the timed rounds, discarded (ARP, the switch's MAC table).
const UDP_WARM_UP: usize = 200;

/// Why a scenario needing root, /dev/net/tun, `vde_plug` and the release plug-ins `sos` (e.g.
/// `libioth_vdestack.so`, beside the release host) cannot run here, if it cannot.
pub fn missing(sos: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("skipped: needs root (network namespaces, tap devices)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("skipped: no /dev/net/tun".into());
    }
    let on_path = |exe: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(exe).is_file()))
    };
    if !on_path("vde_plug") {
        return Some("skipped: no vde_plug (Debian package vdeplug)".into());
    }
    match release_host() {
        Ok((host, _)) => {
            for so in sos {
                let so = host.with_file_name(so);
                if !so.is_file() {
                    return Some(format!(
                        "skipped: {} is missing; cargo build --release --workspace",
                        so.display()
                    ));
                }
            }
        }
        Err(e) => return Some(format!("skipped: {e}")),
    }
    None
}

/// The table of a scenario that cannot run: its title and one row saying why.
pub fn skipped(title: &str, why: &str) -> Report {
    let mut rep = Report::new(title);
    rep.value(why, "none", "-", "-", "-");
    rep
}

/// A stack of `plugin` on `vnl` with [`IFNAME`] up and `addr`/24 on it (ioth netlink calls
/// only), and the interface's index.
pub fn stack(plugin: &str, vnl: &str, addr: Ipv4Addr) -> (Stack, u32) {
    let s = Stack::new(plugin, &[vnl]).unwrap_or_else(|e| panic!("newstack {plugin}: {e}"));
    let idx = s.if_nametoindex(IFNAME).expect("if_nametoindex vde0");
    s.link_set_up(idx, true).expect("link_set_up");
    s.ipaddr_add(IpAddr::V4(addr), 24, idx).expect("ipaddr_add");
    (s, idx)
}

/// Round trips over every case (echo, client): a warm-up, discarded, then `rounds` interleaved
/// rounds of `per_round` per case, the cases rotated each round. Samples per case, `n` reserved.
pub fn udp_rounds<S: Datagram>(
    cases: &mut [(Echo, Client<S>)],
    n: usize,
    rounds: usize,
    per_round: usize,
) -> Vec<Samples> {
    for (_, c) in cases.iter_mut() {
        c.round_trips(UDP_WARM_UP, &mut Samples::default());
    }
    let mut samples: Vec<Samples> = cases.iter().map(|_| Samples::with_capacity(n)).collect();
    for r in 0..rounds {
        for k in 0..cases.len() {
            let i = (r + k) % cases.len();
            cases[i].1.round_trips(per_round, &mut samples[i]);
        }
    }
    samples
}

/// "label: count" of every case that lost datagrams.
pub fn udp_lost<S: Datagram>(labels: &[String], cases: &[(Echo, Client<S>)]) -> Vec<String> {
    labels
        .iter()
        .zip(cases)
        .filter(|(_, c)| c.1.lost > 0)
        .map(|(l, c)| format!("{l}: {}", c.1.lost))
        .collect()
}
