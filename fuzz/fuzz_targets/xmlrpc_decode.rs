//! XML-RPC decoding of arbitrary bytes: `decode_call` and `decode_response` must return an
//! answer or an error, never panic, overflow the stack or hang, whatever a stranger sends. Errors
//! must not quote the input (ARCHITECTURE.md), so a long input gives a short message.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(error) = shoal_xmlrpc::decode_call(data) {
        assert!(error.to_string().len() < 200, "a decode error stays short: {error}");
    }
    if let Err(error) = shoal_xmlrpc::decode_response(data) {
        assert!(error.to_string().len() < 200, "a decode error stays short: {error}");
    }
});
