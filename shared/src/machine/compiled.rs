//! Compiled schemas shared between machines: one compile for many machines of one schema.

use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use crate::schema::{Compiled, Schema};
use crate::sync::Mutex;
use crate::types::Error;

/// A compiled schema and state order, shared by the machines made of it with
/// [`Machine::with_schema`](super::Machine::with_schema). Compiling (relations by id, masks, the
/// Require topology, the normalised schema) is most of what making a machine costs, in time and
/// in memory; a server's per-session machines and a process's mirrors of one worker share one
/// instead of each compiling and holding a copy. A machine that changes its schema later
/// (`set_struct`) compiles its own again; the others keep theirs.
#[derive(Clone)]
pub struct CompiledSchema {
    c: Arc<Compiled>,
    verified: bool,
}

impl core::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("states", &self.c.names.len())
            .field("verified", &self.verified)
            .finish()
    }
}

/// Schemas compiled by [`CompiledSchema::shared`]: what was asked for (the schema as given and
/// the names), and the result while any machine holds it.
struct Entry {
    schema: Schema,
    names: Option<Vec<String>>,
    c: Weak<Compiled>,
}

static SHARED: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

impl CompiledSchema {
    /// Compile `schema` as [`Machine::new`](super::Machine::new) does (`Exception` added,
    /// normalised), then `verify_states(names)` when `names` is given.
    pub fn new(schema: Schema, names: Option<&[&str]>) -> Result<CompiledSchema, Error> {
        let c = super::compile(schema, "schema")?;
        Ok(match names {
            Some(n) => CompiledSchema::from_parts(Arc::new(super::verified(&c, n, "schema")?), true),
            None => CompiledSchema::from_parts(Arc::new(c), false),
        })
    }

    /// [`CompiledSchema::new`], or the same schema and names compiled before in this process
    /// and still held by a machine: many mirrors of one worker (a load test's clients, an edge
    /// server's) and every connection's own client states compile once. Errors are
    /// `new`'s.
    pub fn shared(schema: Schema, names: Option<&[&str]>) -> Result<CompiledSchema, Error> {
        let same_names = |held: &Option<Vec<String>>| match (held, names) {
            (None, None) => true,
            (Some(h), Some(n)) => h.len() == n.len() && h.iter().zip(n).all(|(a, b)| a == b),
            _ => false,
        };
        let verified = names.is_some();
        {
            let held = SHARED.lock();
            let hit = held
                .iter()
                .filter(|e| same_names(&e.names) && e.schema == schema)
                .find_map(|e| e.c.upgrade());
            if let Some(c) = hit {
                return Ok(CompiledSchema { c, verified });
            }
        }
        let key = schema.clone();
        let made = CompiledSchema::new(schema, names)?;
        let mut held = SHARED.lock();
        held.retain(|e| e.c.strong_count() > 0);
        held.push(Entry {
            schema: key,
            names: names.map(|n| n.iter().map(|s| String::from(*s)).collect()),
            c: Arc::downgrade(&made.c),
        });
        Ok(made)
    }

    pub(super) fn from_parts(c: Arc<Compiled>, verified: bool) -> CompiledSchema {
        CompiledSchema { c, verified }
    }

    pub(super) fn compiled(&self) -> &Arc<Compiled> {
        &self.c
    }

    pub(super) fn verified(&self) -> bool {
        self.verified
    }
}
