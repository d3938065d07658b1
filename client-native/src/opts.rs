//! [`ClientOpts`]: the native client's settings, mapped onto the core's [`ConnConfig`] (whose
//! defaults they are).

use std::time::{Duration, Instant};

use amrpc_core::session::{ClientConfig, ConnConfig, NATIVE_CLIENT_ID};

/// Client settings. The defaults are the core's ([`ConnConfig::default`], upstream v0.8.0's).
#[derive(Clone, Debug)]
pub struct ClientOpts {
    /// Client id sent in `Hello`. Default: `"rc-client"`.
    pub client_id: String,
    /// Auth token sent in `Hello`. Default: none.
    pub token: Option<String>,
    /// Expected schema hash; a different worker is refused. Default: accept any.
    pub schema_hash: Option<u64>,
    /// Push interval wish in ms (0: no pushes). Default: the server's.
    pub push_interval_ms: Option<u32>,
    /// States to receive. Default: all.
    pub states: Option<Vec<String>>,
    /// Shallow clocks: receive only which states are active, not their ticks (the mirror's
    /// ticks then count the activations it saw). Default: false.
    pub shallow: bool,
    /// Ask for the states' args types (the mirror's schema then carries them, see
    /// `State::args_ts`); `amrpc types` uses it. Default: false.
    pub types: bool,
    /// Dial timeout. Default: 3 s.
    pub conn_timeout: Duration,
    /// Failed connection attempts in a row before giving up. Default: 15.
    pub conn_retries: u32,
    /// First delay between attempts; doubles up to `conn_retry_backoff`, with jitter.
    /// Default: 100 ms.
    pub conn_retry_delay: Duration,
    /// Cap of the reconnect delay. Default: 3 s.
    pub conn_retry_backoff: Duration,
    /// A call without a reply for this long is resent (same request id: it runs at most once).
    /// Default: 3 s.
    pub call_timeout: Duration,
    /// Resends before a call fails with `Timeout`. Default: 15.
    pub call_retries: u32,
    /// Reconnect after an unexpected disconnect. Default: true.
    pub reconnect: bool,
    /// Largest server frame accepted. Default: 16 MiB.
    pub max_frame: usize,
    /// Subscribe to the worker's transition stream ([`crate::Client::transitions`]). Default:
    /// false.
    pub stream: bool,
    /// Upstream's `PushAllTicks`: a clock update per worker transition, no coalescing.
    /// Default: false.
    pub all_ticks: bool,
    /// PEM certificates to trust for `wss://` besides the system's roots (a private CA, a
    /// test certificate). Default: none.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for ClientOpts {
    fn default() -> Self {
        let c = ConnConfig::default();
        ClientOpts {
            client_id: NATIVE_CLIENT_ID.into(),
            token: None,
            schema_hash: None,
            push_interval_ms: None,
            states: None,
            shallow: false,
            types: false,
            conn_timeout: Duration::from_millis(c.conn_timeout_ms),
            conn_retries: c.conn_retries,
            conn_retry_delay: Duration::from_millis(c.retry_delay_ms),
            conn_retry_backoff: Duration::from_millis(c.retry_backoff_ms),
            call_timeout: Duration::from_millis(c.call_timeout_ms),
            call_retries: c.call_retries,
            reconnect: c.reconnect,
            max_frame: 16 << 20,
            stream: false,
            all_ticks: false,
            ca_pem: None,
        }
    }
}

impl ClientOpts {
    pub(crate) fn conn_config(&self) -> ConnConfig {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ConnConfig {
            session: ClientConfig {
                client_id: self.client_id.clone(),
                instance: random_u64(),
                token: self.token.clone(),
                schema_hash: self.schema_hash,
                push_interval_ms: self.push_interval_ms,
                states: self.states.clone(),
                shallow: self.shallow,
                types: self.types,
                max_frame: self.max_frame,
                stream: self.stream,
                all_ticks: self.all_ticks,
                ..Default::default()
            },
            conn_timeout_ms: ms(self.conn_timeout),
            conn_retries: self.conn_retries,
            retry_delay_ms: ms(self.conn_retry_delay),
            retry_backoff_ms: ms(self.conn_retry_backoff),
            call_timeout_ms: ms(self.call_timeout),
            call_retries: self.call_retries,
            reconnect: self.reconnect,
            seed: random_u64(),
            endpoints: 1,
        }
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}
