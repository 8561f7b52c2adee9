//! # iothaddr — addresses derived from names
//!
//! The computations of libiothaddr, the address helper library of the Internet of Threads, bit for
//! bit: a host's IPv6 address or MAC address derived from its name (and optionally a password and
//! a time slot) by MD5, and the EUI-64 interface identifier of a MAC address. A stack that is
//! restarted or moved keeps the same addresses, so peers' neighbour and ARP caches stay right; with
//! a time slot ([`otiptime`]) the address changes every period: a *one-time IP address* (OTIP)
//! known only to who knows the name, the password and the clock.
//!
//! Pure computation: no I/O, no unsafe. The C library `libiothaddr.so` (`<iothaddr.h>`) is a thin
//! layer over this crate (`client/iothaddr-c`).
//!
//! ```
//! use std::net::Ipv6Addr;
//! let prefix: Ipv6Addr = "2000:760::".parse().unwrap();
//! let name = "test.v2.cs.unibo.it";
//! assert_eq!(iothaddr::hash(prefix, name, None, 0), "2000:760::68d6:2fac:95a:5a2e".parse::<Ipv6Addr>().unwrap());
//! assert_eq!(iothaddr::hash_mac(name, None), [0x6a, 0xd6, 0x2f, 0x5a, 0x5a, 0x2e]);
//! assert_eq!(iothaddr::hash_eui64(prefix, name, None), "2000:760::68d6:2fff:fe5a:5a2e".parse::<Ipv6Addr>().unwrap());
//! ```
//!
//! A note on the original's documentation: its header gives `69:d6:2f:5a:5a:2e` as the MAC address
//! of `test.v2.cs.unibo.it`. That is the digest's bytes before the address bits are set; its code
//! (and this crate) sets the locally-administered bit, giving `6a:d6:2f:5a:5a:2e`. Its EUI-64 and
//! hash examples are right, and are tests here.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::net::Ipv6Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest as _, Md5};

/// The MD5 digest every derived address is made of: the MD5 of the name (one trailing `.` left
/// out, so `host.example.` and `host.example` agree), then the password if there is one, then the
/// time slot as 4 big-endian bytes if it is not 0.
///
/// The byte-level entry point, for names and passwords that are not UTF-8 (the C library uses it);
/// [`hash`], [`hash_mac`] and [`hash_eui64`] are built on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// The digest of `name`, `passwd` and `otiptime` (see the type's description).
    pub fn new(name: &[u8], passwd: Option<&[u8]>, otiptime: u32) -> Digest {
        let name = name.strip_suffix(b".").unwrap_or(name);
        let mut md5 = Md5::new();
        md5.update(name);
        if let Some(p) = passwd {
            md5.update(p);
        }
        if otiptime != 0 {
            md5.update(otiptime.to_be_bytes());
        }
        Digest(md5.finalize().into())
    }

    /// `prefix` with its last 64 bits XORed with the first 8 bytes of the digest, then the two
    /// lowest bits of byte 8 cleared (the universal/local and group bits of the interface
    /// identifier: a local, unicast identifier). A /64 prefix (host part zero) gets the digest's
    /// bytes as its interface identifier.
    pub fn addr(&self, prefix: Ipv6Addr) -> Ipv6Addr {
        let mut a = prefix.octets();
        for (b, h) in a[8..].iter_mut().zip(&self.0[..8]) {
            *b ^= h;
        }
        a[8] &= !0x03;
        Ipv6Addr::from(a)
    }

    /// The MAC address made of bytes 0, 1, 2, 5, 6 and 7 of the digest, with the
    /// locally-administered bit (0x02 of the first byte) set and the group bit (0x01) cleared.
    pub fn mac(&self) -> [u8; 6] {
        let h = &self.0;
        let mut m = [h[0], h[1], h[2], h[5], h[6], h[7]];
        m[0] = (m[0] | 0x02) & !0x01;
        m
    }
}

/// The hash-based IPv6 address of `name` in `prefix` (libiothaddr's `iothaddr_hash`): see
/// [`Digest::new`] for what is hashed and [`Digest::addr`] for how the digest is applied.
/// `otiptime` 0 gives a stable address; a time slot from [`otiptime`] a one-time address.
pub fn hash(prefix: Ipv6Addr, name: &str, passwd: Option<&str>, otiptime: u32) -> Ipv6Addr {
    Digest::new(name.as_bytes(), passwd.map(str::as_bytes), otiptime).addr(prefix)
}

/// The hash-based MAC address of `name` (libiothaddr's `iothaddr_hashmac`): see
/// [`Digest::mac`]. A locally administered unicast address.
pub fn hash_mac(name: &str, passwd: Option<&str>) -> [u8; 6] {
    Digest::new(name.as_bytes(), passwd.map(str::as_bytes), 0).mac()
}

/// The EUI-64 address of `mac` in `prefix` (libiothaddr's `iothaddr_eui64`), computed exactly as
/// the original does: bytes 8–10 of the address become the MAC's first three bytes, bytes 11–12
/// become `ff:fe`, bytes 13–15 are XORed with the MAC's last three bytes, and the
/// universal/local bit (0x02 of byte 8) is flipped. With a /64 prefix (host part zero) this is
/// the usual modified EUI-64 identifier; with a non-zero host part, bytes 13–15 keep the XOR of
/// both, as in the original.
pub fn eui64(prefix: Ipv6Addr, mac: [u8; 6]) -> Ipv6Addr {
    let mut a = prefix.octets();
    a[8..11].copy_from_slice(&mac[..3]);
    a[11] = 0xff;
    a[12] = 0xfe;
    for (b, m) in a[13..].iter_mut().zip(&mac[3..]) {
        *b ^= m;
    }
    a[8] ^= 0x02;
    Ipv6Addr::from(a)
}

/// The EUI-64 address, in `prefix`, of the hash-based MAC address of `name`
/// (libiothaddr's `iothaddr_hasheui64`): `eui64(prefix, hash_mac(name, passwd))`.
pub fn hash_eui64(prefix: Ipv6Addr, name: &str, passwd: Option<&str>) -> Ipv6Addr {
    eui64(prefix, hash_mac(name, passwd))
}

/// The current time slot of a one-time address (the inline `iothaddr_otiptime` of
/// `<iothaddr.h>`): 0 when `period` is 0 (no one-time address), else `(now + offset) / period`
/// with `now` the seconds since the epoch, truncated to 32 bits. Each side computes it from its
/// own clock; a server can give a positive `offset` to accept a client whose clock is behind.
pub fn otiptime(period: i32, offset: i32) -> u32 {
    let now = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    otiptime_at(now, period, offset)
}

/// [`otiptime`] at the time `now` (seconds since the epoch) rather than the current time: 0 when
/// `period` is 0, else `(now + offset) / period` (integer division, rounding toward zero, as in
/// C) truncated to 32 bits.
pub fn otiptime_at(now: i64, period: i32, offset: i32) -> u32 {
    if period == 0 {
        return 0;
    }
    let t = now.wrapping_add(i64::from(offset));
    // wrapping_div: only i64::MIN / -1 overflows; it wraps, as the two's-complement C would.
    t.wrapping_div(i64::from(period)) as u32
}

#[cfg(test)]
mod tests {
    //! Vectors: the worked examples of the original header, and values computed independently of
    //! this code (Python's hashlib MD5 with the original's byte operations done by hand).
    use super::*;

    const NAME: &str = "test.v2.cs.unibo.it";

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn digest_is_md5_of_name_passwd_time() {
        // md5("test.v2.cs.unibo.it"), as the original header states it
        assert_eq!(
            Digest::new(NAME.as_bytes(), None, 0).0,
            *b"\x69\xd6\x2f\xac\x09\x5a\x5a\x2e\xe4\xc2\xc7\x9f\x21\x1e\x57\xe3"
        );
        // md5("test.v2.cs.unibo.itsecret")
        assert_eq!(
            Digest::new(NAME.as_bytes(), Some(b"secret"), 0).0,
            *b"\xdc\xb1\xb2\x21\x9d\x57\x7a\x25\xdc\x57\x27\xe5\x0c\x06\x90\xbd"
        );
        // md5("test.v2.cs.unibo.it" "\x12\x34\x56\x78")
        assert_eq!(
            Digest::new(NAME.as_bytes(), None, 0x1234_5678).0,
            *b"\x54\x98\xab\x98\x06\xfe\xba\x11\xd9\x42\x07\x19\x8b\x76\xf3\xde"
        );
    }

    #[test]
    fn hash_vectors() {
        let p = a("2000:760::");
        assert_eq!(hash(p, NAME, None, 0), a("2000:760::68d6:2fac:95a:5a2e"));
        assert_eq!(
            hash(p, "test.v2.cs.unibo.it.", None, 0),
            hash(p, NAME, None, 0)
        );
        assert_ne!(
            hash(p, "test.v2.cs.unibo.it..", None, 0),
            hash(p, NAME, None, 0)
        );
        assert_eq!(
            hash(p, NAME, Some("secret"), 0),
            a("2000:760::dcb1:b221:9d57:7a25")
        );
        assert_eq!(
            hash(p, NAME, None, 0x1234_5678),
            a("2000:760::5498:ab98:6fe:ba11")
        );
        assert_eq!(
            hash(a("fc00:1:2:3::"), NAME, Some("secret"), 1_000_000),
            a("fc00:1:2:3:24da:2a91:3548:551f")
        );
        // An empty password is hashed as nothing, like no password.
        assert_eq!(hash(p, NAME, Some(""), 0), hash(p, NAME, None, 0));
        assert_eq!(hash(p, "", None, 0), Digest::new(b"", None, 0).addr(p));
    }

    #[test]
    fn hash_xors_the_host_part_and_keeps_the_prefix() {
        let p = a("2001:db8:aaaa:bbbb:ffff:ffff:ffff:ffff");
        let h = Digest::new(NAME.as_bytes(), None, 0).0;
        let o = hash(p, NAME, None, 0).octets();
        assert_eq!(o[..8], p.octets()[..8]);
        assert_eq!(o[8], !h[0] & !0x03);
        for i in 9..16 {
            assert_eq!(o[i], !h[i - 8], "byte {i}");
        }
    }

    #[test]
    fn mac_vectors() {
        // The original's comment says 69:d6:…; its code sets the local bit: 6a:d6:….
        assert_eq!(hash_mac(NAME, None), [0x6a, 0xd6, 0x2f, 0x5a, 0x5a, 0x2e]);
        assert_eq!(hash_mac("test.v2.cs.unibo.it.", None), hash_mac(NAME, None));
        assert_eq!(
            hash_mac(NAME, Some("secret")),
            [0xde, 0xb1, 0xb2, 0x57, 0x7a, 0x25]
        );
        for n in ["a", "b", "c", "d", "host-1", "host-2"] {
            let m = hash_mac(n, None);
            assert_eq!(m[0] & 0x03, 0x02, "{n}: local unicast");
        }
    }

    #[test]
    fn eui64_vectors() {
        let p = a("2000:760::");
        assert_eq!(
            hash_eui64(p, NAME, None),
            a("2000:760::68d6:2fff:fe5a:5a2e")
        );
        assert_eq!(
            eui64(p, [0x6a, 0xd6, 0x2f, 0x5a, 0x5a, 0x2e]),
            a("2000:760::68d6:2fff:fe5a:5a2e")
        );
        assert_eq!(
            hash_eui64(p, NAME, Some("secret")),
            a("2000:760::dcb1:b2ff:fe57:7a25")
        );
        // A familiar one: 52:54:00:12:34:56 -> ::5054:ff:fe12:3456.
        assert_eq!(
            eui64(a("fe80::"), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            a("fe80::5054:ff:fe12:3456")
        );
        // A non-zero host part: bytes 8-12 replaced, bytes 13-15 XORed, as the original.
        assert_eq!(
            eui64(
                a("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
                [0x02, 0x00, 0x00, 0x11, 0x22, 0x33]
            ),
            a("2001:db8:1:2:0:ff:fedd:ffee")
        );
    }

    #[test]
    fn otiptime_slots() {
        assert_eq!(otiptime_at(1_700_000_000, 0, 0), 0);
        assert_eq!(otiptime_at(1_700_000_000, 0, 77), 0);
        assert_eq!(otiptime_at(1_700_000_000, 32, 0), 53_125_000);
        assert_eq!(otiptime_at(1_700_000_031, 32, 0), 53_125_000);
        assert_eq!(otiptime_at(1_700_000_031, 32, 1), 53_125_001);
        assert_eq!(otiptime_at(1_700_000_000, 32, -1), 53_124_999);
        assert_eq!(otiptime_at(1_700_000_000, 1, 0), 1_700_000_000);
        // Truncated to 32 bits, as the C cast.
        assert_eq!(otiptime_at(0x1_0000_0005, 1, 0), 5);
        assert_eq!(otiptime(0, 5), 0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let slot = u64::from(otiptime(3600, 0));
        // The slot of now, or the next one if the hour turned between the two readings.
        assert!(
            slot == now / 3600 || slot == now / 3600 + 1,
            "{slot} vs {now}"
        );
    }
}
