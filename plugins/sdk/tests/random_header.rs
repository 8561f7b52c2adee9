//! Bounded random input for the proxied-fd contract's parsers (`ioth_plugin_sdk::proxied`),
//! which read bytes another process wrote: 20,000 fixed-seed inputs (random bytes of every
//! length up to 64, and mutations of valid headers and addresses of each family). Each gives an
//! address or an errno, never a panic, and what is read back makes the same header again.

use ioth_plugin_sdk::proxied::header::{
    header, header_from_sockaddr, parse_header, sockaddr_from_header, HDR_LEN,
};
use ioth_plugin_sdk::proxied::sockaddr::{from_sockaddr, to_sockaddr};

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
}

fn samples() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = ["10.1.2.3:80", "[fd00::1]:53", "[fe80::1%2]:547"]
        .iter()
        .flat_map(|a| {
            let a = a.parse().unwrap();
            [libc::AF_INET, libc::AF_INET6].map(|f| header(a, f).to_vec())
        })
        .collect();
    let mut sll = vec![0u8; 20];
    sll[..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
    sll[11] = 6;
    v.push(sll);
    v
}

#[test]
fn random_and_mutated_headers_parse_or_fail_cleanly() {
    let mut rng = Rng(0x10f1);
    let base = samples();
    let (mut read, mut refused) = (0, 0);
    for n in 0..20_000 {
        let input: Vec<u8> = if n % 2 == 0 {
            let len = rng.below(65);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut b = base[rng.below(base.len())].clone();
            for _ in 0..1 + rng.below(3) {
                match rng.below(3) {
                    0 if !b.is_empty() => {
                        let i = rng.below(b.len());
                        b[i] = rng.next() as u8;
                    }
                    1 => b.truncate(rng.below(b.len() + 1)),
                    _ => b.push(rng.next() as u8),
                }
            }
            b
        };
        match sockaddr_from_header(&input) {
            Ok(sa) => {
                read += 1;
                let h = header_from_sockaddr(&sa).expect("a header read makes a header");
                assert_eq!(sockaddr_from_header(&h).unwrap(), sa, "{input:?}");
            }
            Err(e) => {
                refused += 1;
                assert!(input.len() < HDR_LEN || e == libc::EINVAL, "{input:?}: {e}");
            }
        }
        if let Ok(a) = parse_header(&input) {
            let family = i32::from(u16::from_ne_bytes([input[0], input[1]]));
            assert_eq!(parse_header(&header(a, family)).unwrap(), a, "{input:?}");
        }
        let _ = header_from_sockaddr(&input);
        for family in [libc::AF_INET, libc::AF_INET6] {
            if let Ok(Some(a)) = from_sockaddr(&input, family) {
                let back = to_sockaddr(a, family);
                assert_eq!(from_sockaddr(&back, family).unwrap(), Some(a));
            }
        }
    }
    assert!(
        read > 1000 && refused > 1000,
        "{read} read, {refused} refused"
    );
}
