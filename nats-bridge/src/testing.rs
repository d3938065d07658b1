//! (feature `testing`) A real `nats-server -js` for tests and benchmarks: on a free loopback
//! port with its own storage directory, stopped when dropped. Needs Debian's `nats-server`
//! (`scripts/test.sh` installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::BridgeError;

/// One `nats-server` process with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
}

fn free_port() -> Result<u16, BridgeError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(BridgeError::nats)
}

impl NatsServer {
    /// Start one and wait (bounded: 5 s) until it accepts connections.
    pub async fn start() -> Result<NatsServer, BridgeError> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("amrpc-nats-{}-{port}", std::process::id()));
        Self::start_on(port, dir).await
    }

    async fn start_on(port: u16, dir: std::path::PathBuf) -> Result<NatsServer, BridgeError> {
        std::fs::create_dir_all(&dir).map_err(BridgeError::nats)?;
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BridgeError::Nats(format!("nats-server (apt-get install nats-server): {e}")))?;
        // owned from here: an early return stops it (Drop)
        let server = NatsServer {
            child: Some(child),
            port,
            dir,
        };
        // no readiness signal but the port: poll it, bounded
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(BridgeError::Timeout(format!(
            "nats-server did not listen on {port} within 5 s"
        )))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client of this server that reconnects forever.
    pub async fn client(&self) -> Result<async_nats::Client, BridgeError> {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(self.url())
            .await
            .map_err(BridgeError::nats)
    }

    /// Stop it and start it again on the same port and storage (JetStream keeps its buckets).
    pub async fn restart(mut self) -> Result<NatsServer, BridgeError> {
        self.stop();
        let (port, dir) = (self.port, std::mem::take(&mut self.dir));
        Self::start_on(port, dir).await
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
