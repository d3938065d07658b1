//! `amrpc`: run a server with demo workers, or a REPL against a worker.

use std::time::Duration;

use amrpc_server::{Client, ClientOpts, Server, ServerOpts, demo, repl};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "amrpc", version, about = "asyncmachine workers over WebSocket")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the demo workers (`bench`: upstream's benchmark worker; `downloads`: a download
    /// manager that changes by itself).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Push interval in milliseconds.
        #[arg(long, default_value_t = 16)]
        push_ms: u64,
    },
    /// Connect to a worker and type commands (`help` lists them).
    Repl {
        /// Worker URL, e.g. ws://127.0.0.1:8080/ws/downloads
        url: String,
        /// Client id.
        #[arg(long, default_value = "rc-repl")]
        id: String,
        /// Auth token.
        #[arg(long)]
        token: Option<String>,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "amrpc_server=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Serve { addr, push_ms } => {
            let srv = Server::new(ServerOpts {
                push_interval: Duration::from_millis(push_ms),
                ..Default::default()
            });
            let (bench, _worker) = amrpc_core::demo::bench_worker(1)?;
            srv.add_worker("bench", bench)?;
            srv.add_worker("downloads", demo::download_worker(Duration::from_millis(400))?)?;
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            let local = listener.local_addr()?;
            println!("amrpc serving on http://{local}");
            for w in srv.worker_names() {
                println!("  worker {w}: ws://{local}/ws/{w}");
            }
            println!("try: amrpc repl ws://{local}/ws/downloads");
            let s2 = srv.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    s2.shutdown();
                }
            });
            srv.serve(listener).await?;
        }
        Cmd::Repl { url, id, token } => {
            let opts = ClientOpts {
                client_id: id,
                token,
                ..Default::default()
            };
            let client = Client::connect(&url, opts).await?;
            repl::run(client.mirror().clone()).await?;
            client.close().await;
        }
    }
    Ok(())
}
