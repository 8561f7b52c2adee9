//! The rtnetlink emulation of the smoltcp plug-in (`plugins/smoltcp/src/netlink.rs`), which
//! answers the request records an application writes on an `AF_NETLINK` socket of the stack:
//! never a panic, and answers that are well-formed netlink (see `check_replies`). One stack
//! (`lo` and a `null://` interface) answers every input, so state carries over between them.
#![no_main]

use std::sync::Mutex;

use ioth_smoltcp::fuzzing::{check_replies, Netlink};
use libfuzzer_sys::fuzz_target;

static NL: Mutex<Option<Netlink>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut nl = NL.lock().unwrap_or_else(|e| e.into_inner());
    let nl = nl.get_or_insert_with(Netlink::new);
    let replies = nl.answer(data);
    if let Err(e) = check_replies(&replies) {
        panic!("{e}");
    }
});
