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

mod de;
mod ser;

use alloc::string::{String, ToString};
use core::fmt;

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

impl ValueError {
    /// This error's stable code: a value that does not convert is an invalid argument.
    pub fn code(&self) -> crate::error::ErrorCode {
        crate::error::ErrorCode::InvalidArgs
    }
}

impl serde::ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::Custom(msg.to_string())
    }
}

impl serde::de::Error for ValueError {
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
pub fn to_value<T: serde::Serialize + ?Sized>(t: &T) -> Result<Value, ValueError> {
    ser::serialize(t)
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
pub fn from_value<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, ValueError> {
    T::deserialize(v)
}
