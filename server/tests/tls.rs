//! `wss://`: the server behind rustls with a certificate made here (rcgen), the native client
//! trusting it by `ca_pem`. A client that does not trust it is refused; a plain `ws://` client
//! on the TLS port fails cleanly (an error, promptly) and the server keeps serving.
mod rpc_support;

use std::time::Duration;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::{Api, ErrorCode, Outcome};
use amrpc_server::{Server, ServerOpts, TlsConfig};
use rpc_support::{rels_worker, within};

const LIMIT: Duration = Duration::from_secs(60);

fn cert() -> (String, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names).expect("rcgen");
    (cert.pem(), signing_key.serialize_pem())
}

fn opts(id: &str, ca: Option<&str>) -> ClientOpts {
    ClientOpts {
        client_id: id.into(),
        ca_pem: ca.map(|c| c.as_bytes().to_vec()),
        conn_retries: 1,
        reconnect: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_client_over_wss() {
    within(LIMIT, "native_client_over_wss", async {
        let (cert_pem, key_pem) = cert();
        let tls = TlsConfig::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).expect("tls config");
        let srv = Server::new(ServerOpts::default());
        let worker = srv.add_worker("w", rels_worker("w-tls")).unwrap();
        let addr = srv.spawn_tls("127.0.0.1:0", tls).await.unwrap();
        let url = format!("wss://localhost:{}/ws/w", addr.port());

        // trusted by its CA: a full session
        let c = Client::connect(&url, opts("tls", Some(&cert_pem)))
            .await
            .expect("wss connects");
        assert_eq!(c.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
        assert!(worker.machine().is(&["A", "C"]));
        assert_eq!(
            c.mirror().time(None),
            worker.machine().time(None),
            "the mirror is in sync"
        );

        // by IP address too (the certificate names 127.0.0.1)
        let ip = format!("wss://127.0.0.1:{}/ws/w", addr.port());
        let c2 = Client::connect(&ip, opts("tls-ip", Some(&cert_pem)))
            .await
            .expect("wss by IP");
        c2.close().await;

        // not trusted (system roots only): refused, with an error, not a hang
        let err = Client::connect(&url, opts("untrusting", None))
            .await
            .expect_err("unknown issuer");
        assert_eq!(err.code(), ErrorCode::ConnRetryFailed, "{err}");

        // plain ws:// to the TLS port: a clean failure, promptly
        let plain = format!("ws://127.0.0.1:{}/ws/w", addr.port());
        let r = within(
            Duration::from_secs(15),
            "plain ws to the TLS port",
            tokio_tungstenite::connect_async(plain.as_str()),
        )
        .await;
        assert!(r.is_err(), "a plain WebSocket must not open on the TLS port");
        let err = Client::connect(&plain, opts("plain", None))
            .await
            .expect_err("plain client");
        assert_eq!(err.code(), ErrorCode::ConnRetryFailed, "{err}");

        // and the trusted session is unaffected by all of that
        assert_eq!(c.mirror().remove1("C", None).await, Ok(Outcome::Executed));
        assert!(worker.machine().not1("C"));
        c.close().await;
        srv.shutdown();
    })
    .await
}

#[test]
fn bad_certificates_are_typed_errors() {
    let (cert_pem, key_pem) = cert();
    let e = TlsConfig::from_pem(b"not a certificate", key_pem.as_bytes()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgs, "{e}");
    let e = TlsConfig::from_pem(cert_pem.as_bytes(), b"").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgs, "{e}");
    // a key that is not the certificate's
    let (_, other_key) = cert();
    let e = TlsConfig::from_pem(cert_pem.as_bytes(), other_key.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("tls"), "{e}");
    // a CA that is not PEM, on the client
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(Client::connect("wss://127.0.0.1:1/ws/w", opts("x", Some("garbage"))))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgs, "{e}");
}
