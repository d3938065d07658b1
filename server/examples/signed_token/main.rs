//! An auth hook that checks signed tokens (`ServerOpts::auth`): the server serves the demo
//! download worker; a client gets in only with a token minted for its client id with the
//! server's key, before it expires. Browsers pass it as `?token=…` (they cannot set headers
//! on a WebSocket), other clients in `Hello`.
//!
//!     cargo run -p amrpc-server --example signed_token
//!
//! prints a URL with a fresh token for client id `alice`, valid 10 minutes; try
//! `amrpc repl --id alice '<url>'`, then another `--id` with the same token (refused,
//! `Unauthorized`). Token format and checks: `token.rs` (tested in tests/signed_token.rs).

mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amrpc_server::{Server, ServerOpts, demo};
use ring::hmac;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // a real deployment loads the key from a secret store; here a fresh one per run
    let rng = ring::rand::SystemRandom::new();
    let key = Arc::new(hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| "no randomness")?);
    let check = key.clone();
    let srv = Server::new(ServerOpts {
        auth: Some(Arc::new(
            move |client_id: &str, token: Option<&str>| match token::verify(&check, client_id, token, now()) {
                Ok(()) => true,
                Err(why) => {
                    eprintln!("refused {client_id:?}: {why:?}");
                    false
                }
            },
        )),
        ..Default::default()
    });
    srv.add_worker("downloads", demo::download_worker(Duration::from_millis(400))?)?;
    let addr = srv.spawn("127.0.0.1:8090").await?;
    let t = token::mint(&key, "alice", now() + 600);
    println!("ws://{addr}/ws/downloads?token={t}");
    tokio::signal::ctrl_c().await?;
    srv.shutdown();
    Ok(())
}
