//! Payloads that arrive in chunks: reassembly with its bounds (size, count, order).

use alloc::string::String;
use alloc::vec::Vec;

use super::{ClientSession, remote};
use crate::error::ErrorCode;
use crate::types::Error;
use crate::wire::{Chunk, Payload};

/// A chunked payload being reassembled.
pub(super) struct Assembly {
    pub(super) started: u64,
    pub(super) name: String,
    pub(super) source: String,
    pub(super) total: u32,
    pub(super) next: u32,
    pub(super) len: usize,
    pub(super) data: Vec<u8>,
}

impl ClientSession {
    /// One chunk of a payload: the payload once its last chunk is in.
    pub(super) fn chunk(&mut self, c: Chunk) -> Result<Option<Payload>, Error> {
        if c.total == 0 || c.index >= c.total {
            return Err(remote(ErrorCode::Malformed, "chunk index out of range"));
        }
        if c.index == 0 {
            let (name, source) = c
                .head
                .ok_or_else(|| remote(ErrorCode::Malformed, "first chunk without a head"))?;
            let len = usize::try_from(c.len.unwrap_or(0)).unwrap_or(usize::MAX);
            if len > self.cfg.max_payload {
                return Err(remote(ErrorCode::TooLarge, alloc::format!("payload of {len} bytes")));
            }
            // bounded: at most a few payloads in flight at once
            if self.chunks.len() >= 8 {
                let oldest = self.chunks.iter().min_by_key(|(_, a)| a.started).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.chunks.remove(&k);
                }
            }
            self.chunk_seq += 1;
            self.chunks.insert(
                c.token,
                Assembly {
                    started: self.chunk_seq,
                    name,
                    source,
                    total: c.total,
                    next: 0,
                    len,
                    data: Vec::new(),
                },
            );
        }
        let a = self
            .chunks
            .get_mut(&c.token)
            .ok_or_else(|| remote(ErrorCode::Malformed, "chunk of an unknown payload"))?;
        if c.index != a.next || c.total != a.total {
            self.chunks.remove(&c.token);
            return Err(remote(ErrorCode::Malformed, "chunks out of order"));
        }
        if a.data.len() + c.data.len() > a.len {
            self.chunks.remove(&c.token);
            return Err(remote(ErrorCode::Malformed, "chunks longer than announced"));
        }
        a.data.extend_from_slice(&c.data);
        a.next += 1;
        if a.next < a.total {
            return Ok(None);
        }
        let Some(a) = self.chunks.remove(&c.token) else {
            return Ok(None);
        };
        if a.data.len() != a.len {
            return Err(remote(ErrorCode::Malformed, "chunks shorter than announced"));
        }
        Ok(Some(Payload {
            name: a.name,
            source: a.source,
            token: c.token,
            data: a.data,
        }))
    }
}
