//! A worker whose mutations are held, as a relay's are forwarded, to be run later by hand:
//! an original request still running in one session while its retry arrives on another.
#![allow(dead_code, unreachable_pub)]

use amrpc_core::session::{CallId, Mutated, WorkerPort};
use amrpc_core::{Args, Machine, MutationType};

/// One held mutation: request id, type, state indexes, args.
pub type HeldCall = (u32, MutationType, Vec<usize>, Args);

/// Holds every mutation it is given.
pub struct Held<'a> {
    w: &'a Machine,
    held: std::sync::Mutex<Vec<HeldCall>>,
}

impl<'a> Held<'a> {
    pub fn new(w: &'a Machine) -> Held<'a> {
        Held {
            w,
            held: Default::default(),
        }
    }
    pub fn reqs(&self) -> Vec<u32> {
        self.held.lock().unwrap().iter().map(|h| h.0).collect()
    }
    pub fn take(&self) -> HeldCall {
        self.held.lock().unwrap().remove(0)
    }
}

impl WorkerPort for Held<'_> {
    fn id(&self) -> String {
        WorkerPort::id(self.w)
    }
    fn state_names(&self) -> Vec<String> {
        self.w.state_names()
    }
    fn schema(&self) -> amrpc_core::Schema {
        self.w.get_struct()
    }
    fn time(&self) -> Vec<u64> {
        self.w.time(None)
    }
    fn err(&self) -> Option<String> {
        self.w.err().map(|e| e.to_string())
    }
    fn mutate(&self, call: CallId, ty: MutationType, states: &[u16], args: Args, _source: u64) -> Mutated {
        let req = call.req;
        let idx = states.iter().map(|i| usize::from(*i)).collect();
        self.held.lock().unwrap().push((req, ty, idx, args));
        Mutated::Forwarded
    }
    fn when_args(&self, state: u16, args: Args) -> Result<amrpc_core::Wait, (amrpc_core::ErrorCode, String)> {
        WorkerPort::when_args(self.w, state, args)
    }
    fn when_queue(&self, tick: u64) -> amrpc_core::Wait {
        WorkerPort::when_queue(self.w, tick)
    }
}
