//! `to_value` / `from_value` (the `serde` feature), through the public API only. The crate's
//! dev-dependency on itself turns the feature on for its tests, so `cargo test` runs these.
#![cfg(feature = "serde")]

use std::collections::BTreeMap;
use std::fmt;

use amrpc_core::{Opaque, Value, ValueError, from_value, to_value};
use proptest::prelude::*;
use serde::de::{self, Visitor};
use serde::ser;
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
        format!("i128 value {} does not fit in an Int", i128::MIN)
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
    by_kind.insert(format!("{:?}", Kind::Unit), 0);
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
