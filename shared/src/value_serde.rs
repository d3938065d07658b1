//! Conversion between any serde type and [`Value`], like `serde_json::to_value` / `from_value`.
//!
//! Mutation arguments are [`Value`]s on purpose: they must stay JS-friendly (plain nulls, bools,
//! numbers, strings, bytes, lists and string-keyed maps) and serialisable over the wire, whatever
//! language sits on the other end. Rust users, however, want to pass and receive their own types.
//! [`to_value`] and [`from_value`] bridge the two through serde, so any `#[derive(Serialize,
//! Deserialize)]` type can travel as a [`Value`] without a dependency on a concrete wire format.
//!
//! The mapping follows `serde_json::Value`: structs and maps become [`Value::Map`], sequences and
//! tuples [`Value::List`], enums are externally tagged (`"Unit"`, `{"Newtype": x}`, `{"Tuple":
//! [..]}`, `{"Struct": {..}}`). Integers must fit in an `i64`; [`Value::Opaque`] never converts.

use alloc::collections::BTreeMap;
use alloc::collections::btree_map;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};
use serde::ser::{self, Impossible, Serialize};

use crate::types::Value;

/// Error of [`to_value`] and [`from_value`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// An integer outside the range of [`Value::Int`] (`i64`), e.g. `u64::MAX`.
    #[error("{ty} value {value} does not fit in an Int")]
    IntOutOfRange {
        /// The Rust type of the integer (`u64`, `i128`, `u128`).
        ty: &'static str,
        /// The integer, in decimal.
        value: String,
    },
    /// A [`Value::Opaque`] was met: in-process values have no serde form.
    #[error("opaque values cannot be converted")]
    Opaque,
    /// A map key that is not a string, an integer, a char (or a unit enum variant).
    #[error("map keys must be strings (integers and chars are converted), got {0}")]
    KeyMustBeString(&'static str),
    /// Any other error, e.g. a type mismatch or a missing field reported by a `Deserialize` impl.
    #[error("{0}")]
    Custom(String),
}

impl ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::Custom(msg.to_string())
    }
}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::Custom(msg.to_string())
    }
}

/// Converts any serialisable value into a [`Value`].
///
/// Unit, unit structs and `None` become [`Value::Null`]; integers become [`Value::Int`] (an
/// unsigned or 128-bit integer above `i64::MAX` is an error); structs and maps become
/// [`Value::Map`] (integer and char map keys are turned into strings, other non-string keys are an
/// error); enums are externally tagged as in `serde_json`.
///
/// ```
/// use amrpc_core::{Value, to_value};
/// #[derive(serde::Serialize)]
/// struct Point { x: i32, y: i32 }
/// let v = to_value(&Point { x: 1, y: -2 }).unwrap();
/// let Value::Map(m) = v else { panic!() };
/// assert_eq!(m["x"], Value::Int(1));
/// assert!(to_value(&u64::MAX).is_err());
/// ```
pub fn to_value<T: Serialize + ?Sized>(t: &T) -> Result<Value, ValueError> {
    t.serialize(ValueSerializer)
}

/// Converts a [`Value`] into any deserialisable type.
///
/// [`Value::Null`] reads as `None` / unit, a [`Value::Str`] as a unit enum variant and a
/// single-entry [`Value::Map`] as an enum variant with content. Map keys holding decimal integers
/// read back as integer keys. [`Value::Opaque`] is an error.
///
/// ```
/// use amrpc_core::{Value, from_value, to_value};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// enum Shape { Circle { r: f64 }, Empty }
/// let v = to_value(&Shape::Circle { r: 1.5 }).unwrap();
/// assert_eq!(from_value::<Shape>(&v).unwrap(), Shape::Circle { r: 1.5 });
/// assert_eq!(from_value::<Shape>(&Value::Str("Empty".into())).unwrap(), Shape::Empty);
/// assert!(from_value::<u8>(&Value::Int(300)).is_err());
/// ```
pub fn from_value<T: de::DeserializeOwned>(v: &Value) -> Result<T, ValueError> {
    T::deserialize(v)
}

// ---------------------------------------------------------------------------------------------
// Serializer
// ---------------------------------------------------------------------------------------------

/// The `serde::Serializer` producing a [`Value`].
struct ValueSerializer;

fn int_out_of_range(ty: &'static str, value: impl fmt::Display) -> ValueError {
    ValueError::IntOutOfRange {
        ty,
        value: value.to_string(),
    }
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = SerializeList;
    type SerializeTuple = SerializeList;
    type SerializeTupleStruct = SerializeList;
    type SerializeTupleVariant = SerializeTupleVariant;
    type SerializeMap = SerializeMap;
    type SerializeStruct = SerializeMap;
    type SerializeStructVariant = SerializeStructVariant;

    fn serialize_bool(self, v: bool) -> Result<Value, ValueError> {
        Ok(Value::Bool(v))
    }

    fn serialize_i8(self, v: i8) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i16(self, v: i16) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i32(self, v: i32) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i64(self, v: i64) -> Result<Value, ValueError> {
        Ok(Value::Int(v))
    }

    fn serialize_i128(self, v: i128) -> Result<Value, ValueError> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| int_out_of_range("i128", v))
    }

    fn serialize_u8(self, v: u8) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u16(self, v: u16) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u32(self, v: u32) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u64(self, v: u64) -> Result<Value, ValueError> {
        i64::try_from(v).map(Value::Int).map_err(|_| int_out_of_range("u64", v))
    }

    fn serialize_u128(self, v: u128) -> Result<Value, ValueError> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| int_out_of_range("u128", v))
    }

    fn serialize_f32(self, v: f32) -> Result<Value, ValueError> {
        Ok(Value::Float(v.into()))
    }

    fn serialize_f64(self, v: f64) -> Result<Value, ValueError> {
        Ok(Value::Float(v))
    }

    fn serialize_char(self, v: char) -> Result<Value, ValueError> {
        Ok(Value::Str(v.to_string()))
    }

    fn serialize_str(self, v: &str) -> Result<Value, ValueError> {
        Ok(Value::Str(v.into()))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ValueError> {
        Ok(Value::Bytes(v.to_vec()))
    }

    fn serialize_none(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ValueError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ValueError> {
        Ok(Value::Str(variant.into()))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        let mut m = BTreeMap::new();
        m.insert(String::from(variant), value.serialize(ValueSerializer)?);
        Ok(Value::Map(m))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SerializeList, ValueError> {
        Ok(SerializeList {
            list: Vec::with_capacity(capacity(len)),
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<SerializeList, ValueError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SerializeList, ValueError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SerializeTupleVariant, ValueError> {
        Ok(SerializeTupleVariant {
            variant,
            list: Vec::with_capacity(capacity(Some(len))),
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<SerializeMap, ValueError> {
        Ok(SerializeMap {
            map: BTreeMap::new(),
            next_key: None,
        })
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<SerializeMap, ValueError> {
        self.serialize_map(None)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<SerializeStructVariant, ValueError> {
        Ok(SerializeStructVariant {
            variant,
            map: BTreeMap::new(),
        })
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<Value, ValueError> {
        Ok(Value::Str(value.to_string()))
    }
}

/// Pre-allocation for a sequence: the hint, capped so a lying `size_hint` cannot exhaust memory.
fn capacity(len: Option<usize>) -> usize {
    len.unwrap_or(0).min(4096)
}

/// Builds a [`Value::List`] from a sequence, tuple or tuple struct.
struct SerializeList {
    list: Vec<Value>,
}

impl ser::SerializeSeq for SerializeList {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.list.push(value.serialize(ValueSerializer)?);
        Ok(())
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::List(self.list))
    }
}

impl ser::SerializeTuple for SerializeList {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SerializeList {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}

/// Builds `{variant: [..]}`.
struct SerializeTupleVariant {
    variant: &'static str,
    list: Vec<Value>,
}

impl ser::SerializeTupleVariant for SerializeTupleVariant {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.list.push(value.serialize(ValueSerializer)?);
        Ok(())
    }

    fn end(self) -> Result<Value, ValueError> {
        let mut m = BTreeMap::new();
        m.insert(String::from(self.variant), Value::List(self.list));
        Ok(Value::Map(m))
    }
}

/// Builds a [`Value::Map`] from a map or a struct.
struct SerializeMap {
    map: BTreeMap<String, Value>,
    next_key: Option<String>,
}

impl ser::SerializeMap for SerializeMap {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        self.next_key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        // A well-behaved `Serialize` impl always calls `serialize_key` first; report misuse instead
        // of panicking.
        let key = self
            .next_key
            .take()
            .ok_or_else(|| ValueError::Custom("serialize_value called before serialize_key".into()))?;
        self.map.insert(key, value.serialize(ValueSerializer)?);
        Ok(())
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Map(self.map))
    }
}

impl ser::SerializeStruct for SerializeMap {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), ValueError> {
        self.map.insert(String::from(key), value.serialize(ValueSerializer)?);
        Ok(())
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Map(self.map))
    }
}

/// Builds `{variant: {..}}`.
struct SerializeStructVariant {
    variant: &'static str,
    map: BTreeMap<String, Value>,
}

impl ser::SerializeStructVariant for SerializeStructVariant {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), ValueError> {
        self.map.insert(String::from(key), value.serialize(ValueSerializer)?);
        Ok(())
    }

    fn end(self) -> Result<Value, ValueError> {
        let mut m = BTreeMap::new();
        m.insert(String::from(self.variant), Value::Map(self.map));
        Ok(Value::Map(m))
    }
}

/// Serializes a map key to a `String`: strings as is, integers in decimal, chars as a string,
/// unit enum variants as their name; anything else is [`ValueError::KeyMustBeString`].
struct KeySerializer;

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = ValueError;
    type SerializeSeq = Impossible<String, ValueError>;
    type SerializeTuple = Impossible<String, ValueError>;
    type SerializeTupleStruct = Impossible<String, ValueError>;
    type SerializeTupleVariant = Impossible<String, ValueError>;
    type SerializeMap = Impossible<String, ValueError>;
    type SerializeStruct = Impossible<String, ValueError>;
    type SerializeStructVariant = Impossible<String, ValueError>;

    fn serialize_bool(self, _v: bool) -> Result<String, ValueError> {
        Err(ValueError::KeyMustBeString("a bool"))
    }

    fn serialize_i8(self, v: i8) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i16(self, v: i16) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i32(self, v: i32) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i64(self, v: i64) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_i128(self, v: i128) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u8(self, v: u8) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u16(self, v: u16) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u32(self, v: u32) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u64(self, v: u64) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_u128(self, v: u128) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_f32(self, _v: f32) -> Result<String, ValueError> {
        Err(ValueError::KeyMustBeString("a float"))
    }

    fn serialize_f64(self, _v: f64) -> Result<String, ValueError> {
        Err(ValueError::KeyMustBeString("a float"))
    }

    fn serialize_char(self, v: char) -> Result<String, ValueError> {
        Ok(v.to_string())
    }

    fn serialize_str(self, v: &str) -> Result<String, ValueError> {
        Ok(v.into())
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<String, ValueError> {
        Err(ValueError::KeyMustBeString("bytes"))
    }

    fn serialize_none(self) -> Result<String, ValueError> {
        Err(ValueError::KeyMustBeString("an option"))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, ValueError> {
        Err(ValueError::KeyMustBeString("an option"))
    }

    fn serialize_unit(self) -> Result<String, ValueError> {
        Err(ValueError::KeyMustBeString("a unit"))
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, ValueError> {
        Err(ValueError::KeyMustBeString("a unit struct"))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, ValueError> {
        // A unit variant is a `Value::Str` everywhere else, so it is a string key too.
        Ok(variant.into())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, ValueError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, ValueError> {
        Err(ValueError::KeyMustBeString("an enum variant with data"))
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, ValueError> {
        Err(ValueError::KeyMustBeString("a sequence"))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, ValueError> {
        Err(ValueError::KeyMustBeString("a tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, ValueError> {
        Err(ValueError::KeyMustBeString("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, ValueError> {
        Err(ValueError::KeyMustBeString("an enum variant with data"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, ValueError> {
        Err(ValueError::KeyMustBeString("a map"))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct, ValueError> {
        Err(ValueError::KeyMustBeString("a struct"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, ValueError> {
        Err(ValueError::KeyMustBeString("an enum variant with data"))
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<String, ValueError> {
        Ok(value.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Deserializer
// ---------------------------------------------------------------------------------------------

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

/// Deserializes from a borrowed [`Value`] (used by [`from_value`]); strings and bytes are lent out.
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

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::types::Opaque;
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (String::from(k), v)).collect())
    }

    fn str(s: &str) -> Value {
        Value::Str(s.into())
    }

    /// `from_value(to_value(x)) == x`.
    fn round_trip<T: Serialize + de::DeserializeOwned + PartialEq + fmt::Debug>(x: &T) {
        let v = to_value(x).unwrap();
        assert_eq!(&from_value::<T>(&v).unwrap(), x, "via {v:?}");
    }

    /// Bytes serialised with `serialize_bytes` (what `serde_bytes` does).
    #[derive(Debug, PartialEq, Clone)]
    struct Blob(Vec<u8>);

    impl Serialize for Blob {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Blob {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Blob;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                    Ok(Blob(v.to_vec()))
                }
                fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                    Ok(Blob(v))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Blob, E> {
                    Ok(Blob(v.as_bytes().to_vec()))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Kind {
        Unit,
        Newtype(i32),
        Tuple(u8, String),
        Struct { a: bool, b: Option<f64> },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Inner {
        name: String,
        tags: Vec<String>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Outer {
        id: u32,
        inner: Inner,
        maybe: Option<Inner>,
        kinds: Vec<Kind>,
        unit: (),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct UnitStruct;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Meters(f64);

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Pair(i8, char);

    #[test]
    fn primitives() {
        assert_eq!(to_value(&()).unwrap(), Value::Null);
        assert_eq!(to_value(&UnitStruct).unwrap(), Value::Null);
        assert_eq!(to_value(&true).unwrap(), Value::Bool(true));
        assert_eq!(to_value(&-5i8).unwrap(), Value::Int(-5));
        assert_eq!(to_value(&i64::MIN).unwrap(), Value::Int(i64::MIN));
        assert_eq!(to_value(&(i64::MAX as u64)).unwrap(), Value::Int(i64::MAX));
        assert_eq!(to_value(&7u128).unwrap(), Value::Int(7));
        assert_eq!(to_value(&-7i128).unwrap(), Value::Int(-7));
        assert_eq!(to_value(&1.5f32).unwrap(), Value::Float(1.5));
        assert_eq!(to_value(&2.25f64).unwrap(), Value::Float(2.25));
        assert_eq!(to_value(&'x').unwrap(), str("x"));
        assert_eq!(to_value("hi").unwrap(), str("hi"));
        assert_eq!(to_value(&String::from("hi")).unwrap(), str("hi"));
        assert_eq!(to_value(&Meters(3.0)).unwrap(), Value::Float(3.0));
        assert_eq!(
            to_value(&Pair(-1, 'c')).unwrap(),
            Value::List(vec![Value::Int(-1), str("c")])
        );
        assert_eq!(
            to_value(&(1u8, "a")).unwrap(),
            Value::List(vec![Value::Int(1), str("a")])
        );

        assert_eq!(from_value::<()>(&Value::Null).unwrap(), ());
        assert_eq!(from_value::<UnitStruct>(&Value::Null).unwrap(), UnitStruct);
        assert!(from_value::<bool>(&Value::Bool(false)).is_ok_and(|b| !b));
        assert_eq!(from_value::<i8>(&Value::Int(-128)).unwrap(), -128);
        assert_eq!(from_value::<u8>(&Value::Int(255)).unwrap(), 255);
        assert_eq!(from_value::<u64>(&Value::Int(i64::MAX)).unwrap(), i64::MAX as u64);
        assert_eq!(from_value::<i128>(&Value::Int(-3)).unwrap(), -3);
        assert_eq!(from_value::<u128>(&Value::Int(3)).unwrap(), 3);
        assert_eq!(from_value::<f64>(&Value::Float(0.5)).unwrap(), 0.5);
        assert_eq!(from_value::<f32>(&Value::Float(0.5)).unwrap(), 0.5);
        assert_eq!(from_value::<f64>(&Value::Int(2)).unwrap(), 2.0); // ints widen to floats
        assert_eq!(from_value::<char>(&str("z")).unwrap(), 'z');
        assert_eq!(from_value::<String>(&str("s")).unwrap(), "s");
        assert_eq!(from_value::<Meters>(&Value::Float(1.0)).unwrap(), Meters(1.0));
        assert_eq!(
            from_value::<Pair>(&Value::List(vec![Value::Int(4), str("q")])).unwrap(),
            Pair(4, 'q')
        );
        assert_eq!(
            from_value::<(u8, String)>(&Value::List(vec![Value::Int(1), str("a")])).unwrap(),
            (1, "a".into())
        );
        round_trip(&(1u16, -2i32, 3u64, 'x', String::from("y"), 0.25f32));
        round_trip(&Box::new(5i64));
    }

    #[test]
    fn options() {
        assert_eq!(to_value(&None::<i32>).unwrap(), Value::Null);
        assert_eq!(to_value(&Some(3)).unwrap(), Value::Int(3));
        assert_eq!(from_value::<Option<i32>>(&Value::Null).unwrap(), None);
        assert_eq!(from_value::<Option<i32>>(&Value::Int(3)).unwrap(), Some(3));
        assert_eq!(from_value::<Option<String>>(&str("a")).unwrap(), Some("a".into()));
        // A missing optional field is `None`.
        #[derive(Deserialize, Debug, PartialEq)]
        struct S {
            a: Option<i32>,
            b: Option<i32>,
        }
        assert_eq!(
            from_value::<S>(&map([("a", Value::Int(1))])).unwrap(),
            S { a: Some(1), b: None }
        );
        round_trip(&vec![Some(1u8), None, Some(2)]);
    }

    #[test]
    fn nested_structs() {
        let x = Outer {
            id: 9,
            inner: Inner {
                name: "in".into(),
                tags: vec!["a".into(), "b".into()],
            },
            maybe: None,
            kinds: vec![Kind::Unit, Kind::Newtype(-1)],
            unit: (),
        };
        let v = to_value(&x).unwrap();
        let expected = map([
            ("id", Value::Int(9)),
            (
                "inner",
                map([("name", str("in")), ("tags", Value::List(vec![str("a"), str("b")]))]),
            ),
            ("maybe", Value::Null),
            (
                "kinds",
                Value::List(vec![str("Unit"), map([("Newtype", Value::Int(-1))])]),
            ),
            ("unit", Value::Null),
        ]);
        assert_eq!(v, expected);
        assert_eq!(from_value::<Outer>(&v).unwrap(), x);
        round_trip(&Outer {
            maybe: Some(Inner {
                name: String::new(),
                tags: vec![],
            }),
            ..x
        });

        // Unknown fields are ignored, even opaque ones; structs also read from a list.
        let Value::Map(mut m) = expected else { unreachable!() };
        m.insert("extra".into(), Value::Opaque(Opaque::new(1u8)));
        assert!(from_value::<Outer>(&Value::Map(m)).is_ok());
        let inner = Value::List(vec![str("n"), Value::List(vec![])]);
        assert_eq!(
            from_value::<Inner>(&inner).unwrap(),
            Inner {
                name: "n".into(),
                tags: vec![]
            }
        );
    }

    #[test]
    fn enums_of_all_variant_kinds() {
        let cases = [
            (Kind::Unit, str("Unit")),
            (Kind::Newtype(7), map([("Newtype", Value::Int(7))])),
            (
                Kind::Tuple(1, "t".into()),
                map([("Tuple", Value::List(vec![Value::Int(1), str("t")]))]),
            ),
            (
                Kind::Struct { a: true, b: Some(0.5) },
                map([("Struct", map([("a", Value::Bool(true)), ("b", Value::Float(0.5))]))]),
            ),
        ];
        for (k, v) in cases {
            assert_eq!(to_value(&k).unwrap(), v);
            assert_eq!(from_value::<Kind>(&v).unwrap(), k);
        }
        // `{"Unit": null}` is accepted as a unit variant, like serde_json.
        assert_eq!(from_value::<Kind>(&map([("Unit", Value::Null)])).unwrap(), Kind::Unit);

        // Other enum representations go through `deserialize_any`.
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        #[serde(tag = "type")]
        enum Tagged {
            A { x: i32 },
            B,
        }
        assert_eq!(to_value(&Tagged::B).unwrap(), map([("type", str("B"))]));
        round_trip(&Tagged::A { x: -3 });
        round_trip(&Tagged::B);

        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        #[serde(tag = "t", content = "c")]
        enum Adjacent {
            N(u8),
            S(String),
        }
        round_trip(&Adjacent::N(1));
        round_trip(&Adjacent::S("s".into()));

        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        #[serde(untagged)]
        enum Untagged {
            I(i64),
            S(String),
            L(Vec<Untagged>),
        }
        round_trip(&Untagged::L(vec![
            Untagged::I(-1),
            Untagged::I(2),
            Untagged::S("x".into()),
        ]));
    }

    #[test]
    fn maps_with_string_and_integer_keys() {
        let mut by_name = BTreeMap::new();
        by_name.insert(String::from("b"), 2i32);
        by_name.insert(String::from("a"), 1);
        assert_eq!(
            to_value(&by_name).unwrap(),
            map([("a", Value::Int(1)), ("b", Value::Int(2))])
        );
        round_trip(&by_name);

        let mut by_int = BTreeMap::new();
        by_int.insert(-1i32, "neg");
        by_int.insert(10, "ten");
        assert_eq!(
            to_value(&by_int).unwrap(),
            map([("-1", str("neg")), ("10", str("ten"))])
        );
        let back: BTreeMap<i32, String> = from_value(&to_value(&by_int).unwrap()).unwrap();
        assert_eq!(back.get(&10).map(String::as_str), Some("ten"));
        assert_eq!(back.len(), 2);

        // Integer keys beyond i64 are fine: keys are strings.
        let mut big = BTreeMap::new();
        big.insert(u64::MAX, true);
        big.insert(0, false);
        assert_eq!(
            to_value(&big).unwrap(),
            map([("0", Value::Bool(false)), ("18446744073709551615", Value::Bool(true))])
        );
        round_trip(&big);
        let mut huge = BTreeMap::new();
        huge.insert(u128::MAX, 1u8);
        huge.insert(0, 2);
        round_trip(&huge);
        let mut neg = BTreeMap::new();
        neg.insert(i128::MIN, 1u8);
        round_trip(&neg);

        // Char keys, unit-variant keys and newtype keys.
        let mut by_char = BTreeMap::new();
        by_char.insert('x', 1u8);
        assert_eq!(to_value(&by_char).unwrap(), map([("x", Value::Int(1))]));
        round_trip(&by_char);
        #[derive(Serialize, Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
        enum Color {
            Red,
            Blue,
        }
        let mut by_color = BTreeMap::new();
        by_color.insert(Color::Red, 1u8);
        by_color.insert(Color::Blue, 2u8);
        assert_eq!(
            to_value(&by_color).unwrap(),
            map([("Blue", Value::Int(2)), ("Red", Value::Int(1))])
        );
        round_trip(&by_color);
        #[derive(Serialize, Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
        struct Id(u16);
        let mut by_id = BTreeMap::new();
        by_id.insert(Id(3), "three".to_string());
        assert_eq!(to_value(&by_id).unwrap(), map([("3", str("three"))]));
        round_trip(&by_id);

        // std maps.
        let mut hm = std::collections::HashMap::new();
        hm.insert(5u8, vec![1i16]);
        round_trip(&hm);

        // A key that is not a number for a numeric map is an error.
        let err = from_value::<BTreeMap<u8, i32>>(&map([("x", Value::Int(1))])).unwrap_err();
        assert!(err.to_string().contains("invalid type: string \"x\""), "{err}");
        // 256 does not fit a u8 key.
        assert!(from_value::<BTreeMap<u8, i32>>(&map([("256", Value::Int(1))])).is_err());
    }

    #[test]
    fn bytes() {
        let blob = Blob(vec![0, 1, 255]);
        assert_eq!(to_value(&blob).unwrap(), Value::Bytes(vec![0, 1, 255]));
        round_trip(&blob);
        // A list of small ints reads as bytes too; a string as its UTF-8.
        let list = Value::List(vec![Value::Int(0), Value::Int(1), Value::Int(255)]);
        assert_eq!(from_value::<Blob>(&list).unwrap(), blob);
        assert_eq!(from_value::<Blob>(&str("ab")).unwrap(), Blob(b"ab".to_vec()));
        assert!(from_value::<Blob>(&Value::List(vec![Value::Int(256)])).is_err());
        assert!(from_value::<Blob>(&Value::List(vec![Value::Int(-1)])).is_err());
        assert!(from_value::<Blob>(&Value::List(vec![str("a")])).is_err());
        assert!(from_value::<Blob>(&Value::Int(1)).is_err());
        // A plain `Vec<u8>` is a sequence: it serialises as a list and reads from either form.
        assert_eq!(
            to_value(&vec![1u8, 2]).unwrap(),
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(from_value::<Vec<u8>>(&Value::Bytes(vec![1, 2])).unwrap(), vec![1, 2]);
        assert_eq!(from_value::<[u8; 2]>(&Value::Bytes(vec![1, 2])).unwrap(), [1, 2]);
        assert!(from_value::<[u8; 2]>(&Value::Bytes(vec![1, 2, 3])).is_err());
        round_trip(&vec![1u8, 2]);
    }

    #[test]
    fn serde_json_values_pass_through() {
        let j = serde_json::json!({
            "a": [1, -2, 2.5, "s", null, true],
            "b": {"c": {}},
            "d": 9223372036854775807u64,
        });
        let v = to_value(&j).unwrap();
        assert_eq!(from_value::<serde_json::Value>(&v).unwrap(), j);
        let too_big = serde_json::json!({ "x": u64::MAX });
        assert!(to_value(&too_big).is_err());
    }

    #[test]
    fn error_cases() {
        // u64 / 128-bit values outside i64.
        let err = to_value(&u64::MAX).unwrap_err();
        assert_eq!(
            err,
            ValueError::IntOutOfRange {
                ty: "u64",
                value: "18446744073709551615".into()
            }
        );
        assert_eq!(err.to_string(), "u64 value 18446744073709551615 does not fit in an Int");
        assert_eq!(
            to_value(&(i64::MAX as u64 + 1)).unwrap_err().to_string(),
            "u64 value 9223372036854775808 does not fit in an Int"
        );
        assert!(to_value(&u128::MAX).is_err());
        assert_eq!(
            to_value(&i128::MIN).unwrap_err().to_string(),
            alloc::format!("i128 value {} does not fit in an Int", i128::MIN)
        );
        assert!(to_value(&vec![1u64, u64::MAX]).is_err());

        // Opaque values never convert, wherever they are.
        let opaque = Value::Opaque(Opaque::new(42u32));
        let err = from_value::<i32>(&opaque).unwrap_err();
        assert_eq!(err, ValueError::Opaque);
        assert_eq!(err.to_string(), "opaque values cannot be converted");
        assert_eq!(
            from_value::<serde_json::Value>(&opaque).unwrap_err(),
            ValueError::Opaque
        );
        assert_eq!(from_value::<String>(&opaque).unwrap_err(), ValueError::Opaque);
        assert_eq!(from_value::<Vec<i32>>(&opaque).unwrap_err(), ValueError::Opaque);
        assert_eq!(from_value::<Kind>(&opaque).unwrap_err(), ValueError::Opaque);
        assert_eq!(from_value::<Option<i32>>(&opaque).unwrap_err(), ValueError::Opaque);
        assert_eq!(
            from_value::<Vec<i32>>(&Value::List(vec![opaque.clone()])).unwrap_err(),
            ValueError::Opaque
        );
        assert_eq!(from_value::<Blob>(&opaque).unwrap_err(), ValueError::Opaque);
        assert_eq!(
            from_value::<Kind>(&map([("Newtype", opaque.clone())])).unwrap_err(),
            ValueError::Opaque
        );

        // Non-string map keys.
        let mut by_tuple = BTreeMap::new();
        by_tuple.insert((1, 2), "x");
        let err = to_value(&by_tuple).unwrap_err();
        assert_eq!(err, ValueError::KeyMustBeString("a tuple"));
        assert!(err.to_string().starts_with("map keys must be strings"), "{err}");
        let mut by_bool = BTreeMap::new();
        by_bool.insert(true, 1);
        assert!(to_value(&by_bool).is_err());
        let mut by_vec = BTreeMap::new();
        by_vec.insert(vec![1], 1);
        assert!(to_value(&by_vec).is_err());
        let mut by_opt = BTreeMap::new();
        by_opt.insert(Some(1), 1);
        assert!(to_value(&by_opt).is_err());
        let mut by_kind = std::collections::HashMap::new();
        by_kind.insert(alloc::format!("{:?}", Kind::Unit), 0);
        assert!(to_value(&by_kind).is_ok());
        #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
        enum DataKey {
            K(u8),
        }
        let mut by_data = BTreeMap::new();
        by_data.insert(DataKey::K(1), 1);
        assert!(to_value(&by_data).is_err());

        // Type mismatches.
        let err = from_value::<i32>(&str("5")).unwrap_err();
        assert!(
            matches!(&err, ValueError::Custom(m) if m.contains("invalid type: string \"5\", expected i32")),
            "{err}"
        );
        assert!(from_value::<String>(&Value::Int(5)).is_err());
        assert!(from_value::<bool>(&Value::Null).is_err());
        assert!(from_value::<i64>(&Value::Float(1.0)).is_err());
        assert!(from_value::<u8>(&Value::Int(256)).is_err());
        assert!(from_value::<u8>(&Value::Int(-1)).is_err());
        assert!(from_value::<u64>(&Value::Int(-1)).is_err());
        assert!(from_value::<u128>(&Value::Int(-1)).is_err());
        assert!(from_value::<i8>(&Value::Int(i64::MIN)).is_err());
        assert!(from_value::<char>(&str("ab")).is_err());
        assert!(from_value::<()>(&Value::Int(0)).is_err());
        assert!(from_value::<Vec<i32>>(&Value::Map(BTreeMap::new())).is_err());
        assert!(from_value::<BTreeMap<String, i32>>(&Value::List(vec![])).is_err());
        assert!(from_value::<Inner>(&Value::Int(1)).is_err());
        assert!(from_value::<Inner>(&map([("name", str("n"))])).is_err()); // missing field
        assert!(from_value::<(i32, i32)>(&Value::List(vec![Value::Int(1)])).is_err());
        assert!(from_value::<(i32, i32)>(&Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)])).is_err());
        assert!(from_value::<Pair>(&Value::List(vec![Value::Int(1), str("c"), Value::Null])).is_err());

        // Malformed enums.
        assert!(from_value::<Kind>(&str("Nope")).is_err());
        assert!(from_value::<Kind>(&Value::Int(0)).is_err());
        assert!(from_value::<Kind>(&Value::Map(BTreeMap::new())).is_err());
        assert!(from_value::<Kind>(&map([("Unit", Value::Null), ("Newtype", Value::Int(1))])).is_err());
        assert!(from_value::<Kind>(&map([("Unit", Value::Int(1))])).is_err());
        assert!(from_value::<Kind>(&str("Newtype")).is_err());
        assert!(from_value::<Kind>(&str("Tuple")).is_err());
        assert!(from_value::<Kind>(&str("Struct")).is_err());
        assert!(from_value::<Kind>(&map([("Tuple", Value::Int(1))])).is_err());
        assert!(from_value::<Kind>(&map([("Struct", Value::Int(1))])).is_err());
        assert!(from_value::<Kind>(&map([("Newtype", str("x"))])).is_err());
    }

    /// Any `Value` tree fed to a few targets gives `Ok` or `Err`, never a panic.
    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            "[a-zA-Z0-9]{0,6}".prop_map(Value::Str),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
            Just(Value::Opaque(Opaque::new(()))),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::btree_map("[a-zA-Z0-9]{0,6}", inner, 0..4).prop_map(Value::Map),
            ]
        })
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Record {
        small: u8,
        signed: i32,
        big: i64,
        unsigned: u64,
        ratio: f64,
        flag: bool,
        letter: char,
        name: String,
        nick: Option<String>,
        scores: Vec<u16>,
        by_id: BTreeMap<u32, String>,
        blob: Blob,
        kind: Kind,
        pair: (i16, bool),
    }

    fn arb_kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Unit),
            any::<i32>().prop_map(Kind::Newtype),
            (any::<u8>(), ".{0,8}").prop_map(|(n, s)| Kind::Tuple(n, s)),
            (any::<bool>(), proptest::option::of(-1e9f64..1e9)).prop_map(|(a, b)| Kind::Struct { a, b }),
        ]
    }

    prop_compose! {
        fn arb_record()(
            small in any::<u8>(),
            signed in any::<i32>(),
            big in any::<i64>(),
            unsigned in 0..=i64::MAX as u64,
            ratio in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
            flag in any::<bool>(),
            letter in any::<char>(),
            name in ".{0,12}",
            nick in proptest::option::of(".{0,6}"),
            scores in proptest::collection::vec(any::<u16>(), 0..6),
            by_id in proptest::collection::btree_map(any::<u32>(), ".{0,4}", 0..4),
            blob in proptest::collection::vec(any::<u8>(), 0..8),
            kind in arb_kind(),
            pair in any::<(i16, bool)>(),
        ) -> Record {
            Record { small, signed, big, unsigned, ratio, flag, letter, name, nick, scores, by_id, blob: Blob(blob), kind, pair }
        }
    }

    proptest! {
        #[test]
        fn record_round_trips(r in arb_record()) {
            let v = to_value(&r).unwrap();
            prop_assert_eq!(from_value::<Record>(&v).unwrap(), r);
        }

        #[test]
        fn u64_above_i64_max_is_an_error(n in (i64::MAX as u64 + 1)..=u64::MAX) {
            let out_of_range = matches!(to_value(&n), Err(ValueError::IntOutOfRange { ty: "u64", .. }));
            prop_assert!(out_of_range);
        }

        #[test]
        fn arbitrary_values_never_panic(v in arb_value()) {
            let _ = from_value::<Record>(&v);
            let _ = from_value::<Kind>(&v);
            let _ = from_value::<Outer>(&v);
            let _ = from_value::<Vec<Option<i8>>>(&v);
            let _ = from_value::<BTreeMap<u8, Blob>>(&v);
            let _ = from_value::<(u8, String, Meters)>(&v);
            let _ = from_value::<u128>(&v);
            let _ = from_value::<()>(&v);
            if let Ok(j) = from_value::<serde_json::Value>(&v) {
                // What converts to JSON converts back (floats may become non-finite nulls, so only
                // check it does not fail).
                prop_assert!(to_value(&j).is_ok());
            }
        }
    }
}
