//! Subject and bucket names. A worker `w` under prefix `p` (default `amrpc`) uses
//! `p.w.clock` (clock changes), `p.w.payload` (payloads) and `p.w.rpc` (requests: mutations
//! and remote waits),
//! and key `w` of the bucket (default `amrpc_workers`).

use crate::BridgeError;

/// The default subject prefix.
pub const PREFIX: &str = "amrpc";
/// The default key-value bucket.
pub const BUCKET: &str = "amrpc_workers";
/// The queue group of worker hosts on a request subject (one host answers each request).
pub const HOSTS_GROUP: &str = "amrpc-hosts";

/// One worker's subjects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    /// Clock changes ([`crate::msg::ClockMsg`]).
    pub clock: String,
    /// Payloads.
    pub payload: String,
    /// Requests to the worker's host ([`crate::msg::Request`]).
    pub rpc: String,
}

/// A worker name must be one NATS subject token and a bucket key: ASCII letters, digits, `-`
/// and `_`, 1 to 128 of them.
pub fn check_name(name: &str) -> Result<(), BridgeError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(BridgeError::BadName(name.to_string()))
    }
}

impl Subjects {
    /// The subjects of worker `name` under `prefix` (both checked).
    pub fn new(prefix: &str, name: &str) -> Result<Subjects, BridgeError> {
        check_name(name)?;
        let ok = !prefix.is_empty()
            && prefix
                .split('.')
                .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if !ok {
            return Err(BridgeError::BadName(prefix.to_string()));
        }
        Ok(Subjects {
            clock: format!("{prefix}.{name}.clock"),
            payload: format!("{prefix}.{name}.payload"),
            rpc: format!("{prefix}.{name}.rpc"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_tokens() {
        assert!(check_name("bench_1-a").is_ok());
        for bad in ["", "a.b", "a*", ">", "a b", "ü"] {
            assert!(matches!(check_name(bad), Err(BridgeError::BadName(_))), "{bad:?}");
        }
        assert_eq!(Subjects::new("amrpc", "w").unwrap().rpc, "amrpc.w.rpc");
        assert!(Subjects::new("a..b", "w").is_err());
        assert!(Subjects::new("a.b", "w").is_ok());
    }
}
