//! Upstream Go's free helpers, ported one to one for code (and ported tests) that follows
//! upstream's API closely. New code rarely needs them: `Machine` methods and [`crate::schema()`]
//! cover the same ground.

pub use crate::handlers::{is_handler, list_handlers};
pub use crate::machine::{is_time_after, opts_with_debug, opts_with_tracers};
pub use crate::schema::{HANDLER_GLOBAL, S, diff_states, parse_struct, s_add, state_add, state_set, states_equal};
pub use crate::types::{is_active_tick, new_args_mapper, truncate_str};
