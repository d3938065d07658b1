//! What most programs need: `use amrpc_core::prelude::*;`.

pub use crate::api::Api;
pub use crate::error::ErrorCode;
pub use crate::handlers::{Event, Handlers};
pub use crate::machine::{Machine, Opts};
pub use crate::schema::{EXCEPTION, Schema, State, schema, struct_merge};
pub use crate::types::{Args, Error, MutationType, Outcome, Value};
pub use crate::wait::{Ctx, Wait, WaitError};
