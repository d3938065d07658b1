//! `ClientMsg::decode` on arbitrary bytes; an `Ok` message must re-encode stably.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| amrpc_fuzz::check_client(data));
