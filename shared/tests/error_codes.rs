//! One list of error codes: the Rust enum, its stable names and the generated TypeScript union
//! agree, the server's codes keep their wire indexes, and every error a user can receive maps
//! to a code of the list. (The JS side is checked by tests/node/types.test.mjs against the same
//! list, exported as `errorCodes()`.)

use std::collections::BTreeSet;

use amrpc_core::{Error, ErrorCode, TS_ERROR_CODE, WaitError};

#[test]
fn names_round_trip_and_are_unique() {
    let mut seen = BTreeSet::new();
    for (i, c) in ErrorCode::ALL.iter().enumerate() {
        assert_eq!(*c as usize, i, "discriminant = position = wire index");
        assert!(seen.insert(c.as_str()), "duplicate name {}", c.as_str());
        assert_eq!(ErrorCode::from_name(c.as_str()), Some(*c));
        assert_eq!(c.to_string(), c.as_str());
        assert_eq!(format!("{c:?}"), c.as_str(), "the name is the variant's");
    }
    assert_eq!(ErrorCode::from_name("NoSuchCode"), None);
}

#[test]
fn the_typescript_union_is_the_list() {
    let body = TS_ERROR_CODE
        .split("export type ErrorCode =")
        .nth(1)
        .expect("a union declaration");
    let names: Vec<&str> = body.split('"').skip(1).step_by(2).collect();
    let expected: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names, expected);
    assert!(body.trim_end().ends_with("| never;"), "{body}");
}

#[test]
fn every_error_has_a_code_from_the_list() {
    let errors = [
        Error::StateUnknown("X".into()),
        Error::StateMissing("X".into()),
        Error::Relation("X".into()),
        Error::InvalidArgs("X".into()),
        Error::HandlerTimeout("X".into()),
        Error::Canceled,
        Error::Queued,
        Error::Timeout,
        Error::Disposed,
        Error::NotConnected,
        Error::TooManyInFlight { limit: 1 },
        Error::ConnRetryFailed {
            attempts: 1,
            last: "x".into(),
        },
        Error::Aborted,
        Error::Rpc {
            code: ErrorCode::AccessDenied,
            message: "x".into(),
        },
        Error::Other("x".into()),
    ];
    // exhaustive: a new variant must be added above
    for e in &errors {
        match e {
            Error::StateUnknown(_)
            | Error::StateMissing(_)
            | Error::Relation(_)
            | Error::InvalidArgs(_)
            | Error::HandlerTimeout(_)
            | Error::Canceled
            | Error::Queued
            | Error::Timeout
            | Error::Disposed
            | Error::NotConnected
            | Error::TooManyInFlight { .. }
            | Error::ConnRetryFailed { .. }
            | Error::Aborted
            | Error::Rpc { .. }
            | Error::Other(_) => {}
        }
        assert!(ErrorCode::ALL.contains(&e.code()), "{e:?}");
    }
    let codes: BTreeSet<ErrorCode> = errors.iter().map(Error::code).collect();
    assert_eq!(codes.len(), errors.len(), "distinct variants, distinct codes");
    for w in [
        WaitError::Canceled,
        WaitError::Disposed,
        WaitError::InvalidArgs("x".into()),
        WaitError::Disconnected("x".into()),
    ] {
        assert!(ErrorCode::ALL.contains(&w.code()), "{w:?}");
    }
    assert_eq!(
        WaitError::Canceled.code(),
        Error::Aborted.code(),
        "a canceled wait is aborted"
    );
    assert_eq!(WaitError::Disposed.code(), Error::Disposed.code());
}

#[test]
fn final_codes_are_the_refusals_and_the_unfixable() {
    let finals: Vec<&str> = ErrorCode::ALL
        .iter()
        .filter(|c| c.is_final())
        .map(|c| c.as_str())
        .collect();
    assert_eq!(
        finals,
        [
            "VersionMismatch",
            "SchemaMismatch",
            "AccessDenied",
            "Unauthorized",
            "UnknownWorker",
            "InvalidUrl",
            "NoWebSocket"
        ]
    );
}

#[test]
fn servers_send_only_the_wire_codes() {
    use amrpc_core::session::{ReplayCache, ServerConfig, ServerOutput, ServerSession};
    use amrpc_core::wire::{ClientMsg, Hello, PROTOCOL_VERSION, ServerMsg};
    use amrpc_core::{Machine, Opts, State, schema};
    let wire: Vec<ErrorCode> = ErrorCode::ALL.iter().copied().filter(|c| c.is_wire()).collect();
    let mut expected = ErrorCode::ALL[..16].to_vec();
    // protocol 4: the limits' and the restart's codes travel too
    expected.extend([
        ErrorCode::Timeout,
        ErrorCode::TooManyInFlight,
        ErrorCode::RateLimited,
        ErrorCode::MayNotHaveRun,
    ]);
    assert_eq!(wire, expected, "the first 16 and protocol 4's, in wire order");
    let w = Machine::new(schema([("A", State::new())]), Opts::default()).unwrap();
    w.verify_states(&["A", "Exception"]).unwrap();
    let mut srv = ServerSession::new(&w, ServerConfig::default(), std::sync::Arc::new(ReplayCache::new(1)));
    let hello = ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client_id: "c".into(),
        ..Default::default()
    });
    srv.handle_frame(&hello.encode().unwrap(), 0, &w);
    // e.g. a relay whose upstream gave up: a local code, sent as Internal with its name
    let out = srv.shutdown(ErrorCode::ConnRetryFailed, "upstream unreachable");
    let ServerOutput::Send(b) = &out[0] else {
        panic!("{out:?}")
    };
    match ServerMsg::decode(b, 1 << 20).unwrap() {
        ServerMsg::Bye(e) => {
            assert_eq!(e.code, ErrorCode::Internal);
            assert_eq!(e.message, "ConnRetryFailed: upstream unreachable");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn protocol_and_conversion_errors_have_codes_too() {
    use amrpc_core::wire::{ClientMsg, ClockError, DecodeError, EncodeError};
    assert_eq!(
        ClientMsg::decode(&[1, 2, 3, 4, 5], 2).unwrap_err().code(),
        ErrorCode::TooLarge
    );
    assert_eq!(
        ClientMsg::decode(&[0xff], 1 << 20).unwrap_err().code(),
        ErrorCode::Malformed
    );
    assert_eq!(DecodeError::Trailing(1).code(), ErrorCode::Malformed);
    assert_eq!(EncodeError("x".into()).code(), ErrorCode::InvalidArgs);
    assert_eq!(ClockError::Overflow(0).code(), ErrorCode::Malformed);
    let big = amrpc_core::to_value(&u64::MAX).unwrap_err();
    assert_eq!(big.code(), ErrorCode::InvalidArgs);
}
