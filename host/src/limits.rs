//! Per-stack resource limits, set by the host on itself before it loads the plug-in. Runs in the
//! host process only.
//!
//! Each limit is set as both the soft and the hard limit (setrlimit(2)), so the plug-in cannot
//! raise it again. A plug-in that exceeds one gets what the kernel gives any process: `ENOMEM`
//! from mmap/malloc (`RLIMIT_AS`), `EMFILE` from open/socket (`RLIMIT_NOFILE`), `SIGXCPU` then
//! `SIGKILL` (`RLIMIT_CPU`). Only its own host is affected.

use ioth_proto::Limits;
use nix::sys::resource::{setrlimit, Resource};

use crate::error::HostError;

/// Applies every limit of `l` to this process.
pub fn apply(l: &Limits) -> Result<(), HostError> {
    let table = [
        (Resource::RLIMIT_AS, l.address_space, "RLIMIT_AS"),
        (Resource::RLIMIT_NOFILE, l.open_files, "RLIMIT_NOFILE"),
        (Resource::RLIMIT_CPU, l.cpu_seconds, "RLIMIT_CPU"),
        (Resource::RLIMIT_CORE, l.core_size, "RLIMIT_CORE"),
    ];
    for (res, value, name) in table {
        let Some(v) = value else { continue };
        setrlimit(res, v, v).map_err(|e| HostError::Os {
            errno: e as i32,
            message: format!("setrlimit({name}, {v}) in the host: {}", e.desc()),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::resource::getrlimit;

    #[test]
    fn empty_limits_change_nothing() {
        let before = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        apply(&Limits::default()).unwrap();
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), before);
    }
}
