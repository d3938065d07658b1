//! The tracer API: synchronous hooks on the draining thread. Keep them cheap and non-blocking;
//! a hook must not bind or detach tracers, nor wait on the machine.

use crate::machine::Machine;
use crate::schema::Schema;
use crate::transition::Transition;
use crate::wait::Ctx;

/// Observer of a machine's lifecycle and transitions (upstream `Tracer`). Every hook has a no-op
/// default, so implement only what you need.
pub trait Tracer: Send + Sync {
    /// In `Machine::new`, for tracers passed in `Opts::tracers`; a returned ctx replaces the
    /// machine's context.
    fn machine_init(&self, _m: &Machine) -> Option<Ctx> {
        None
    }
    /// A machine with `Opts::parent` was created (only for inheritable tracers of the parent).
    fn new_submachine(&self, _parent: &Machine, _m: &Machine) {}
    /// After a successful `verify_states`.
    fn verify_states(&self, _m: &Machine) {}
    /// After a successful `set_struct`, with the previous schema.
    fn struct_change(&self, _m: &Machine, _old: &Schema) {}
    /// A transition was created, before relation resolution (targets empty).
    fn transition_init(&self, _t: &Transition) {}
    /// Targets, enters and exits are known, before any handler.
    fn transition_start(&self, _t: &Transition) {}
    /// Before a handler call: handler set name and handler name.
    fn handler_start(&self, _t: &Transition, _set: &str, _handler: &str) {}
    /// After a handler call.
    fn handler_end(&self, _t: &Transition, _set: &str, _handler: &str) {}
    /// After the final handlers, the clock update and the auto-state enqueue (also for canceled
    /// transitions, except when `AnyAny` cancels, as upstream). `t.clock_delta()` is the change
    /// to push to clients.
    fn transition_end(&self, _t: &Transition) {}
    /// A queue drain finished.
    fn queue_end(&self, _m: &Machine) {}
    /// The machine is being disposed.
    fn machine_dispose(&self, _id: &str) {}
    /// Whether submachines should be offered to this tracer.
    fn inheritable(&self) -> bool {
        false
    }
}

/// A tracer that does nothing (upstream `NoOpTracer`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOpTracer;

impl Tracer for NoOpTracer {}
