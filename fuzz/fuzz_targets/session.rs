//! A server session and a client session back to back on arbitrary input (`check_session`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| amrpc_fuzz::check_session(data));
