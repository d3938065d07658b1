//! [`Mirror`]: a remote worker mirrored locally. Getters, waits and state contexts answer from
//! the mirrored clock; mutations go to the shell's task and return after the worker's reply (and
//! its clock change) is applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use amrpc_core::{
    Api, Args, BoxFuture, Clock, Ctx, Error, Machine, MutationType, Outcome, Schema, Serialized, Slot, Time, Wait,
    WaitError, WaitRegistry, Why,
};
use tokio::sync::{mpsc, oneshot};

use crate::shell::{Cmd, Target, lock};

/// A remote worker mirrored locally: getters, waits and state contexts answer from the mirrored
/// clock; mutations go to the worker and return after its reply (and clock change) is applied.
#[derive(Clone)]
pub struct Mirror {
    machine: Machine,
    cmd: mpsc::UnboundedSender<Cmd>,
    /// The last error this mirror added (`add_err`).
    err: Arc<Mutex<Option<Error>>>,
    /// The worker's last error, as its server reported it.
    worker_err: Arc<Mutex<Option<Error>>>,
    /// Remote waits: keys, and unbinding (a dropped or canceled `Wait` drops its worker wait).
    waits: Arc<RemoteWaits>,
}

/// Unbinds a remote wait by telling the shell, which tells the worker.
struct RemoteWaits {
    cmd: mpsc::UnboundedSender<Cmd>,
    next: AtomicU64,
}

impl WaitRegistry for RemoteWaits {
    fn unbind(&self, key: u64) {
        let _ = self.cmd.send(Cmd::Unwait(key));
    }
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mirror({:?})", self.machine)
    }
}

fn ready_err<T: Send + 'static>(e: Error) -> BoxFuture<'static, Result<T, Error>> {
    Box::pin(std::future::ready(Err(e)))
}

impl Mirror {
    pub(crate) fn new(
        machine: Machine,
        cmd: mpsc::UnboundedSender<Cmd>,
        worker_err: Arc<Mutex<Option<Error>>>,
    ) -> Mirror {
        Mirror {
            machine,
            waits: Arc::new(RemoteWaits {
                cmd: cmd.clone(),
                next: AtomicU64::new(1),
            }),
            cmd,
            err: Arc::new(Mutex::new(None)),
            worker_err,
        }
    }

    /// A remote wait: `make` builds the shell command for a key and a slot.
    fn remote_wait(&self, ctx: Option<&Ctx>, make: impl FnOnce(u64, Arc<Slot>) -> Cmd) -> Wait {
        if ctx.is_some_and(Ctx::is_canceled) {
            return Wait::ready(Err(WaitError::Canceled));
        }
        let key = self.waits.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::default());
        if !self.send(make(key, slot.clone())) {
            return Wait::ready(Err(WaitError::Disposed));
        }
        let registry: Weak<dyn WaitRegistry> = Arc::downgrade(&self.waits) as Weak<dyn WaitRegistry>;
        Wait::pending(slot, ctx.cloned(), Some((registry, key)))
    }

    /// The local machine that mirrors the worker (read-only: mutate through the mirror).
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    pub(crate) fn send(&self, cmd: Cmd) -> bool {
        self.cmd.send(cmd).is_ok()
    }

    fn call<'a>(
        &'a self,
        ty: MutationType,
        target: Target,
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        let f = self.call_why(ty, target, args);
        Box::pin(async move { f.await.map(|(o, _)| o) })
    }

    fn call_why(
        &self,
        ty: MutationType,
        target: Target,
        args: Option<Args>,
    ) -> BoxFuture<'static, Result<(Outcome, Option<Why>), Error>> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Cmd::Call {
            ty,
            target,
            args,
            reply,
        }) {
            return ready_err(Error::Disposed);
        }
        Box::pin(async move { rx.await.unwrap_or(Err(Error::Disposed)) })
    }

    fn call_names<'a>(
        &'a self,
        ty: MutationType,
        states: &[&str],
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        let names = states.iter().map(|s| s.to_string()).collect();
        self.call(ty, Target::Names(names), args)
    }

    /// A no-sync add (upstream `AddNS`): sent without waiting for a reply, never resent, run at
    /// most once (not at all if the connection drops first). Its change reaches this mirror with
    /// the next push or reply, or [`Mirror::sync`]. Unknown states fail here; a send failure
    /// (not connected) is logged.
    pub fn add_ns(&self, states: &[&str], args: Option<Args>) -> Result<(), Error> {
        self.notify(MutationType::Add, states, args)
    }

    /// [`Mirror::add_ns`] of one state (upstream `Add1NS`).
    pub fn add1_ns(&self, state: &str, args: Option<Args>) -> Result<(), Error> {
        self.notify(MutationType::Add, &[state], args)
    }

    /// A no-sync remove (see [`Mirror::add_ns`]).
    pub fn remove_ns(&self, states: &[&str], args: Option<Args>) -> Result<(), Error> {
        self.notify(MutationType::Remove, states, args)
    }

    fn notify(&self, ty: MutationType, states: &[&str], args: Option<Args>) -> Result<(), Error> {
        let idx = amrpc_core::session::state_indexes(&self.machine, states)?;
        if self.send(Cmd::Notify { ty, states: idx, args }) {
            Ok(())
        } else {
            Err(Error::Disposed)
        }
    }

    /// Fetch the worker's full clock (upstream `Sync`): resolves once this mirror holds it, after
    /// every mutation sent before (no-sync ones included) has run on the worker.
    pub async fn sync(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Cmd::Sync(reply)) {
            return Err(Error::Disposed);
        }
        rx.await.unwrap_or(Err(Error::Disposed)).map(|_| ())
    }

    /// A mutation with states by index in the worker's state order (what a relay forwards:
    /// the indexes it received, never turned into names), with why it was canceled.
    pub fn mutate_indexes(
        &self,
        ty: MutationType,
        states: Vec<u16>,
        args: Option<Args>,
    ) -> BoxFuture<'static, Result<(Outcome, Option<Why>), Error>> {
        self.call_why(ty, Target::Indexes(states), args)
    }
}

impl Api for Mirror {
    /// The reason travels in the worker's `Canceled` reply (no subscription needed).
    fn mutate_why<'a>(
        &'a self,
        ty: MutationType,
        states: &[&str],
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<(Outcome, Option<Why>), Error>> {
        let names = states.iter().map(|s| s.to_string()).collect();
        self.call_why(ty, Target::Names(names), args)
    }
    fn add<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        self.call_names(MutationType::Add, states, args)
    }
    fn remove<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        self.call_names(MutationType::Remove, states, args)
    }
    fn set<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        self.call_names(MutationType::Set, states, args)
    }
    fn add_err_state<'a>(
        &'a self,
        state: &str,
        err: Error,
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        let message = err.to_string();
        *lock(&self.err) = Some(err);
        self.call(MutationType::Add, Target::Err(state.to_string(), message), args)
    }
    /// Evaluated on the worker: completes once `state`'s final handler ran there with args ⊇
    /// `args` (the mirror then shows that clock). Fails with `Disconnected` if the connection
    /// drops first, `Remote { TooManyWaits }` past the server's per-session limit, `InvalidArgs`
    /// for an unknown state. Dropping the wait or canceling `ctx` drops it on the worker too.
    fn when_args(&self, state: &str, args: Args, ctx: Option<&Ctx>) -> Wait {
        let Some(i) = self.machine.index(state) else {
            return Wait::ready(Err(WaitError::InvalidArgs(format!("state unknown: {state}"))));
        };
        let state = i as u16;
        self.remote_wait(ctx, |key, slot| Cmd::WhenArgs { key, state, args, slot })
    }
    /// Evaluated on the worker (see [`Mirror::when_args`] for failures and cancellation).
    fn when_queue(&self, tick: u64, ctx: Option<&Ctx>) -> Wait {
        self.remote_wait(ctx, |key, slot| Cmd::WhenQueue { key, tick, slot })
    }
    /// The worker's last error (upstream `Err()`), or, before the worker reported one, the last
    /// error this mirror added.
    fn err(&self) -> Option<Error> {
        let w = lock(&self.worker_err).clone();
        w.or_else(|| lock(&self.err).clone())
    }
    fn is(&self, states: &[&str]) -> bool {
        self.machine.is(states)
    }
    fn not(&self, states: &[&str]) -> Result<bool, Error> {
        self.machine.try_not(states)
    }
    fn has(&self, states: &[&str]) -> bool {
        self.machine.has(states)
    }
    fn is_time(&self, time: &[u64], states: Option<&[&str]>) -> bool {
        self.machine.is_time(time, states)
    }
    fn is_clock(&self, clock: &Clock) -> bool {
        self.machine.is_clock(clock)
    }
    fn when(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait {
        self.machine.when(states, ctx)
    }
    fn when_not(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait {
        Api::when_not(&self.machine, states, ctx)
    }
    fn when_time(&self, states: &[&str], times: &[u64], ctx: Option<&Ctx>) -> Wait {
        Api::when_time(&self.machine, states, times, ctx)
    }
    fn state_names(&self) -> Vec<String> {
        self.machine.state_names()
    }
    fn active_states(&self) -> Vec<String> {
        self.machine.active_states()
    }
    fn tick(&self, state: &str) -> u64 {
        self.machine.tick(state)
    }
    fn clock(&self, states: Option<&[&str]>) -> Clock {
        self.machine.clock(states)
    }
    fn time(&self, states: Option<&[&str]>) -> Time {
        self.machine.time(states)
    }
    fn new_state_ctx(&self, state: &str) -> Result<Ctx, Error> {
        self.machine.try_new_state_ctx(state)
    }
    fn export(&self) -> Result<Serialized, Error> {
        self.machine.export()
    }
    fn get_struct(&self) -> Schema {
        self.machine.get_struct()
    }
    fn switch<'s>(&self, groups: &[&[&'s str]]) -> Option<&'s str> {
        self.machine.switch(groups)
    }
    fn index(&self, state: &str) -> Option<usize> {
        self.machine.index(state)
    }
    fn string(&self) -> String {
        self.machine.string()
    }
    fn string_all(&self) -> String {
        self.machine.string_all()
    }
    fn inspect(&self, states: Option<&[&str]>) -> String {
        self.machine.inspect(states)
    }
    fn id(&self) -> Arc<str> {
        self.machine.id()
    }
    fn parent_id(&self) -> Option<&str> {
        self.machine.parent_id()
    }
    fn ctx(&self) -> Ctx {
        self.machine.ctx()
    }
    fn log(&self, msg: &str) {
        self.machine.log(msg)
    }
    fn states_verified(&self) -> bool {
        true
    }
    fn dispose(&self) {
        let (tx, _rx) = oneshot::channel();
        self.send(Cmd::Close(tx));
        self.machine.dispose();
    }
    fn when_disposed(&self) -> Wait {
        self.machine.when_disposed()
    }
    fn is_disposed(&self) -> bool {
        self.machine.is_disposed()
    }
}
