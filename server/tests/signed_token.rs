//! The signed-token auth hook example (examples/signed_token): its token checks, and the hook
//! in a server — the right client with its token gets in (in `Hello` or in the URL); another
//! client id, an altered, forged or expired token is refused with `Unauthorized`.
mod rpc_support;

#[path = "../examples/signed_token/token.rs"]
#[allow(dead_code)]
mod token;

use std::sync::Arc;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::{Api, ErrorCode, Outcome};
use amrpc_server::ServerOpts;
use ring::hmac;
use rpc_support::{Harness, TEST_LIMIT, rels_worker, within};
use token::Refused;

const NOW: u64 = 1_800_000_000;

fn key(b: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, b)
}

#[test]
fn tokens_are_bound_to_a_client_a_key_and_a_time() {
    let k = key(b"server key");
    let t = token::mint(&k, "alice", NOW + 60);
    assert_eq!(token::verify(&k, "alice", Some(&t), NOW), Ok(()));
    assert_eq!(token::verify(&k, "bob", Some(&t), NOW), Err(Refused::OtherClient));
    assert_eq!(token::verify(&k, "alice", Some(&t), NOW + 60), Err(Refused::Expired));
    assert_eq!(
        token::verify(&key(b"other key"), "alice", Some(&t), NOW),
        Err(Refused::BadSignature)
    );
    assert_eq!(token::verify(&k, "alice", None, NOW), Err(Refused::Missing));
    assert_eq!(
        token::verify(&k, "alice", Some("garbage"), NOW),
        Err(Refused::Malformed)
    );
    // altering the claims (a longer expiry, another id) breaks the signature
    let (_, sig) = t.split_once('.').unwrap();
    let forged = format!(
        "{}.{sig}",
        token::mint(&k, "alice", NOW + 9_999).split_once('.').unwrap().0
    );
    assert_eq!(
        token::verify(&k, "alice", Some(&forged), NOW),
        Err(Refused::BadSignature)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_admits_only_valid_tokens() {
    within(TEST_LIMIT, "signed tokens", async {
        let k = Arc::new(key(b"server key"));
        let check = k.clone();
        let opts = ServerOpts {
            auth: Some(Arc::new(move |id: &str, t: Option<&str>| {
                token::verify(&check, id, t, NOW).is_ok()
            })),
            ..Default::default()
        };
        let h = Harness::start(rels_worker("w-token"), opts).await;
        let copts = |id: &str, t: Option<String>| ClientOpts {
            client_id: id.into(),
            token: t,
            conn_retries: 1,
            reconnect: false,
            ..Default::default()
        };
        let good = token::mint(&k, "alice", NOW + 60);
        // in Hello, and in the URL
        let c = Client::connect(&h.url(), copts("alice", Some(good.clone())))
            .await
            .expect("token in Hello");
        assert_eq!(c.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
        c.close().await;
        let c = Client::connect(&format!("{}?token={good}", h.url()), copts("alice", None))
            .await
            .expect("token in the URL");
        c.close().await;
        for (what, id, t) in [
            ("another client", "bob", Some(good.clone())),
            ("expired", "alice", Some(token::mint(&k, "alice", NOW))),
            (
                "another key",
                "alice",
                Some(token::mint(&key(b"guess"), "alice", NOW + 60)),
            ),
            ("no token", "alice", None),
        ] {
            let e = Client::connect(&h.url(), copts(id, t)).await.expect_err(what);
            assert_eq!(e.code(), ErrorCode::Unauthorized, "{what}: {e}");
        }
        h.stop().await;
    })
    .await
}
