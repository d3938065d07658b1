//! The clock codec: full clocks, sparse diffs against the last clock sent to a session, and a
//! checksum, so a client can tell a gap or a divergence and ask for a resync.

use alloc::vec::Vec;
use core::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Changed ticks as `(state index, delta)` pairs, indexes strictly increasing, deltas ≥ 1.
///
/// On the wire each pair is one varint `index << 2 | (delta - 1)` when the delta is 1–3 (the
/// common case: a state toggled or a Multi state re-entered), or `index << 2 | 3` followed by the
/// delta. So a pair is usually one byte for the first 32 states.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff(pub Vec<(u16, u64)>);

impl Diff {
    /// No change.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn words(&self) -> usize {
        self.0
            .iter()
            .map(|(_, d)| if (1..=3).contains(d) { 1 } else { 2 })
            .sum()
    }

    /// Encoded size in bytes (postcard).
    pub fn encoded_len(&self) -> usize {
        let mut n = varint_len(self.words() as u64);
        for (i, d) in &self.0 {
            let w = (u64::from(*i)) << 2;
            if (1..=3).contains(d) {
                n += varint_len(w | (d - 1));
            } else {
                n += varint_len(w | 3) + varint_len(*d);
            }
        }
        n
    }
}

/// Length of a LEB128 varint (postcard's integer encoding).
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

impl Serialize for Diff {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.words()))?;
        for (i, d) in &self.0 {
            let w = (u64::from(*i)) << 2;
            if (1..=3).contains(d) {
                seq.serialize_element(&(w | (d - 1)))?;
            } else {
                seq.serialize_element(&(w | 3))?;
                seq.serialize_element(d)?;
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Diff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Diff, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Diff;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a packed clock diff")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Diff, A::Error> {
                let mut out: Vec<(u16, u64)> = Vec::new();
                while let Some(w) = seq.next_element::<u64>()? {
                    let index = u16::try_from(w >> 2).map_err(|_| de::Error::custom("state index out of range"))?;
                    let delta = match w & 3 {
                        3 => seq
                            .next_element::<u64>()?
                            .ok_or_else(|| de::Error::custom("clock diff: missing delta"))?,
                        c => c + 1,
                    };
                    if delta == 0 {
                        return Err(de::Error::custom("clock diff: zero delta"));
                    }
                    if out.last().is_some_and(|(last, _)| *last >= index) {
                        return Err(de::Error::custom("clock diff: indexes not increasing"));
                    }
                    out.push((index, delta));
                }
                Ok(Diff(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A clock as sent: a diff against the previous one, or the whole clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ticks {
    /// Changes since the previous update of this session.
    Diff(Diff),
    /// Every tick, in state order (untracked states read 0).
    Full(Vec<u64>),
}

/// One clock update: sequence number, checksum of the clock after applying it, and the ticks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockUpdate {
    /// Per-session sequence number (wrapping): diffs apply only in order.
    pub seq: u8,
    /// [`checksum`] of the receiver's clock after applying the update.
    pub checksum: u8,
    /// The change.
    pub ticks: Ticks,
}

/// Why a clock update could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// A diff names a state index outside the clock.
    #[error("clock update names state {index}, the clock has {len} states")]
    IndexOutOfRange {
        /// The index.
        index: u16,
        /// The clock's length.
        len: usize,
    },
    /// A full clock of the wrong length.
    #[error("full clock has {got} ticks, expected {expected}")]
    WrongLength {
        /// Received length.
        got: usize,
        /// Expected length.
        expected: usize,
    },
    /// A tick would overflow.
    #[error("tick overflow at state {0}")]
    Overflow(u16),
    /// A full clock would lower a tick (ticks only grow).
    #[error("full clock lowers the tick of state {0}")]
    Backwards(u16),
    /// The checksum after applying does not match: the clocks diverged.
    #[error("checksum mismatch: got {got}, expected {expected}")]
    Checksum {
        /// Computed locally.
        got: u8,
        /// Sent by the server.
        expected: u8,
    },
}

impl ClockError {
    /// This error's stable code: a clock update that cannot apply is a malformed one.
    pub fn code(&self) -> crate::error::ErrorCode {
        crate::error::ErrorCode::Malformed
    }
}

/// Checksum of a clock: the low byte of `Σ tick[i] × (2i + 1)` (odd weights, so any single
/// changed tick changes it unless the change is a multiple of 256).
pub fn checksum(time: &[u64]) -> u8 {
    let mut acc: u64 = 0;
    for (i, t) in time.iter().enumerate() {
        acc = acc.wrapping_add(t.wrapping_mul(2 * i as u64 + 1));
    }
    acc as u8
}

/// The changes from `before` to `after` (equal lengths; ticks never decrease). Entries where
/// `tracked` is false are skipped.
pub fn diff(before: &[u64], after: &[u64], tracked: Option<&[bool]>) -> Diff {
    let mut out = Vec::new();
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if a != b && tracked.is_none_or(|t| t.get(i).copied().unwrap_or(false)) {
            out.push((i as u16, a.wrapping_sub(*b)));
        }
    }
    Diff(out)
}

/// Copy `after` into `last_sent` (tracked entries only) and return the update that brings a
/// client holding `last_sent` to it: a diff or a full clock, whichever encodes smaller. `None`
/// when nothing changed.
pub fn update_from(last_sent: &mut [u64], after: &[u64], tracked: Option<&[bool]>, seq: u8) -> Option<ClockUpdate> {
    let d = diff(last_sent, after, tracked);
    if d.is_empty() {
        return None;
    }
    for (i, _) in &d.0 {
        last_sent[*i as usize] = after[*i as usize];
    }
    let full_len = varint_len(last_sent.len() as u64) + last_sent.iter().map(|t| varint_len(*t)).sum::<usize>();
    let ticks = if full_len < d.encoded_len() {
        Ticks::Full(last_sent.to_vec())
    } else {
        Ticks::Diff(d)
    };
    Some(ClockUpdate {
        seq,
        checksum: checksum(last_sent),
        ticks,
    })
}

/// A full update of `time` (tracked entries; others 0), for handshakes and resyncs.
pub fn full_update(last_sent: &mut [u64], after: &[u64], tracked: Option<&[bool]>, seq: u8) -> ClockUpdate {
    for (i, t) in after.iter().enumerate() {
        if tracked.is_none_or(|tr| tr.get(i).copied().unwrap_or(false)) {
            last_sent[i] = *t;
        } else {
            last_sent[i] = 0;
        }
    }
    ClockUpdate {
        seq,
        checksum: checksum(last_sent),
        ticks: Ticks::Full(last_sent.to_vec()),
    }
}

/// A shallow view of `now` for a client holding `last_sent`: each state's tick moves by one
/// when its activation (odd = active) differs from what was last sent, else stays. Monotonic,
/// and only activation changes ever show up in a diff.
pub fn shallow(last_sent: &[u64], now: &[u64]) -> Vec<u64> {
    last_sent
        .iter()
        .zip(now)
        .map(|(s, n)| if s % 2 == n % 2 { *s } else { s + 1 })
        .collect()
}

/// Apply `ticks` to `time` and verify `expected` checksum. On any error `time` is unchanged.
pub fn apply(time: &mut [u64], ticks: &Ticks, expected: u8) -> Result<(), ClockError> {
    let mut next = time.to_vec();
    match ticks {
        Ticks::Full(t) => {
            if t.len() != time.len() {
                return Err(ClockError::WrongLength {
                    got: t.len(),
                    expected: time.len(),
                });
            }
            if let Some(i) = t.iter().zip(time.iter()).position(|(new, old)| new < old) {
                return Err(ClockError::Backwards(i as u16));
            }
            next.copy_from_slice(t);
        }
        Ticks::Diff(d) => {
            for (i, delta) in &d.0 {
                let slot = next.get_mut(*i as usize).ok_or(ClockError::IndexOutOfRange {
                    index: *i,
                    len: time.len(),
                })?;
                *slot = slot.checked_add(*delta).ok_or(ClockError::Overflow(*i))?;
            }
        }
    }
    let got = checksum(&next);
    if got != expected {
        return Err(ClockError::Checksum { got, expected });
    }
    time.copy_from_slice(&next);
    Ok(())
}
