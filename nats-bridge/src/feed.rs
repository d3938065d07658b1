//! An edge's view of one worker's clock, sans IO: clock messages and bucket records in, the
//! clock the mirror should show out. Messages apply only in sequence; a gap, a checksum that
//! does not match or another incarnation waits for a record that covers it (the host writes
//! one after each change), so an edge never shows a clock the worker did not have.

use std::collections::VecDeque;

use amrpc_core::wire::clock;

use crate::BridgeError;
use crate::msg::{ClockMsg, Record};

/// Messages kept past a gap while waiting for a record (the oldest are dropped beyond it).
pub const MAX_BUFFERED: usize = 4096;

/// What the mirror should do after an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed.
    Idle,
    /// Move to this clock (ticks only grew).
    Apply(Vec<u64>),
    /// The worker restarted: take this clock, whose ticks may be lower.
    Reset(Vec<u64>),
}

/// One worker's clock as an edge follows it.
#[derive(Debug)]
pub struct Feed {
    schema_hash: u64,
    incarnation: u64,
    replay_id: u64,
    seq: u64,
    time: Vec<u64>,
    err: Option<String>,
    synced: bool,
    buffer: VecDeque<ClockMsg>,
}

impl Feed {
    /// Start from a checked record.
    pub fn new(rec: &Record) -> Feed {
        Feed {
            schema_hash: rec.schema_hash,
            incarnation: rec.incarnation,
            replay_id: rec.replay_id,
            seq: rec.seq,
            time: rec.time.clone(),
            err: rec.err.clone(),
            synced: true,
            buffer: VecDeque::new(),
        }
    }

    /// `(incarnation, seq)` of the clock shown.
    pub fn position(&self) -> (u64, u64) {
        (self.incarnation, self.seq)
    }

    /// The clock shown.
    pub fn time(&self) -> &[u64] {
        &self.time
    }

    /// False while waiting for a record to bridge a gap.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The worker's replay cache id (changes with the incarnation).
    pub fn replay_id(&self) -> u64 {
        self.replay_id
    }

    /// The worker's last error text.
    pub fn err(&self) -> Option<&str> {
        self.err.as_deref()
    }

    /// Messages held past a gap.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// A clock message from the worker's subject.
    pub fn on_clock(&mut self, msg: ClockMsg) -> Step {
        if self.synced && msg.incarnation == self.incarnation {
            if msg.seq <= self.seq {
                return Step::Idle; // a duplicate, or older than the record we started from
            }
            if msg.seq == self.seq + 1 {
                return match self.apply(&msg) {
                    true => Step::Apply(self.time.clone()),
                    false => Step::Idle,
                };
            }
        }
        // a gap, another incarnation, or already waiting: hold it for the next record
        self.synced = false;
        if self.buffer.len() == MAX_BUFFERED {
            self.buffer.pop_front();
        }
        self.buffer.push_back(msg);
        Step::Idle
    }

    /// A record of the worker from the bucket (already [`Record::check`]ed). A record of
    /// another schema is refused: the mirror cannot change its states.
    pub fn on_record(&mut self, rec: &Record) -> Result<Step, BridgeError> {
        if rec.schema_hash != self.schema_hash {
            return Err(BridgeError::SchemaMismatch(format!(
                "the worker's schema changed from {:016x} to {:016x}",
                self.schema_hash, rec.schema_hash
            )));
        }
        let restarted = rec.incarnation != self.incarnation;
        if !restarted && rec.seq <= self.seq {
            return Ok(Step::Idle); // older than what is shown
        }
        self.incarnation = rec.incarnation;
        self.replay_id = rec.replay_id;
        self.seq = rec.seq;
        self.time.clone_from(&rec.time);
        self.err.clone_from(&rec.err);
        self.synced = true;
        // what arrived past the gap continues from here, if it is in sequence
        let held = std::mem::take(&mut self.buffer);
        for msg in held {
            if msg.incarnation != self.incarnation || (self.synced && msg.seq <= self.seq) {
                continue;
            }
            if self.synced && msg.seq == self.seq + 1 {
                self.apply(&msg);
            } else {
                self.synced = false;
                self.buffer.push_back(msg);
            }
        }
        Ok(match restarted {
            true => Step::Reset(self.time.clone()),
            false => Step::Apply(self.time.clone()),
        })
    }

    /// Apply the next message; on a bad one (checksum, bounds) wait for a record instead.
    fn apply(&mut self, msg: &ClockMsg) -> bool {
        match clock::apply(&mut self.time, &msg.update.ticks, msg.update.checksum) {
            Ok(()) => {
                self.seq = msg.seq;
                if msg.err.is_some() {
                    self.err.clone_from(&msg.err);
                }
                true
            }
            Err(e) => {
                tracing::warn!(seq = msg.seq, error = %e, "clock message does not apply; waiting for a record");
                self.synced = false;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use amrpc_core::wire::clock::{Ticks, update_from};

    use super::*;

    fn record(incarnation: u64, seq: u64, time: &[u64]) -> Record {
        Record {
            format: crate::msg::RECORD_FORMAT,
            worker_id: "w".into(),
            incarnation,
            replay_id: incarnation + 100,
            seq,
            names: Vec::new(),
            schema: Vec::new(),
            schema_hash: 7,
            time: time.to_vec(),
            err: None,
        }
    }

    /// The host's side: successive clocks as messages.
    fn messages(incarnation: u64, clocks: &[&[u64]]) -> Vec<ClockMsg> {
        let mut last = clocks[0].to_vec();
        clocks[1..]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let seq = i as u64 + 1;
                ClockMsg {
                    incarnation,
                    seq,
                    update: update_from(&mut last, c, None, seq as u8).unwrap(),
                    err: None,
                }
            })
            .collect()
    }

    #[test]
    fn in_order_messages_apply_and_duplicates_do_nothing() {
        let m = messages(1, &[&[0, 0], &[1, 0], &[1, 1], &[2, 1]]);
        let mut f = Feed::new(&record(1, 0, &[0, 0]));
        assert_eq!(f.on_clock(m[0].clone()), Step::Apply(vec![1, 0]));
        assert_eq!(f.on_clock(m[0].clone()), Step::Idle);
        assert_eq!(f.on_clock(m[1].clone()), Step::Apply(vec![1, 1]));
        assert_eq!(f.on_clock(m[2].clone()), Step::Apply(vec![2, 1]));
        assert_eq!(f.position(), (1, 3));
        assert!(f.synced());
    }

    #[test]
    fn a_gap_waits_for_a_record_then_continues_with_what_followed() {
        let m = messages(1, &[&[0, 0], &[1, 0], &[1, 1], &[2, 1], &[3, 1]]);
        let mut f = Feed::new(&record(1, 0, &[0, 0]));
        f.on_clock(m[0].clone());
        // m[1] is lost
        assert_eq!(f.on_clock(m[2].clone()), Step::Idle);
        assert_eq!(f.on_clock(m[3].clone()), Step::Idle);
        assert!(!f.synced());
        assert_eq!(f.time(), &[1, 0]);
        // a record older than the gap does not bridge it
        assert_eq!(f.on_record(&record(1, 1, &[1, 0])).unwrap(), Step::Idle);
        assert!(!f.synced());
        // the record of seq 2 does, and the held messages 3 and 4 follow
        assert_eq!(f.on_record(&record(1, 2, &[1, 1])).unwrap(), Step::Apply(vec![3, 1]));
        assert_eq!(f.position(), (1, 4));
        assert!(f.synced());
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn a_bad_checksum_is_never_shown() {
        let mut m = messages(1, &[&[0, 0], &[1, 0], &[1, 1]]);
        m[0].update.checksum ^= 1;
        let mut f = Feed::new(&record(1, 0, &[0, 0]));
        assert_eq!(f.on_clock(m[0].clone()), Step::Idle);
        assert_eq!(f.time(), &[0, 0]);
        assert!(!f.synced());
        assert_eq!(f.on_clock(m[1].clone()), Step::Idle);
        assert_eq!(f.on_record(&record(1, 2, &[1, 1])).unwrap(), Step::Apply(vec![1, 1]));
        assert!(f.synced());
    }

    #[test]
    fn another_incarnation_resets_from_its_record() {
        let mut f = Feed::new(&record(1, 5, &[7, 3]));
        let m2 = messages(2, &[&[0, 0], &[1, 0], &[1, 1]]);
        assert_eq!(f.on_clock(m2[1].clone()), Step::Idle);
        let step = f.on_record(&record(2, 1, &[1, 0])).unwrap();
        assert_eq!(step, Step::Reset(vec![1, 1]));
        assert_eq!(f.position(), (2, 2));
        assert_eq!(f.replay_id(), 102);
        // a late message of the old incarnation is held, never applied
        let old = ClockMsg {
            incarnation: 1,
            seq: 6,
            update: amrpc_core::wire::ClockUpdate {
                seq: 6,
                checksum: 0,
                ticks: Ticks::Full(vec![9, 9]),
            },
            err: None,
        };
        assert_eq!(f.on_clock(old), Step::Idle);
        assert_eq!(f.time(), &[1, 1]);
    }

    #[test]
    fn another_schema_is_refused() {
        let mut f = Feed::new(&record(1, 0, &[0]));
        let mut r = record(2, 0, &[0]);
        r.schema_hash = 8;
        assert!(matches!(f.on_record(&r), Err(BridgeError::SchemaMismatch(_))));
    }

    #[test]
    fn the_buffer_is_bounded() {
        let mut f = Feed::new(&record(1, 0, &[0]));
        for seq in 2..(MAX_BUFFERED as u64 + 10) {
            f.on_clock(ClockMsg {
                incarnation: 1,
                seq,
                update: amrpc_core::wire::ClockUpdate {
                    seq: seq as u8,
                    checksum: 0,
                    ticks: Ticks::Full(vec![seq]),
                },
                err: None,
            });
        }
        assert_eq!(f.buffered(), MAX_BUFFERED);
    }
}
