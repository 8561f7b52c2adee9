//! The client's decoder: any datagram a (compromised) host may send. A decode error, or a reply
//! that encodes back to bytes that decode to it, with at most one fd declared (a `Sockets`
//! reply: at most `MAX_FDS`, once `Reply::check` passed; `recv_reply` refuses it otherwise).
#![no_main]

use ioth_proto::channel::{decode, encode};
use ioth_proto::Reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = decode::<Reply>(data) {
        let again = encode(&reply).expect("a decoded reply encodes");
        assert_eq!(decode::<Reply>(&again).expect("and decodes"), reply);
        match reply {
            Reply::Sockets { .. } => {
                if reply.check().is_ok() {
                    assert!(reply.fd_count() <= ioth_proto::MAX_FDS && reply.fd_count() >= 1);
                }
            }
            _ => {
                assert!(reply.check().is_ok());
                assert!(reply.fd_count() <= 1);
            }
        }
        let _ = reply.name();
    }
});
