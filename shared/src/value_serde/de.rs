//! The `serde::Deserializer` side: a borrowed [`Value`] into any `Deserialize` type.

use alloc::collections::BTreeMap;
use alloc::collections::btree_map;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

use crate::types::Value;

use super::ValueError;

/// What serde error messages call this value ("invalid type: string "x", expected i32").
fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Int(i) => Unexpected::Signed(*i),
        Value::Float(f) => Unexpected::Float(*f),
        Value::Str(s) => Unexpected::Str(s),
        Value::Bytes(b) => Unexpected::Bytes(b),
        Value::List(_) => Unexpected::Seq,
        Value::Map(_) => Unexpected::Map,
        Value::Opaque(_) => Unexpected::Other("opaque value"),
    }
}

/// The error for a value that is not what `exp` wants; an opaque value is always
/// [`ValueError::Opaque`].
fn invalid_type(v: &Value, exp: &dyn de::Expected) -> ValueError {
    match v {
        Value::Opaque(_) => ValueError::Opaque,
        v => de::Error::invalid_type(unexpected(v), exp),
    }
}

fn visit_list<'de, V: Visitor<'de>>(list: &'de [Value], visitor: V) -> Result<V::Value, ValueError> {
    let mut access = ListAccess { iter: list.iter() };
    let out = visitor.visit_seq(&mut access)?;
    let left = access.iter.len();
    if left == 0 {
        Ok(out)
    } else {
        Err(de::Error::invalid_length(
            list.len(),
            &format!("{} elements", list.len() - left).as_str(),
        ))
    }
}

fn visit_map<'de, V: Visitor<'de>>(map: &'de BTreeMap<String, Value>, visitor: V) -> Result<V::Value, ValueError> {
    let mut access = MapAccess {
        iter: map.iter(),
        value: None,
    };
    let out = visitor.visit_map(&mut access)?;
    let left = access.iter.len();
    if left == 0 {
        Ok(out)
    } else {
        Err(de::Error::invalid_length(
            map.len(),
            &format!("{} entries", map.len() - left).as_str(),
        ))
    }
}

/// Bytes from a [`Value::Bytes`] read as a sequence of `u8` (e.g. into a `Vec<u8>` or `[u8; 4]`).
fn visit_bytes_as_seq<'de, V: Visitor<'de>>(bytes: &'de [u8], visitor: V) -> Result<V::Value, ValueError> {
    let mut access = de::value::SeqDeserializer::new(bytes.iter().copied());
    let out = visitor.visit_seq(&mut access)?;
    access.end()?;
    Ok(out)
}

/// Deserializes from a borrowed [`Value`] (used by [`from_value`](super::from_value)); strings and
/// bytes are lent out.
impl<'de> de::Deserializer<'de> for &'de Value {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            // Non-negative integers go as `u64` like in serde_json: derived field and variant
            // identifiers only accept `visit_u64`.
            Value::Int(i) => match u64::try_from(*i) {
                Ok(u) => visitor.visit_u64(u),
                Err(_) => visitor.visit_i64(*i),
            },
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            Value::List(l) => visit_list(l, visitor),
            Value::Map(m) => visit_map(m, visitor),
            Value::Opaque(_) => Err(ValueError::Opaque),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            // The visitor range-checks into its own type.
            Value::Int(i) => visitor.visit_i64(*i),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Int(i) => visitor.visit_i128((*i).into()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        // Negative values reach the visitor as `i64`, which reports them as out of range.
        self.deserialize_any(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Int(i) if *i >= 0 => visitor.visit_u128(i.unsigned_abs().into()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::List(l) => {
                let mut bytes = Vec::with_capacity(l.len());
                for v in l {
                    match v {
                        Value::Int(i) => bytes.push(u8::try_from(*i).map_err(|_| {
                            <ValueError as de::Error>::invalid_value(Unexpected::Signed(*i), &"a byte (0..=255)")
                        })?),
                        other => return Err(invalid_type(other, &"a byte (0..=255)")),
                    }
                }
                visitor.visit_byte_buf(bytes)
            }
            _ => Err(invalid_type(self, &visitor)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Null => visitor.visit_unit(),
            _ => Err(invalid_type(self, &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::List(l) => visit_list(l, visitor),
            Value::Bytes(b) => visit_bytes_as_seq(b, visitor),
            _ => Err(invalid_type(self, &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Map(m) => visit_map(m, visitor),
            _ => Err(invalid_type(self, &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            Value::Map(m) => visit_map(m, visitor),
            Value::List(l) => visit_list(l, visitor),
            _ => Err(invalid_type(self, &visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            Value::Str(s) => visitor.visit_enum(EnumAccess {
                variant: s,
                content: None,
            }),
            Value::Map(m) => {
                let mut it = m.iter();
                match (it.next(), it.next()) {
                    (Some((k, v)), None) => visitor.visit_enum(EnumAccess {
                        variant: k,
                        content: Some(v),
                    }),
                    _ => Err(de::Error::invalid_value(Unexpected::Map, &"a map with a single key")),
                }
            }
            _ => Err(invalid_type(self, &"a string or a map with a single key")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        // Nothing to skip in a tree; an ignored opaque value is not an error.
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool f32 f64 char str string identifier
    }
}

/// Elements of a [`Value::List`].
struct ListAccess<'de> {
    iter: core::slice::Iter<'de, Value>,
}

impl<'de> de::SeqAccess<'de> for ListAccess<'de> {
    type Error = ValueError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, ValueError> {
        self.iter.next().map(|v| seed.deserialize(v)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// Entries of a [`Value::Map`]; keys go through [`KeyDeserializer`].
struct MapAccess<'de> {
    iter: btree_map::Iter<'de, String, Value>,
    value: Option<&'de Value>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = ValueError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, ValueError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(KeyDeserializer(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, ValueError> {
        match self.value.take() {
            Some(v) => seed.deserialize(v),
            None => Err(ValueError::Custom("next_value_seed called before next_key_seed".into())),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// A map key: a string that reads back as an integer, char or unit variant when the target asks.
struct KeyDeserializer<'de>(&'de str);

impl KeyDeserializer<'_> {
    fn parse<N: core::str::FromStr>(&self, exp: &dyn de::Expected) -> Result<N, ValueError> {
        self.0
            .parse()
            .map_err(|_| de::Error::invalid_type(Unexpected::Str(self.0), exp))
    }
}

impl<'de> de::Deserializer<'de> for KeyDeserializer<'de> {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        let n = self.parse(&visitor)?;
        visitor.visit_i64(n)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        let n = self.parse(&visitor)?;
        visitor.visit_i128(n)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        let n = self.parse(&visitor)?;
        visitor.visit_u64(n)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        let n = self.parse(&visitor)?;
        visitor.visit_u128(n)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_enum(self.0.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        bool f32 f64 char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// An enum read from `"Variant"` (no content) or `{"Variant": content}`.
struct EnumAccess<'de> {
    variant: &'de str,
    content: Option<&'de Value>,
}

impl<'de> de::EnumAccess<'de> for EnumAccess<'de> {
    type Error = ValueError;
    type Variant = VariantAccess<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, VariantAccess<'de>), ValueError> {
        let variant = seed.deserialize(de::value::BorrowedStrDeserializer::<ValueError>::new(self.variant))?;
        Ok((variant, VariantAccess { content: self.content }))
    }
}

/// The content of an enum variant, if any.
struct VariantAccess<'de> {
    content: Option<&'de Value>,
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'de> {
    type Error = ValueError;

    fn unit_variant(self) -> Result<(), ValueError> {
        match self.content {
            None | Some(Value::Null) => Ok(()),
            Some(v) => Err(invalid_type(v, &"unit variant")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, ValueError> {
        match self.content {
            Some(v) => seed.deserialize(v),
            None => Err(de::Error::invalid_type(Unexpected::UnitVariant, &"newtype variant")),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, ValueError> {
        match self.content {
            Some(v) => de::Deserializer::deserialize_seq(v, visitor),
            None => Err(de::Error::invalid_type(Unexpected::UnitVariant, &"tuple variant")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.content {
            Some(v) => de::Deserializer::deserialize_struct(v, "", fields, visitor),
            None => Err(de::Error::invalid_type(Unexpected::UnitVariant, &"struct variant")),
        }
    }
}
