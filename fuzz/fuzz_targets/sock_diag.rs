//! The smoltcp plug-in's sock_diag emulation (plugins/smoltcp/src/diag.rs) reading request
//! records from the host's audit thread or an application: no input may panic.
#![no_main]

use ioth_smoltcp::fuzzing::SockDiag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SockDiag::new().answer(data);
});
