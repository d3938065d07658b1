//! What a relay serves: a mirror of a worker that runs elsewhere. The native client's [`Mirror`]
//! is one (a relay over WebSocket); the NATS bridge's edge mirror is another. Sessions read and
//! wait on the mirrored machine and forward mutations through [`Upstream::mutate`].

use amrpc_client::Mirror;
use amrpc_core::session::CallId;
use amrpc_core::{Api, Args, BoxFuture, Error, Machine, MutationType, Outcome, Wait, Why};

/// A mirror a [`crate::Worker`] can serve (see [`crate::Server::add_upstream`]).
pub trait Upstream: Send + Sync + 'static {
    /// The mirrored machine: sessions read it, and the worker's change tracer is bound to it.
    fn machine(&self) -> &Machine;
    /// The remote worker's last error.
    fn err(&self) -> Option<Error>;
    /// Forward mutation `call` (states by index in the worker's order). It resolves once the
    /// mirror shows the mutation's effects, so the session's reply carries them
    /// (read-your-writes).
    fn mutate(
        &self,
        call: CallId,
        ty: MutationType,
        states: Vec<u16>,
        args: Args,
    ) -> BoxFuture<'static, Result<(Outcome, Option<Why>), Error>>;
    /// A `WhenArgs` of `state`, evaluated on the worker.
    fn when_args(&self, state: &str, args: Args) -> Wait;
    /// A `WhenQueue` of the worker's queue tick `tick`.
    fn when_queue(&self, tick: u64) -> Wait;
    /// The worker's replay-cache id, when the upstream keeps at-most-once by the client's own
    /// [`CallId`] (sessions then announce it in `Welcome`, so a client that moves to another
    /// front server of the same worker resends what it had in flight). `None`: the relay keeps
    /// its own memory under a fresh id.
    fn replay_id(&self) -> Option<u64> {
        None
    }
}

/// A relay over WebSocket: the mirror's own connection keeps at-most-once to the worker (its
/// own request ids), so the client's `CallId` stops here.
impl Upstream for Mirror {
    fn machine(&self) -> &Machine {
        Mirror::machine(self)
    }
    fn err(&self) -> Option<Error> {
        Api::err(self)
    }
    fn mutate(
        &self,
        _call: CallId,
        ty: MutationType,
        states: Vec<u16>,
        args: Args,
    ) -> BoxFuture<'static, Result<(Outcome, Option<Why>), Error>> {
        self.mutate_indexes(ty, states, Some(args))
    }
    fn when_args(&self, state: &str, args: Args) -> Wait {
        Api::when_args(self, state, args, None)
    }
    fn when_queue(&self, tick: u64) -> Wait {
        Api::when_queue(self, tick, None)
    }
}

/// An edge's mirror of a worker published over NATS (`amrpc-nats`): the client's `CallId`
/// travels on to the worker's host, whose replay cache keeps each call at most once whichever
/// edge sent it, so every edge of a worker announces the worker's replay id.
impl Upstream for amrpc_nats::EdgeMirror {
    fn machine(&self) -> &Machine {
        amrpc_nats::EdgeMirror::machine(self)
    }
    fn err(&self) -> Option<Error> {
        self.worker_err().map(Error::Other)
    }
    fn mutate(
        &self,
        call: CallId,
        ty: MutationType,
        states: Vec<u16>,
        args: Args,
    ) -> BoxFuture<'static, Result<(Outcome, Option<Why>), Error>> {
        Box::pin(self.mutate_call(call, ty, states, args))
    }
    fn when_args(&self, state: &str, args: Args) -> Wait {
        match self.machine().index(state).and_then(|i| u16::try_from(i).ok()) {
            Some(i) => self.when_args_index(i, args),
            None => Wait::ready(Err(amrpc_core::WaitError::InvalidArgs(format!(
                "state unknown: {state}"
            )))),
        }
    }
    fn when_queue(&self, tick: u64) -> Wait {
        amrpc_nats::EdgeMirror::when_queue(self, tick)
    }
    fn replay_id(&self) -> Option<u64> {
        Some(amrpc_nats::EdgeMirror::replay_id(self))
    }
}
