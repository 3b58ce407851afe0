//! Any bytes as a frame: the request and response decoders must return a
//! value or a typed error, never panic; what decodes must re-encode to the
//! same request.
#![no_main]

use common::protocol::{decode_request, decode_response, encode_request, encode_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((id, req)) = decode_request(data) {
        let again: Vec<u8> = encode_request(id, &req).parts().concat();
        assert_eq!(again, data);
    }
    if let Ok((id, resp)) = decode_response(data) {
        let again: Vec<u8> = encode_response(id, &resp).parts().concat();
        assert_eq!(decode_response(&again).map(|(i, _)| i), Ok(id));
    }
});
