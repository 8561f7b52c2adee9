//! Bounded random input for the wire decoder, both directions, in `cargo test`: a few thousand
//! byte strings — random ones and mutations of valid encodings — from a fixed-seed generator.
//! Every one must decode to a message or fail with a decode error (never panic, never another
//! kind of error), and every message decoded must encode back to something that decodes to it.
//! The cargo-fuzz targets in `fuzz/` run the same properties without a bound.

use ioth_proto::channel::{decode, encode};
use ioth_proto::{
    ControlOp, ErrorKind, FdKind, Limits, ProtoError, Reply, Request, StackStats, WireError,
};

/// SplitMix64: small, fixed-seed, good enough to spread inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn requests() -> Vec<Request> {
    vec![
        Request::Hello { version: 6 },
        Request::NewStack {
            plugin: "vdestack".into(),
            options: "a,b=1".into(),
            vnls: vec!["vde:///tmp/sw".into(), "eth1:vde:///tmp/sw2".into()],
            search_path: vec!["/usr/lib/ioth".into()],
            app_license: Some("GPL-2.0-or-later".into()),
            limits: Limits {
                address_space: Some(1 << 30),
                open_files: Some(64),
                cpu_seconds: None,
                core_size: Some(0),
            },
            audit: Some("/tmp/audit".into()),
            audit_interval_ms: Some(100),
        },
        Request::Socket {
            domain: 2,
            ty: 1,
            protocol: 0,
        },
        Request::Stats,
        Request::DelStack,
        Request::Control {
            id: 7,
            op: ControlOp::Bind(vec![2, 0, 0, 80, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        },
        Request::Control {
            id: 8,
            op: ControlOp::SetSockOpt {
                level: 1,
                name: 2,
                value: vec![1, 0, 0, 0],
            },
        },
        Request::Control {
            id: 9,
            op: ControlOp::GetSockOpt {
                level: 1,
                name: 4,
                len: 4,
            },
        },
        Request::Control {
            id: 10,
            op: ControlOp::Accept,
        },
        Request::Close { id: 11 },
        Request::Sockets {
            domain: 2,
            ty: 0x80801,
            protocol: 0,
            count: 8,
        },
    ]
}

fn replies() -> Vec<Reply> {
    vec![
        Reply::Hello { version: 6 },
        Reply::StackReady {
            plugin_path: "/usr/lib/ioth/ioth_kernel.so".into(),
            license: None,
        },
        Reply::Socket {
            kind: FdKind::Native,
        },
        Reply::Socket {
            kind: FdKind::Proxied { id: 3 },
        },
        Reply::Sockets { count: 7 },
        Reply::Stats(StackStats {
            requests: 5,
            sockets_created: 2,
            protections: 0x7f,
        }),
        Reply::Deleted,
        Reply::Control(vec![2, 0, 0, 80]),
        Reply::Accepted {
            id: 4,
            peer: vec![10, 0, 1, 2],
        },
        Reply::Closed,
        Reply::Error(WireError::new(
            ErrorKind::LicenseRefused,
            libc::EPERM,
            "licence refused",
        )),
    ]
}

/// One mutation of `v`: flip a bit, set a byte, cut, insert, duplicate a run, or overwrite an
/// 8-byte run with an extreme value (or a varint marker of bincode's: 251 to 254).
fn mutate(rng: &mut Rng, mut v: Vec<u8>) -> Vec<u8> {
    if v.is_empty() {
        let n = rng.below(8);
        return rng.bytes(n);
    }
    match rng.below(6) {
        0 => {
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(v.len());
            v[i] = rng.next() as u8;
        }
        2 => v.truncate(rng.below(v.len())),
        3 => {
            let i = rng.below(v.len() + 1);
            let n = 1 + rng.below(8);
            let extra = rng.bytes(n);
            v.splice(i..i, extra);
        }
        4 => {
            let i = rng.below(v.len());
            let n = 1 + rng.below((v.len() - i).min(16));
            let run = v[i..i + n].to_vec();
            v.splice(i..i, run);
        }
        _ => {
            let i = rng.below(v.len());
            let value = [
                0u64,
                1,
                u64::MAX,
                u64::from(u32::MAX),
                253,
                0xffff_ffff_ffff_ff54,
            ][rng.below(6)];
            for (k, b) in value.to_le_bytes().iter().enumerate() {
                if let Some(slot) = v.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
    }
    v
}

/// The properties: a decode error or a message that round-trips.
fn check<T>(bytes: &[u8]) -> bool
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match decode::<T>(bytes) {
        Ok(m) => {
            let again = encode(&m).expect("a decoded message encodes");
            assert_eq!(decode::<T>(&again).expect("its encoding decodes"), m);
            true
        }
        Err(ProtoError::Decode(_) | ProtoError::Oversized(_)) => false,
        Err(e) => panic!("decode failed with a non-decode error: {e:?}"),
    }
}

#[test]
fn random_and_mutated_bytes_decode_or_fail_cleanly() {
    let mut rng = Rng(0x1074_2025);
    let reqs: Vec<Vec<u8>> = requests().iter().map(|m| encode(m).unwrap()).collect();
    let reps: Vec<Vec<u8>> = replies().iter().map(|m| encode(m).unwrap()).collect();
    let (mut decoded, mut refused) = (0, 0);
    for round in 0..4000 {
        let input = match round % 4 {
            0 => {
                let n = rng.below(96);
                rng.bytes(n)
            }
            1 => {
                let base = reqs[rng.below(reqs.len())].clone();
                mutate(&mut rng, base)
            }
            2 => {
                let base = reps[rng.below(reps.len())].clone();
                mutate(&mut rng, base)
            }
            _ => {
                // Several mutations stacked.
                let pool = if rng.below(2) == 0 { &reqs } else { &reps };
                let mut v = pool[rng.below(pool.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    v = mutate(&mut rng, v);
                }
                v
            }
        };
        for ok in [check::<Request>(&input), check::<Reply>(&input)] {
            if ok {
                decoded += 1;
            } else {
                refused += 1;
            }
        }
        if let Ok(Request::Control { op, .. }) = decode::<Request>(&input) {
            let _ = op.check();
            let _ = op.name();
        }
        if let Ok(r) = decode::<Reply>(&input) {
            // A decoded Sockets may declare any count; only a checked one is received.
            match r.check() {
                Ok(()) => assert!(r.fd_count() <= ioth_proto::MAX_FDS, "{r:?}"),
                Err(_) => assert!(matches!(r, Reply::Sockets { .. }), "{r:?}"),
            }
            if !matches!(r, Reply::Sockets { .. }) {
                assert!(r.fd_count() <= 1, "{r:?}");
            }
        }
    }
    // The mix reached both outcomes (mutations of valid encodings often stay valid).
    assert!(
        decoded > 100 && refused > 1000,
        "{decoded} decoded, {refused} refused"
    );
}

#[test]
fn every_sample_round_trips() {
    for m in requests() {
        assert!(check::<Request>(&encode(&m).unwrap()), "{m:?}");
    }
    for m in replies() {
        assert!(check::<Reply>(&encode(&m).unwrap()), "{m:?}");
    }
}

#[test]
fn huge_lengths_are_refused_without_allocating() {
    // A Control(Vec<u8>) reply claiming u64::MAX bytes (bincode's varint: 253 then a u64): the
    // byte limit refuses it before any allocation.
    let v = encode(&Reply::Control(vec![1, 2, 3])).unwrap();
    let at = v.len() - 4;
    assert_eq!(v[at], 3, "{v:?}");
    let mut huge = v[..at].to_vec();
    huge.push(253);
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    huge.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(decode::<Reply>(&huge), Err(ProtoError::Decode(_))));
}
