//! VNL parsing: `[ifname:]url`, one interface per VNL. Pure code, no system calls.
//!
//! A VNL is any vdeplug4 URL (`vde:///tmp/sw`, `switch:///tmp/sw`, `ptp:///tmp/p`, `udp://…`,
//! `tap://…`, `vxvde://…`, a bare path …); libvdeplug parses the URL itself. It may carry an
//! interface-name prefix, `eth1:vde:///tmp/sw`. The prefix is the text before the first `:` when
//! what follows that `:` is itself a URL (`scheme://…`). `vde:///tmp/sw` has no prefix: after
//! `vde:` comes `///tmp/sw`, not a scheme. Requiring the scheme right after the `:` (rather than
//! a `://` anywhere) keeps nested URLs such as `cmd://"ssh h vde_plug vde:///tmp/sw"` whole.
//! Unnamed interfaces are `vde<position>`.

use std::io;

use crate::error;

/// Longest interface name (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// One interface to create: its name and the URL libvdeplug opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vnl {
    /// Interface name in the stack (`vde0`, `eth1`, …).
    pub ifname: String,
    /// The vdeplug4 URL, without the name prefix.
    pub url: String,
}

fn is_scheme(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_'))
}

/// Whether `s` starts with `scheme://`.
fn starts_with_url(s: &str) -> bool {
    s.split_once("://")
        .is_some_and(|(scheme, _)| is_scheme(scheme))
}

fn check_ifname(name: &str, vnl: &str) -> io::Result<()> {
    let ok = (1..=IFNAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(error(
            libc::EINVAL,
            format!(
                "malformed VNL {vnl:?}: bad interface name {name:?} (1 to {IFNAME_MAX} characters \
                 among A-Z a-z 0-9 _ . -)"
            ),
        ))
    }
}

/// Parses the VNL at `position` in the stack's list.
pub fn parse(vnl: &str, position: usize) -> io::Result<Vnl> {
    if vnl.trim().is_empty() {
        return Err(error(libc::EINVAL, "malformed VNL: it is empty"));
    }
    if let Some((name, rest)) = vnl.split_once(':') {
        if starts_with_url(rest) {
            check_ifname(name, vnl)?;
            return Ok(Vnl {
                ifname: name.to_owned(),
                url: rest.to_owned(),
            });
        }
    }
    Ok(Vnl {
        ifname: format!("vde{position}"),
        url: vnl.to_owned(),
    })
}

/// Parses a stack's VNL list; interface names must be distinct.
pub fn parse_all(vnls: &[&str]) -> io::Result<Vec<Vnl>> {
    let parsed = vnls
        .iter()
        .enumerate()
        .map(|(i, v)| parse(v, i))
        .collect::<io::Result<Vec<_>>>()?;
    for (i, v) in parsed.iter().enumerate() {
        if parsed[..i].iter().any(|w| w.ifname == v.ifname) {
            return Err(error(
                libc::EINVAL,
                format!(
                    "malformed VNL list: interface name {:?} used twice",
                    v.ifname
                ),
            ));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str, pos: usize) -> (String, String) {
        let p = parse(v, pos).unwrap();
        (p.ifname, p.url)
    }

    /// EINVAL is the only errno whose kind is InvalidInput.
    fn invalid(v: &str) -> bool {
        parse(v, 0).unwrap_err().kind() == io::ErrorKind::InvalidInput
    }

    #[test]
    fn unnamed() {
        assert_eq!(
            ok("vde:///tmp/sw", 0),
            ("vde0".into(), "vde:///tmp/sw".into())
        );
        assert_eq!(
            ok("switch:///tmp/sw", 3),
            ("vde3".into(), "switch:///tmp/sw".into())
        );
        assert_eq!(ok("/tmp/sw", 1), ("vde1".into(), "/tmp/sw".into()));
        assert_eq!(ok("udp://10.0.0.1:5000/10.0.0.2:5000", 0).0, "vde0");
        assert_eq!(ok("null://", 0), ("vde0".into(), "null://".into()));
        assert_eq!(ok("tap://tap0", 0), ("vde0".into(), "tap://tap0".into()));
    }

    #[test]
    fn named() {
        assert_eq!(
            ok("eth1:vde:///tmp/sw", 0),
            ("eth1".into(), "vde:///tmp/sw".into())
        );
        assert_eq!(
            ok("e.x-1_2:ptp:///tmp/p", 0),
            ("e.x-1_2".into(), "ptp:///tmp/p".into())
        );
        assert_eq!(ok("eth0:vxvde://239.1.2.3", 0).0, "eth0");
    }

    #[test]
    fn nested_url_is_not_a_prefix() {
        let v = r#"cmd://"ssh h vde_plug vde:///tmp/sw""#;
        assert_eq!(ok(v, 0), ("vde0".into(), v.into()));
        // A path after the colon is not a URL: no prefix, libvdeplug decides.
        assert_eq!(ok("eth1:/tmp/sw", 0).0, "vde0");
    }

    #[test]
    fn malformed() {
        assert!(invalid(""));
        assert!(invalid("  "));
        assert!(invalid(":vde:///tmp/sw"));
        assert!(invalid("averyveryverylongname:vde:///tmp/sw"));
        assert!(invalid("bad name:vde:///tmp/sw"));
        assert!(invalid("..:vde:///tmp/sw"));
        assert!(parse_all(&["vde1:vde:///a", "vde:///b"]).is_err());
        assert_eq!(
            parse_all(&["vde:///a", "vde:///b"]).unwrap()[1].ifname,
            "vde1"
        );
    }
}
