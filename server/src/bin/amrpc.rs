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
    /// Servers for the browser and Node tests: an open one (workers `test`, `downloads`) and a
    /// locked one (client id `allowed-client`, token `secret`, Origin `http://allowed.test`);
    /// prints their URLs as `AMRPC_TEST_URL=…` and `AMRPC_TEST_URL_LOCKED=…` lines.
    #[command(hide = true)]
    ServeTest {
        /// Directory with the web page to serve at `/` (optional).
        #[arg(long)]
        web: Option<std::path::PathBuf>,
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
        Cmd::ServeTest { web } => {
            let open = Server::new(ServerOpts::default());
            demo::test_worker(&open, "test")?;
            open.add_worker("downloads", demo::download_worker(Duration::from_millis(200))?)?;
            let locked = Server::new(ServerOpts {
                allow_ids: Some(vec!["allowed-client".into()]),
                auth: Some(std::sync::Arc::new(|_id: &str, token: Option<&str>| token == Some("secret"))),
                allowed_origins: Some(vec!["http://allowed.test".into()]),
                ..Default::default()
            });
            demo::test_worker(&locked, "test")?;
            let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("AMRPC_TEST_URL=ws://{}", l1.local_addr()?);
            println!("AMRPC_TEST_URL_LOCKED=ws://{}", l2.local_addr()?);
            println!("AMRPC_TEST_HTTP=http://{}", l1.local_addr()?);
            use std::io::Write;
            std::io::stdout().flush()?;
            let router = match web {
                Some(dir) => open.router().fallback_service(tower_http::services::ServeDir::new(dir)),
                None => open.router(),
            };
            let l2srv = locked.clone();
            tokio::spawn(async move { l2srv.serve(l2).await });
            open.serve_router(l1, router).await?;
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
