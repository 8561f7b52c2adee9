//! A stack's configuration string: the static part of iothconf's syntax and `dhcp`, with the
//! same names (docs/run.md). Items are separated by commas and applied in order, after
//! `iface=`/`ifindex=` chose the interface (default `vde0`):
//!
//! `iface=NAME`, `ifindex=N`, `mac=XX:XX:XX:XX:XX:XX` (or `macaddr=`), `mtu=N`, `eth` (bring the
//! interface up, with the MAC and MTU given), `ip=ADDR/LEN` (repeatable, IPv4 or IPv6; IPv6
//! with duplicate address detection, as users add it), `gw=ADDR` (a default route, IPv4 or
//! IPv6), `dns=ADDR` (repeatable), `domain=NAME` (the search domain), `dhcp` (DHCPv4 on the
//! interface, see `dhcp.rs`). An unknown item, or one that does not parse, is an error before
//! anything is applied.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::{Error, Result, Stack};

/// One item of a configuration string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigItem {
    /// `iface=NAME`: the interface the items apply to.
    Iface(String),
    /// `ifindex=N`: the same, by index.
    Ifindex(u32),
    /// `mac=..`: the interface's MAC address.
    Mac([u8; 6]),
    /// `mtu=N`: the interface's MTU.
    Mtu(u32),
    /// `eth`: bring the interface up.
    Eth,
    /// `ip=ADDR/LEN`: an address.
    Ip(IpAddr, u8),
    /// `gw=ADDR`: a default route.
    Gw(IpAddr),
    /// `dns=ADDR`: a name server.
    Dns(IpAddr),
    /// `domain=NAME`: the search domain.
    Domain(String),
    /// `dhcp` (`dhcp4`, `dhcpv4`): DHCPv4 on the interface (its address, mask, router, name
    /// servers and domain).
    Dhcp,
}

/// A parsed configuration string ([`Config::parse`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The items, in order.
    pub items: Vec<ConfigItem>,
}

fn bad(item: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("configuration item {item:?}: {why}"))
}

fn parse_mac(v: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *m = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

impl Config {
    /// Parses `s` (see the module doc). An empty string is an empty configuration.
    pub fn parse(s: &str) -> Result<Config> {
        let mut items = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, val) = item.split_once('=').unwrap_or((item, ""));
            let need = |what: &str| {
                if val.is_empty() {
                    Err(bad(item, &format!("needs {what}")))
                } else {
                    Ok(val)
                }
            };
            let ip = |v: &str| {
                v.parse::<IpAddr>()
                    .map_err(|_| bad(item, "not an IPv4 or IPv6 address"))
            };
            items.push(match key {
                "iface" => ConfigItem::Iface(need("a name")?.to_owned()),
                "ifindex" => ConfigItem::Ifindex(
                    need("a number")?
                        .parse()
                        .map_err(|_| bad(item, "not an interface index"))?,
                ),
                "mac" | "macaddr" => ConfigItem::Mac(
                    parse_mac(need("a MAC address")?)
                        .ok_or_else(|| bad(item, "not a MAC address (xx:xx:xx:xx:xx:xx)"))?,
                ),
                "mtu" => ConfigItem::Mtu(
                    need("a number")?
                        .parse()
                        .ok()
                        .filter(|m| *m >= 68)
                        .ok_or_else(|| bad(item, "not an MTU (68 or more)"))?,
                ),
                "eth" if val.is_empty() => ConfigItem::Eth,
                "ip" => {
                    let v = need("ADDR/LEN")?;
                    let (a, l) = v
                        .split_once('/')
                        .ok_or_else(|| bad(item, "needs a prefix length (ADDR/LEN)"))?;
                    let a = ip(a)?;
                    let max = if a.is_ipv4() { 32 } else { 128 };
                    let l = l
                        .parse::<u8>()
                        .ok()
                        .filter(|l| *l <= max)
                        .ok_or_else(|| bad(item, &format!("prefix length not in 0..={max}")))?;
                    ConfigItem::Ip(a, l)
                }
                "gw" => ConfigItem::Gw(ip(need("an address")?)?),
                "dns" => ConfigItem::Dns(ip(need("an address")?)?),
                "domain" => ConfigItem::Domain(need("a domain name")?.to_owned()),
                "dhcp" | "dhcp4" | "dhcpv4" if val.is_empty() => ConfigItem::Dhcp,
                "dhcp6" | "dhcpv6" | "rd" | "rd6" | "slaac" | "auto" | "auto4" | "autov4"
                | "auto6" | "autov6" => {
                    return Err(bad(
                        item,
                        "not supported (of the dynamic items only dhcp is): give ip=, gw= and dns=",
                    ))
                }
                _ => return Err(bad(item, "unknown item")),
            });
        }
        Ok(Config { items })
    }

    /// The name servers and search domain as a `resolv.conf(5)` text, if any was given.
    pub fn resolv_conf(&self) -> Option<String> {
        let mut text = String::new();
        for i in &self.items {
            match i {
                ConfigItem::Dns(a) => text.push_str(&format!("nameserver {a}\n")),
                ConfigItem::Domain(d) => text.push_str(&format!("search {d}\n")),
                _ => {}
            }
        }
        (!text.is_empty()).then_some(text)
    }

    /// Applies the items to `stack`, in order; the first that fails stops it. Then waits (at
    /// most `wait`) until the IPv6 addresses it added have finished duplicate address detection
    /// (are no longer tentative), so that the program finds them usable.
    ///
    /// `dhcp` runs a DHCPv4 exchange on the interface (which must be up: `eth` first) and adds
    /// the leased address, a default route through its router, and appends its name servers
    /// and domain to the items as `dns=` and `domain=` ([`Config::resolv_conf`] then names
    /// them). The lease is not renewed.
    pub fn apply(&mut self, stack: &Stack, wait: Duration) -> Result<()> {
        let mut learned = Vec::new();
        let mut ifname = "vde0".to_owned();
        let mut ifindex = None;
        let mut v6 = Vec::new();
        let index = |ifname: &str, ifindex: Option<u32>| match ifindex {
            Some(i) => Ok(i),
            None => stack.if_nametoindex(ifname),
        };
        for i in &self.items {
            match i {
                ConfigItem::Iface(n) => {
                    ifname = n.clone();
                    ifindex = None;
                }
                ConfigItem::Ifindex(n) => ifindex = Some(*n),
                ConfigItem::Mac(m) => stack.link_set_mac(index(&ifname, ifindex)?, *m)?,
                ConfigItem::Mtu(m) => stack.link_set_mtu(index(&ifname, ifindex)?, *m)?,
                ConfigItem::Eth => stack.link_set_up(index(&ifname, ifindex)?, true)?,
                ConfigItem::Ip(a, l) => {
                    stack.ipaddr_add(*a, *l, index(&ifname, ifindex)?)?;
                    if a.is_ipv6() {
                        v6.push(*a);
                    }
                }
                ConfigItem::Gw(g) => stack.iproute_add(None, Some(*g), None)?,
                ConfigItem::Dns(_) | ConfigItem::Domain(_) => {}
                ConfigItem::Dhcp => {
                    let idx = index(&ifname, ifindex)?;
                    let lease = super::dhcp::dhcpv4(stack, idx)?;
                    stack.ipaddr_add(IpAddr::V4(lease.addr), lease.prefix, idx)?;
                    if let Some(r) = lease.router {
                        stack.iproute_add(None, Some(IpAddr::V4(r)), None)?;
                    }
                    learned.extend(lease.dns.into_iter().map(|a| ConfigItem::Dns(a.into())));
                    learned.extend(lease.domain.map(ConfigItem::Domain));
                }
            }
        }
        self.items.extend(learned);
        let deadline = Instant::now() + wait;
        while !v6.is_empty() && Instant::now() < deadline {
            let tentative = stack
                .addresses()?
                .iter()
                .any(|a| v6.contains(&a.addr) && a.flags & libc::IFA_F_TENTATIVE != 0);
            if !tentative {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_static_items() {
        let c = Config::parse("eth,ip=10.0.0.1/24,ip=fd00::1/64,gw=10.0.0.254,mac=02:00:00:00:00:01,mtu=1400,dns=10.0.0.53,domain=example.org").unwrap();
        assert_eq!(c.items.len(), 8);
        assert_eq!(c.items[1], ConfigItem::Ip("10.0.0.1".parse().unwrap(), 24));
        assert_eq!(
            c.resolv_conf().unwrap(),
            "nameserver 10.0.0.53\nsearch example.org\n"
        );
        for bad in [
            "ip=10.0.0.1",
            "ip=10.0.0.1/33",
            "ip=fd00::1/129",
            "mac=1:2:3",
            "mtu=10",
            "gw=x",
            "frob",
            "dhcp6",
            "dhcp=1",
            "slaac",
            "eth=1",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(
            Config::parse("eth,dhcp").unwrap().items,
            vec![ConfigItem::Eth, ConfigItem::Dhcp]
        );
    }
}
