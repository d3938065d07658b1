//! Connect to a worker and print its active states whenever they change:
//! `cargo run -p amrpc-client --example watch -- ws://127.0.0.1:8080/ws/downloads`
//! (start the server with `scripts/serve.sh`).

use amrpc_client::{Client, ClientOpts};
use amrpc_core::Api;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), amrpc_core::Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws/downloads".into());
    let client = Client::connect(&url, ClientOpts::default()).await?;
    let mirror = client.mirror();
    println!("{} states: {:?}", mirror.id(), mirror.state_names());
    let mut last = String::new();
    // bounded: 50 changes, then close (a mirror's waits answer locally, from pushes)
    for _ in 0..50 {
        let now = mirror.string();
        if now != last {
            println!("{now}");
            last = now;
        }
        let time = mirror.time(None);
        let names = mirror.state_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        // the next change of any state's tick
        let next: Vec<u64> = time.iter().map(|t| t + 1).collect();
        let waits: Vec<_> = names
            .iter()
            .zip(&next)
            .map(|(s, t)| mirror.when_time(&[s], &[*t], None))
            .collect();
        futures_util::future::select_all(waits)
            .await
            .0
            .map_err(|e| amrpc_core::Error::Rpc {
                code: e.code(),
                message: e.to_string(),
            })?;
    }
    client.close().await;
    Ok(())
}
