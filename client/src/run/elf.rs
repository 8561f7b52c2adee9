//! Is a program dynamically linked? A statically linked one ignores `LD_PRELOAD`, so on a
//! proxied stack it would use the machine's network: it is refused before it starts.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// `PT_INTERP`: the program header naming the dynamic linker.
const PT_INTERP: u32 = 3;

fn refuse(path: &Path, why: &str) -> Error {
    Error::Stack {
        errno: libc::ENOEXEC,
        message: format!(
            "{}: {why}: the preload library that puts its sockets on a proxied stack (smoltcp) \
             cannot reach it, so it would use the machine's network; run it on a \
             native-namespace stack (vdestack) instead",
            path.display()
        ),
    }
}

/// Whether the ELF image `b` has a `PT_INTERP` header (`None`: not an ELF file we can read).
fn has_interp(b: &[u8]) -> Option<bool> {
    if b.get(..4)? != b"\x7fELF" {
        return None;
    }
    let le = match b.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u64> {
        let x: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(x)
        } else {
            u16::from_be_bytes(x)
        } as u64)
    };
    let u32_at = |o: usize| -> Option<u64> {
        let x: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        } as u64)
    };
    let u64_at = |o: usize| -> Option<u64> {
        let x: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(x)
        } else {
            u64::from_be_bytes(x)
        })
    };
    let (phoff, phentsize, phnum) = match b.get(4)? {
        1 => (u32_at(0x1c)?, u16_at(0x2a)?, u16_at(0x2c)?),
        2 => (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?),
        _ => return None,
    };
    for i in 0..phnum {
        let at = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if u32_at(at)? as u32 == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// Fails with `ENOEXEC` if `path` is a statically linked ELF program, or a script whose
/// interpreter is one. Anything else (a dynamically linked program, a file that is not ELF)
/// passes: exec says what it thinks of it.
pub(crate) fn check_dynamic(path: &Path) -> Result<()> {
    check(path, 0)
}

fn check(path: &Path, depth: u32) -> Result<()> {
    let mut head = Vec::new();
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(());
    };
    // Program headers sit near the start; 64 KiB covers any real program.
    if f.take(64 * 1024).read_to_end(&mut head).is_err() {
        return Ok(());
    }
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&c| c == b'\n').next().unwrap_or_default();
        let interp = String::from_utf8_lossy(line);
        let interp = interp.split_whitespace().next().unwrap_or_default();
        if depth < 4 && interp.starts_with('/') {
            return check(Path::new(interp), depth + 1);
        }
        return Ok(());
    }
    match has_interp(&head) {
        Some(false) => Err(refuse(path, "statically linked (no PT_INTERP)")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_is_dynamic_and_garbage_is_not_elf() {
        assert_eq!(has_interp(&std::fs::read("/bin/sh").unwrap()), Some(true));
        assert_eq!(has_interp(b"#!/bin/sh\n"), None);
        assert_eq!(has_interp(b"\x7fELF\x02\x01"), None);
        assert!(check_dynamic(Path::new("/bin/sh")).is_ok());
    }
}
