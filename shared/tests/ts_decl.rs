//! TypeScript typings of a worker's states (`amrpc_core::ts`, the `ts` feature): `schema!`'s
#![allow(missing_docs)]
//! `args: T` records `T`'s type as one self-contained expression; `declaration` writes the
//! `.d.ts` that `amrpc types` produces.

use amrpc_core::ts::{self, TS};

#[derive(serde::Serialize, serde::Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Fast,
    Slow,
}

#[derive(serde::Serialize, serde::Deserialize, TS)]
pub struct Inner {
    /// A doc comment that mentions Mode, which must stay a comment.
    pub mode: Mode,
    pub tags: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize, TS)]
pub struct Job {
    pub id: String,
    pub n: u32,
    pub inner: Inner,
    pub modes: Vec<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub note: Option<String>,
}

/// Not a `TS` type: `schema!` records no TypeScript type for it (no error).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Untyped {
    pub x: u8,
}

amrpc_core::schema! {
    pub mod jobs {
        Run: { args: Job },
        Other: { args: Untyped },
        Plain: { multi: true },
    }
}

#[test]
fn args_types_are_self_contained_expressions() {
    let t = ts::args_ts::<Job>();
    println!("{t}");
    assert!(
        !t.contains("Mode") && !t.contains("Inner"),
        "dependencies are inlined: {t}"
    );
    assert!(t.contains(r#""fast" | "slow""#), "{t}");
    assert!(t.contains("note?: string"), "{t}");
    assert!(!t.contains("/*"), "doc comments are dropped: {t}");
    let s = jobs::schema();
    assert_eq!(s["Run"].args_ts.as_deref(), Some(t.as_str()));
    assert_eq!(s["Other"].args_ts, None, "a type without TS gets none");
    assert_eq!(s["Plain"].args_ts, None);
}

#[test]
fn declaration_lists_names_and_args() {
    let names: Vec<String> = ["Run", "Other", "Plain", "Quote\"d"].map(String::from).to_vec();
    let mut s = jobs::schema();
    s.insert("Quote\"d".into(), amrpc_core::State::new());
    let d = ts::declaration("jobs", &names, &s, 0xabc);
    println!("{d}");
    assert!(
        d.contains("export type StateName =\n  | \"Run\"\n  | \"Other\"\n  | \"Plain\"\n  | \"Quote\\\"d\";"),
        "{d}"
    );
    assert!(d.contains(&format!("  \"Run\": {};", ts::args_ts::<Job>())), "{d}");
    assert!(d.contains("  \"Other\": Args;"), "{d}");
    assert!(d.contains("export type SchemaHash = \"0000000000000abc\";"), "{d}");
    assert!(d.contains("import type { Args } from \"amrpc\";"));
}
