//! `clock::apply` on an arbitrary clock and update (layout in `src/lib.rs`): unchanged on error,
//! the reference model's clock on success, and a diff never lowers a tick.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| amrpc_fuzz::check_clock(&amrpc_fuzz::parse_clock_case(data)));
