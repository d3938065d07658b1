//! The `Api` trait: what "a machine" is, for the local machine and for remote mirrors alike
//! (upstream `machine.Api`). Getters and waits are synchronous/local; mutations return futures
//! so a mirror can send them over the network.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;

use crate::machine::{Clock, Machine, Serialized, Time};
use crate::schema::Schema;
use crate::types::{Args, Error, MutationType, Outcome};
use crate::wait::{Ctx, Wait};

/// A boxed, `Send` future (object-safe trait methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A machine, local or remote. Mutations are futures (immediately ready for the local machine);
/// everything else answers from local (for a mirror: mirrored) state.
pub trait Api: Send + Sync {
    // ----- mutations (remote on a mirror) -----

    /// Activate states.
    fn add<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>>;
    /// Deactivate states.
    fn remove<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>>;
    /// Make exactly these states active.
    fn set<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>>;
    /// Store an error and add `state` plus `Exception`.
    fn add_err_state<'a>(
        &'a self,
        state: &str,
        err: Error,
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<Outcome, Error>>;
    /// A mutation that also says why it was canceled: the relation that rejected a called state
    /// or the handler that said no ([`crate::Why`]); `None` when it ran or was queued.
    fn mutate_why<'a>(
        &'a self,
        ty: MutationType,
        states: &[&str],
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<(Outcome, Option<crate::Why>), Error>>;
    /// Activate one state.
    fn add1<'a>(&'a self, state: &str, args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        self.add(&[state], args)
    }
    /// Deactivate one state.
    fn remove1<'a>(&'a self, state: &str, args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        self.remove(&[state], args)
    }
    /// Store an error and add `Exception`.
    fn add_err<'a>(&'a self, err: Error, args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        self.add_err_state(crate::EXCEPTION, err, args)
    }
    /// Completes when `state`'s final handler runs with matching args (remote on a mirror).
    fn when_args(&self, state: &str, args: Args, ctx: Option<&Ctx>) -> Wait;
    /// Completes once the worker processed the mutation with queue tick `tick` (from
    /// [`Outcome::Queued`]); on a mirror, evaluated on the worker (upstream `WhenQueue`).
    fn when_queue(&self, tick: u64, ctx: Option<&Ctx>) -> Wait;
    /// The last error.
    fn err(&self) -> Option<Error>;

    // ----- checking (local) -----

    /// `Exception` is active.
    fn is_err(&self) -> bool {
        self.is1(crate::EXCEPTION)
    }
    /// All states active.
    fn is(&self, states: &[&str]) -> bool;
    /// One state active.
    fn is1(&self, state: &str) -> bool {
        self.is(&[state])
    }
    /// None active (unknown: `StateUnknown`).
    fn not(&self, states: &[&str]) -> Result<bool, Error>;
    /// Not active.
    fn not1(&self, state: &str) -> Result<bool, Error> {
        self.not(&[state])
    }
    /// Some group fully active.
    fn any(&self, groups: &[&[&str]]) -> bool {
        groups.iter().any(|g| self.is(g))
    }
    /// Some state active.
    fn any1(&self, states: &[&str]) -> bool {
        states.iter().any(|s| self.is1(s))
    }
    /// All names known.
    fn has(&self, states: &[&str]) -> bool;
    /// Name known.
    fn has1(&self, state: &str) -> bool {
        self.has(&[state])
    }
    /// Nothing changed since `time` (for `states`, or all).
    fn is_time(&self, time: &[u64], states: Option<&[&str]>) -> bool;
    /// Nothing changed since `clock`.
    fn is_clock(&self, clock: &Clock) -> bool;

    // ----- waiting (local) -----

    /// All states active.
    fn when(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait;
    /// One state active.
    fn when1(&self, state: &str, ctx: Option<&Ctx>) -> Wait {
        self.when(&[state], ctx)
    }
    /// None active.
    fn when_not(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait;
    /// Not active.
    fn when_not1(&self, state: &str, ctx: Option<&Ctx>) -> Wait {
        self.when_not(&[state], ctx)
    }
    /// Ticks reached.
    fn when_time(&self, states: &[&str], times: &[u64], ctx: Option<&Ctx>) -> Wait;
    /// Tick grew by `ticks`.
    fn when_ticks(&self, state: &str, ticks: u64, ctx: Option<&Ctx>) -> Wait {
        let t = self.tick(state) + ticks;
        self.when_time(&[state], &[t], ctx)
    }
    /// Tick ≥ `tick`.
    fn when_ticks_eq(&self, state: &str, tick: u64, ctx: Option<&Ctx>) -> Wait {
        self.when_time(&[state], &[tick], ctx)
    }
    /// `Exception` active.
    fn when_err(&self, ctx: Option<&Ctx>) -> Wait {
        self.when1(crate::EXCEPTION, ctx)
    }

    // ----- getters (local) -----

    /// State order.
    fn state_names(&self) -> Vec<String>;
    /// Active states.
    fn active_states(&self) -> Vec<String>;
    /// One tick.
    fn tick(&self, state: &str) -> u64;
    /// Ticks by name.
    fn clock(&self, states: Option<&[&str]>) -> Clock;
    /// Ticks in order.
    fn time(&self, states: Option<&[&str]>) -> Time;
    /// Sum of ticks.
    fn time_sum(&self, states: Option<&[&str]>) -> u64 {
        self.time(states).iter().sum()
    }
    /// A context canceled when `state` deactivates.
    fn new_state_ctx(&self, state: &str) -> Result<Ctx, Error>;
    /// Id, ticks and order.
    fn export(&self) -> Result<Serialized, Error>;
    /// The schema.
    fn get_struct(&self) -> Schema;
    /// First active state of the groups.
    fn switch<'s>(&self, groups: &[&[&'s str]]) -> Option<&'s str>;
    /// Position in the state order.
    fn index(&self, state: &str) -> Option<usize>;
    /// `(A:1 B:1)`.
    fn string(&self) -> String;
    /// `(A:1) [B:0]`.
    fn string_all(&self) -> String;
    /// Upstream's inspect text.
    fn inspect(&self, states: Option<&[&str]>) -> String;

    // ----- misc (local) -----

    /// Machine id.
    fn id(&self) -> alloc::sync::Arc<str>;
    /// Parent id.
    fn parent_id(&self) -> Option<&str>;
    /// The machine (or mirror) context.
    fn ctx(&self) -> Ctx;
    /// Log a line.
    fn log(&self, msg: &str);
    /// States verified.
    fn states_verified(&self) -> bool;
    /// Dispose.
    fn dispose(&self);
    /// Disposal finished.
    fn when_disposed(&self) -> Wait;
    /// Disposed.
    fn is_disposed(&self) -> bool;
}

fn ready<'a>(r: Result<Outcome, Error>) -> BoxFuture<'a, Result<Outcome, Error>> {
    Box::pin(core::future::ready(r))
}

impl Api for Machine {
    fn mutate_why<'a>(
        &'a self,
        ty: MutationType,
        states: &[&str],
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<(Outcome, Option<crate::Why>), Error>> {
        Box::pin(core::future::ready(Machine::mutate_why(self, ty, states, args)))
    }
    fn add<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        ready(self.try_add(states, args))
    }
    fn remove<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        ready(self.try_remove(states, args))
    }
    fn set<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        ready(self.try_set(states, args))
    }
    fn add_err_state<'a>(
        &'a self,
        state: &str,
        err: Error,
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        if !self.has1(state) {
            return ready(Err(Error::StateUnknown(state.into())));
        }
        ready(Ok(Machine::add_err_state(self, state, err, args)))
    }
    fn when_args(&self, state: &str, args: Args, ctx: Option<&Ctx>) -> Wait {
        Machine::when_args(self, state, args, ctx)
    }
    fn when_queue(&self, tick: u64, ctx: Option<&Ctx>) -> Wait {
        Machine::when_queue(self, tick, ctx)
    }
    fn err(&self) -> Option<Error> {
        Machine::err(self)
    }
    fn is(&self, states: &[&str]) -> bool {
        Machine::is(self, states)
    }
    fn not(&self, states: &[&str]) -> Result<bool, Error> {
        self.try_not(states)
    }
    fn has(&self, states: &[&str]) -> bool {
        Machine::has(self, states)
    }
    fn is_time(&self, time: &[u64], states: Option<&[&str]>) -> bool {
        Machine::is_time(self, time, states)
    }
    fn is_clock(&self, clock: &Clock) -> bool {
        Machine::is_clock(self, clock)
    }
    fn when(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait {
        Machine::when(self, states, ctx)
    }
    fn when_not(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait {
        match self.try_when_not(states, ctx) {
            Ok(w) => w,
            Err(e) => Wait::ready(Err(crate::WaitError::InvalidArgs(alloc::string::ToString::to_string(
                &e,
            )))),
        }
    }
    fn when_time(&self, states: &[&str], times: &[u64], ctx: Option<&Ctx>) -> Wait {
        if !self.has(states) {
            return Wait::ready(Err(crate::WaitError::InvalidArgs(String::from("unknown state"))));
        }
        Machine::when_time(self, states, times, ctx)
    }
    fn state_names(&self) -> Vec<String> {
        Machine::state_names(self)
    }
    fn active_states(&self) -> Vec<String> {
        Machine::active_states(self)
    }
    fn tick(&self, state: &str) -> u64 {
        Machine::tick(self, state)
    }
    fn clock(&self, states: Option<&[&str]>) -> Clock {
        Machine::clock(self, states)
    }
    fn time(&self, states: Option<&[&str]>) -> Time {
        Machine::time(self, states)
    }
    fn new_state_ctx(&self, state: &str) -> Result<Ctx, Error> {
        self.try_new_state_ctx(state)
    }
    fn export(&self) -> Result<Serialized, Error> {
        Machine::export(self)
    }
    fn get_struct(&self) -> Schema {
        Machine::get_struct(self)
    }
    fn switch<'s>(&self, groups: &[&[&'s str]]) -> Option<&'s str> {
        Machine::switch(self, groups)
    }
    fn index(&self, state: &str) -> Option<usize> {
        Machine::index(self, state)
    }
    fn string(&self) -> String {
        Machine::string(self)
    }
    fn string_all(&self) -> String {
        Machine::string_all(self)
    }
    fn inspect(&self, states: Option<&[&str]>) -> String {
        Machine::inspect(self, states)
    }
    fn id(&self) -> alloc::sync::Arc<str> {
        Machine::id(self)
    }
    fn parent_id(&self) -> Option<&str> {
        Machine::parent_id(self)
    }
    fn ctx(&self) -> Ctx {
        Machine::ctx(self)
    }
    fn log(&self, msg: &str) {
        Machine::log(self, msg)
    }
    fn states_verified(&self) -> bool {
        Machine::states_verified(self)
    }
    fn dispose(&self) {
        Machine::dispose(self)
    }
    fn when_disposed(&self) -> Wait {
        Machine::when_disposed(self)
    }
    fn is_disposed(&self) -> bool {
        Machine::is_disposed(self)
    }
}
