//! The host's decoder: any datagram the application side may send. A decode error, or a request
//! that encodes back to bytes that decode to it; its control lengths checked without panic.
#![no_main]

use ioth_proto::channel::{decode, encode};
use ioth_proto::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode::<Request>(data) {
        let again = encode(&req).expect("a decoded request encodes");
        assert_eq!(decode::<Request>(&again).expect("and decodes"), req);
        if let Request::Control { op, .. } = &req {
            let _ = op.check();
        }
        let _ = req.name();
    }
});
