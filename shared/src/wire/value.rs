//! Wire form of [`Value`] and [`Args`]: a tagged enum, decoded with a nesting limit so a hostile
//! frame cannot exhaust the stack.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde::ser::{self, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::{Args, Value};

/// Deepest nesting of lists and maps a decoder accepts.
pub const MAX_VALUE_DEPTH: usize = 32;

const VARIANTS: &[&str] = &["Null", "Bool", "Int", "Float", "Str", "Bytes", "List", "Map"];

/// Bytes serialised as one length-prefixed run (not a list of tagged numbers).
struct BytesOut<'a>(&'a [u8]);

impl Serialize for BytesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit_variant("Value", 0, "Null"),
            Value::Bool(b) => s.serialize_newtype_variant("Value", 1, "Bool", b),
            Value::Int(i) => s.serialize_newtype_variant("Value", 2, "Int", i),
            Value::Float(f) => s.serialize_newtype_variant("Value", 3, "Float", f),
            Value::Str(v) => s.serialize_newtype_variant("Value", 4, "Str", v),
            Value::Bytes(b) => s.serialize_newtype_variant("Value", 5, "Bytes", &BytesOut(b)),
            Value::List(l) => s.serialize_newtype_variant("Value", 6, "List", l),
            Value::Map(m) => s.serialize_newtype_variant("Value", 7, "Map", m),
            Value::Opaque(_) => Err(ser::Error::custom("opaque values cannot cross the wire")),
        }
    }
}

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Decodes a [`Value`] at a given nesting depth.
#[derive(Clone, Copy)]
struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > MAX_VALUE_DEPTH {
            return Err(de::Error::custom("value nesting too deep"));
        }
        d.deserialize_enum("Value", VARIANTS, ValueVisitor { depth: self.depth })
    }
}

struct ValueVisitor {
    depth: usize,
}

#[derive(Clone, Copy)]
enum Tag {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    List,
    Map,
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tag, D::Error> {
        struct TagVisitor;
        impl Visitor<'_> for TagVisitor {
            type Value = Tag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value tag")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tag, E> {
                Ok(match v {
                    0 => Tag::Null,
                    1 => Tag::Bool,
                    2 => Tag::Int,
                    3 => Tag::Float,
                    4 => Tag::Str,
                    5 => Tag::Bytes,
                    6 => Tag::List,
                    7 => Tag::Map,
                    _ => return Err(E::custom("unknown value tag")),
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag, E> {
                match VARIANTS.iter().position(|x| *x == v) {
                    Some(i) => self.visit_u64(i as u64),
                    None => Err(E::unknown_variant(v, VARIANTS)),
                }
            }
        }
        d.deserialize_identifier(TagVisitor)
    }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Value")
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, v) = data.variant::<Tag>()?;
        Ok(match tag {
            Tag::Null => {
                v.unit_variant()?;
                Value::Null
            }
            Tag::Bool => Value::Bool(v.newtype_variant()?),
            Tag::Int => Value::Int(v.newtype_variant()?),
            Tag::Float => Value::Float(v.newtype_variant()?),
            Tag::Str => Value::Str(v.newtype_variant()?),
            Tag::Bytes => Value::Bytes(v.newtype_variant_seed(BytesSeed)?),
            Tag::List => Value::List(v.newtype_variant_seed(ListSeed { depth: self.depth + 1 })?),
            Tag::Map => Value::Map(v.newtype_variant_seed(MapSeed { depth: self.depth + 1 })?),
        })
    }
}

struct BytesSeed;

impl<'de> DeserializeSeed<'de> for BytesSeed {
    type Value = Vec<u8>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                // self-describing formats may send bytes as a list; grow as elements arrive
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

struct ListSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Vec<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        struct V {
            depth: usize,
        }
        impl<'de> Visitor<'de> for V {
            type Value = Vec<Value>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
                // no preallocation from the untrusted length: every element consumes input
                let mut out = Vec::new();
                while let Some(v) = seq.next_element_seed(ValueSeed { depth: self.depth })? {
                    out.push(v);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V { depth: self.depth })
    }
}

struct MapSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for MapSeed {
    type Value = BTreeMap<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(MapVisitor { depth: self.depth })
    }
}

struct MapVisitor {
    depth: usize,
}

impl<'de> Visitor<'de> for MapVisitor {
    type Value = BTreeMap<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(ValueSeed { depth: self.depth })?;
            out.insert(k, v);
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        ValueSeed { depth: 0 }.deserialize(d)
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Args, D::Error> {
        Ok(Args(d.deserialize_map(MapVisitor { depth: 1 })?))
    }
}
