//! `amrpc`: run a server with demo workers, or a REPL against a worker.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod repl;

use amrpc_client::{Client, ClientOpts};
use amrpc_server::{Server, ServerOpts, demo};
use axum::Router;
use axum::http::{HeaderValue, header};
use clap::{Parser, Subcommand};
use tower_http::services::ServeDir;

#[derive(Parser)]
#[command(name = "amrpc", version, about = "asyncmachine workers over WebSocket")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the demo workers (`bench`: upstream's benchmark worker; `downloads`: a download
    /// manager that changes by itself) and the web page that shows them.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Push interval in milliseconds.
        #[arg(long, default_value_t = 16)]
        push_ms: u64,
        /// The web folder: its built inspector (`inspector/dist`) is served at `/`, the classic
        /// page (`classic/`) at `/classic` [default: `web/` here, else the workspace's].
        #[arg(long)]
        web: Option<PathBuf>,
        /// Directory with the page's wasm package (`wasm-pack build --target web`), served at
        /// `/pkg` [default: `target/npm/web` here, else the workspace's; `scripts/serve.sh`
        /// builds it].
        #[arg(long)]
        pkg: Option<PathBuf>,
        /// A browser Origin allowed besides the server's own (repeatable; `*`: any). Pages from
        /// other origins are refused by default.
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
        /// Keep the workers' state across planned restarts: on SIGINT/SIGTERM each worker's
        /// clock and replay memory go to `DIR/<worker>.json`; at start a snapshot found there is
        /// restored (once: it is renamed `.json.restored`).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Serve https:// and wss:// with this PEM certificate chain (needs --tls-key).
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Join a NATS server (with JetStream), e.g. nats://127.0.0.1:4222: the demo workers
        /// are published there for edge servers on other hosts (docs/NATS.md).
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// With --nats: be an edge server — no workers of its own; serve every worker
        /// published on NATS, found by name.
        #[arg(long, requires = "nats")]
        edge: bool,
    },
    /// Servers for the browser and Node tests: an open one (workers `test`, `downloads`) and a
    /// locked one (client id `allowed-client`, token `secret`, Origin `http://allowed.test`);
    /// prints their URLs as `AMRPC_TEST_URL=…`, `AMRPC_TEST_URL_LOCKED=…` and `AMRPC_TEST_URL_AUTH=…` (id and token checks, no Origin list) lines.
    #[command(hide = true)]
    ServeTest {
        /// Directory with the web page to serve at `/` (optional).
        #[arg(long)]
        web: Option<PathBuf>,
        /// Directory with the page's wasm package, served at `/pkg` [default with `--web`:
        /// `target/npm/web` here, else the workspace's].
        #[arg(long)]
        pkg: Option<PathBuf>,
        /// Also serve the open server over TLS with `DIR/cert.pem` and `DIR/key.pem` (made by
        /// `cargo run -p amrpc-server --example test_cert -- DIR`): prints
        /// `AMRPC_TEST_URL_TLS=wss://localhost:…` and `AMRPC_TEST_HTTPS=https://localhost:…`.
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
    },
    /// The restart tests' server: worker `journal` (`Inc` appends its `id` arg to the
    /// journal file on every run), with `--state-dir` as `serve` has it.
    #[command(hide = true)]
    ServeJournal {
        /// Address to listen on.
        #[arg(long)]
        addr: String,
        /// The journal file (appended to).
        #[arg(long)]
        journal: PathBuf,
        /// As `serve --state-dir`.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Write TypeScript typings of a worker (`.d.ts`): its state names as a union and each
    /// state's args type, for `connect<Schema>(url)` of the npm package `amrpc`.
    Types {
        /// Worker URL, e.g. ws://127.0.0.1:8080/ws/downloads
        url: String,
        /// Output file [default: standard output].
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Client id.
        #[arg(long, default_value = "rc-types")]
        id: String,
        /// Auth token.
        #[arg(long)]
        token: Option<String>,
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
        /// A PEM CA certificate to trust for wss:// besides the system's roots.
        #[arg(long, value_name = "PEM")]
        ca: Option<PathBuf>,
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
        Cmd::Serve {
            addr,
            push_ms,
            web,
            pkg,
            allow_origins,
            state_dir,
            tls_cert,
            tls_key,
            nats,
            edge,
        } => {
            let tls = match (&tls_cert, &tls_key) {
                (Some(c), Some(k)) => Some(amrpc_server::TlsConfig::from_pem_files(c, k)?),
                _ => None,
            };
            let (http, ws) = if tls.is_some() {
                ("https", "wss")
            } else {
                ("http", "ws")
            };
            let srv = Server::new(ServerOpts {
                push_interval: Duration::from_millis(push_ms),
                allowed_origins: allow_origins,
                ..Default::default()
            });
            if !edge {
                let (bench, _worker) = amrpc_core::demo::bench_worker(1)?;
                add_restored(&srv, "bench", bench, state_dir.as_deref())?;
                let downloads = demo::download_worker(Duration::from_millis(400))?;
                add_restored(&srv, "downloads", downloads, state_dir.as_deref())?;
            }
            // kept for as long as the server runs: dropping them stops publishing / following
            let mut _hosts = Vec::new();
            let mut _edge = None;
            if let Some(url) = &nats {
                let link = amrpc_nats::connect(url, if edge { "amrpc-edge" } else { "amrpc-host" }).await?;
                if edge {
                    _edge = Some(amrpc_server::nats::serve_edge(srv.clone(), link, Default::default()).await?);
                    println!("amrpc edge of {url}: serving the workers published there");
                } else {
                    _hosts = amrpc_server::nats::publish_workers(&srv, &link, &Default::default()).await?;
                    println!("amrpc publishing {} workers on {url}", _hosts.len());
                }
            }
            let web = web.unwrap_or_else(|| default_dir("web"));
            let pkg = pkg.unwrap_or_else(|| default_dir("target/npm/web"));
            let router = with_web(srv.router(), Some(&web), Some(&pkg));
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            let local = listener.local_addr()?;
            println!("amrpc serving on {http}://{local}");
            for w in srv.worker_names() {
                println!("  worker {w}: {ws}://{local}/ws/{w}");
            }
            println!("  inspector: {http}://{local}/ (pick a worker; the classic page: {http}://{local}/classic/)");
            println!("try: amrpc repl {ws}://{local}/ws/downloads");
            let s2 = srv.clone();
            tokio::spawn(async move {
                stop_signal().await;
                s2.shutdown();
            });
            match &tls {
                Some(tls) => srv.serve_router_tls(listener, router, tls).await?,
                None => srv.serve_router(listener, router).await?,
            }
            save_on_exit(&srv, state_dir.as_deref()).await?;
        }
        Cmd::ServeJournal {
            addr,
            journal,
            state_dir,
        } => {
            let srv = Server::new(ServerOpts {
                mutation_rate: 0,
                ..Default::default()
            });
            add_restored(&srv, "journal", demo::journal_worker(&journal)?, state_dir.as_deref())?;
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            println!("amrpc serving on http://{}", listener.local_addr()?);
            use std::io::Write;
            std::io::stdout().flush()?;
            let s2 = srv.clone();
            tokio::spawn(async move {
                stop_signal().await;
                s2.shutdown();
            });
            srv.serve(listener).await?;
            save_on_exit(&srv, state_dir.as_deref()).await?;
        }
        Cmd::ServeTest { web, pkg, tls_dir } => {
            // any Origin: the wasm-bindgen tests run in a page of their own test server; the
            // default (same origin only) is tested in server/tests/integration.rs
            let open = Server::new(ServerOpts {
                allowed_origins: vec!["*".into()],
                ..Default::default()
            });
            demo::test_worker(&open, "test")?;
            demo::queue_workers(&open, "queue")?;
            open.add_worker("typed", demo::typed_worker()?)?;
            open.add_worker("downloads", demo::download_worker(Duration::from_millis(200))?)?;
            let (bench, _bench_worker) = amrpc_core::demo::bench_worker(1)?;
            open.add_worker("bench", bench)?;
            let locked = Server::new(ServerOpts {
                allow_ids: Some(vec!["allowed-client".into()]),
                auth: Some(std::sync::Arc::new(|_id: &str, token: Option<&str>| {
                    token == Some("secret")
                })),
                allowed_origins: vec!["http://allowed.test".into()],
                ..Default::default()
            });
            demo::test_worker(&locked, "test")?;
            // the same id and token checks with any Origin: the test pages (served by the open
            // server, another origin) can test them too
            let auth = Server::new(ServerOpts {
                allowed_origins: vec!["*".into()],
                allow_ids: Some(vec!["allowed-client".into()]),
                auth: Some(std::sync::Arc::new(|_id: &str, token: Option<&str>| {
                    token == Some("secret")
                })),
                ..Default::default()
            });
            demo::test_worker(&auth, "test")?;
            let l3 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("AMRPC_TEST_URL=ws://{}", l1.local_addr()?);
            println!("AMRPC_TEST_URL_LOCKED=ws://{}", l2.local_addr()?);
            println!("AMRPC_TEST_URL_AUTH=ws://{}", l3.local_addr()?);
            println!("AMRPC_TEST_HTTP=http://{}", l1.local_addr()?);
            let tls = match &tls_dir {
                Some(dir) => {
                    let tls = amrpc_server::TlsConfig::from_pem_files(&dir.join("cert.pem"), &dir.join("key.pem"))?;
                    let l4 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let port = l4.local_addr()?.port();
                    // the certificate names localhost and 127.0.0.1
                    println!("AMRPC_TEST_URL_TLS=wss://localhost:{port}");
                    println!("AMRPC_TEST_HTTPS=https://localhost:{port}");
                    Some((l4, tls))
                }
                None => None,
            };
            use std::io::Write;
            std::io::stdout().flush()?;
            let pkg = match (&web, pkg) {
                (_, Some(p)) => Some(p),
                (Some(_), None) => Some(default_dir("target/npm/web")),
                (None, None) => None,
            };
            let router = with_web(open.router(), web.as_deref(), pkg.as_deref());
            let l2srv = locked.clone();
            tokio::spawn(async move { l2srv.serve(l2).await });
            tokio::spawn(async move { auth.serve(l3).await });
            if let Some((l4, tls)) = tls {
                let (o, r) = (open.clone(), router.clone());
                tokio::spawn(async move { o.serve_router_tls(l4, r, &tls).await });
            }
            open.serve_router(l1, router).await?;
        }
        Cmd::Repl { url, id, token, ca } => {
            let opts = ClientOpts {
                client_id: id,
                token,
                ca_pem: ca.map(std::fs::read).transpose()?,
                ..Default::default()
            };
            let client = Client::connect(&url, opts).await?;
            repl::run(client.mirror().clone()).await?;
            client.close().await;
        }
        Cmd::Types { url, out, id, token } => {
            let opts = ClientOpts {
                client_id: id,
                token,
                types: true,
                conn_retries: 2,
                reconnect: false,
                ..Default::default()
            };
            let client = Client::connect(&url, opts).await?;
            let m = client.mirror().machine();
            let names = m.state_names();
            let schema = m.get_struct();
            let hash = amrpc_core::wire::machine_schema_hash(m);
            let worker = url.rsplit('/').next().unwrap_or(&url);
            let text = amrpc_core::ts::declaration(worker, &names, &schema, hash);
            client.close().await;
            match out {
                Some(path) => {
                    std::fs::write(&path, text)?;
                    eprintln!("wrote {} ({} states)", path.display(), names.len());
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

/// `rel` in the current directory if it is there, else in the workspace this binary was built
/// from (so `cargo run` works from any directory), else `rel` as given.
fn default_dir(rel: &str) -> PathBuf {
    let here = PathBuf::from(rel);
    if here.is_dir() {
        return here;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    if workspace.is_dir() { workspace } else { here }
}

/// Add the page (`web` at `/`) and its wasm package (`pkg` at `/pkg`) to a server's router. Both
/// are sent with `Cache-Control: no-cache` (revalidated on every load, so a rebuilt package is
/// never mixed with a cached one); `.wasm` goes out as `application/wasm`.
fn with_web(router: Router, web: Option<&Path>, pkg: Option<&Path>) -> Router {
    if web.is_none() && pkg.is_none() {
        return router;
    }
    let mut files = Router::new();
    if let Some(pkg) = pkg {
        if !pkg.join("amrpc.js").is_file() {
            eprintln!(
                "warning: {} has no amrpc.js: the page needs the wasm package; build it with scripts/serve.sh",
                pkg.display()
            );
        }
        files = files.nest_service("/pkg", ServeDir::new(pkg));
    }
    if let Some(web) = web {
        // web/inspector/dist (the built inspector) at /, the classic page at /classic
        let classic = web.join("classic");
        let inspector = web.join("inspector").join("dist");
        if classic.join("index.html").is_file() {
            files = files.nest_service("/classic", ServeDir::new(&classic));
        }
        if inspector.join("index.html").is_file() {
            files = files.fallback_service(ServeDir::new(inspector));
        } else if web.join("index.html").is_file() {
            files = files.fallback_service(ServeDir::new(web));
        } else {
            eprintln!(
                "warning: the inspector is not built ({} is missing; scripts/serve.sh builds it): serving the classic page at /",
                inspector.join("index.html").display()
            );
            files = files.fallback_service(ServeDir::new(classic));
        }
    }
    let files = files.layer(axum::middleware::map_response(
        |mut res: axum::response::Response| async move {
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            res
        },
    ));
    router.merge(files)
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM (what `kill` and service managers send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serve `machine` as `name`, from its snapshot in `state_dir` if there is one.
fn add_restored(
    srv: &Server,
    name: &str,
    machine: amrpc_core::Machine,
    state_dir: Option<&Path>,
) -> Result<(), amrpc_server::ServerError> {
    let snap = match state_dir {
        Some(dir) => amrpc_server::take_snapshot(dir, name)?,
        None => None,
    };
    if let (Some(dir), Some(_)) = (state_dir, &snap) {
        println!("restored worker {name} from {}", dir.display());
    }
    srv.add_worker_restored(name, machine, snap.as_ref())?;
    Ok(())
}

/// After a graceful stop: once the sessions ended, every worker's snapshot to `state_dir`.
async fn save_on_exit(srv: &Server, state_dir: Option<&Path>) -> Result<(), amrpc_server::ServerError> {
    let Some(dir) = state_dir else { return Ok(()) };
    if !srv.sessions_closed(Duration::from_secs(5)).await {
        eprintln!("sessions still open after 5 s; saving anyway");
    }
    for path in srv.save_snapshots(dir)? {
        println!("saved {}", path.display());
    }
    Ok(())
}
