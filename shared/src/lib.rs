//! # amrpc-core
//!
//! A Rust port of [asyncmachine-go] v0.8.0's state machine (`pkg/machine`): a clock-based,
//! relational, multi-state machine. `#![no_std]` + `alloc`; the default `std` feature adds panic
//! catching in handlers, std locks and handler timeouts measured with `std::time`. The `serde`
//! feature (off by default) adds `to_value` / `from_value`, converting any serde type to and from
//! [`Value`].
//!
//! ```
//! use amrpc_core::{Machine, Opts, Outcome, State, schema};
//! let m = Machine::new(
//!     schema([("Foo", State::new().require(&["Bar"])), ("Bar", State::new())]),
//!     Opts::default(),
//! ).unwrap();
//! assert_eq!(m.add1("Foo", None), Outcome::Canceled); // Foo requires Bar
//! assert_eq!(m.add(&["Foo", "Bar"], None), Outcome::Executed);
//! assert_eq!(m.string(), "(Bar:1 Foo:1)");
//! ```
//!
//! Differences from upstream that are not bugs but Rust adaptations (all listed in
//! `docs/upstream-tests.md`): handlers run on the draining thread and a handler timeout is
//! detected when the handler returns (there is no executor thread to abandon it on); `When*`
//! channels are futures ([`Wait`]) whose drop is the cancellation; `Result` is [`Outcome`].
//!
//! [asyncmachine-go]: https://github.com/pancsta/asyncmachine-go

#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[doc(hidden)]
pub mod __alloc {
    pub use alloc::{string, vec};
}

mod api;
pub mod compat;
#[cfg(feature = "demo")]
pub mod demo;
mod error;
mod handlers;
mod machine;
pub mod prelude;
mod resolver;
mod schema;
pub mod session;
pub mod states;
mod sync;
mod tracer;
mod transition;
pub mod ts;
mod typed;
mod types;
#[cfg(feature = "serde")]
mod value_serde;
mod wait;
mod why;
pub mod wire;

pub use api::{Api, BoxFuture};
pub use error::{ErrorCode, TS_ERROR_CODE};
pub use handlers::{Event, HandlerFn, Handlers, HandlersId};
pub use machine::{
    ArgsMapper, Clock, CompiledSchema, ExceptionArgsPanic, HANDLER_TIMEOUT, HandlerRunner, Logger, Machine, Opts,
    QUEUE_LIMIT, Serialized, Time,
};
#[cfg(feature = "std")]
pub use machine::{RUNNER_THREADS, ThreadRunner};
pub use schema::{ANY, EXCEPTION, Schema, State, schema, struct_merge};
pub use tracer::{NoOpTracer, Tracer};
pub use transition::{Mutation, MutationInfo, Step, StepData, Transition};
pub use typed::TypedState;
#[cfg(feature = "serde")]
pub use typed::{ApiTyped, typed_args};
pub use types::{Args, Error, LogLevel, MutationType, Opaque, Outcome, Relation, StepType, Value};
#[cfg(feature = "serde")]
pub use value_serde::{ValueError, from_value, to_value};
pub use wait::{Ctx, CtxCanceled, CtxValue, Slot, Wait, WaitError, WaitRegistry};
pub use why::Why;

// A worker is shared by a multi-threaded server: keep the handles `Send + Sync`.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Machine>();
    send_sync::<Ctx>();
    send_sync::<Wait>();
    send_sync::<Handlers>();
};
