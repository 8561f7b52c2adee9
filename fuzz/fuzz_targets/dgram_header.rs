//! The address header of unconnected proxied datagram sockets (plugins/sdk/src/proxied/header.rs), read from
//! bytes the other end of a socketpair wrote: any bytes give an address or an errno, and an
//! address read from a header makes a header again.
#![no_main]

use ioth_plugin_sdk::proxied::header::{header_from_sockaddr, sockaddr_from_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sa) = sockaddr_from_header(data) {
        assert!(header_from_sockaddr(&sa).is_ok());
    }
    let _ = header_from_sockaddr(data);
});
