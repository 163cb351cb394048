//! Generated code passes the lints a strict crate denies.
#![deny(
    warnings,
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    unused_qualifications,
    unused_results,
    clippy::all
)]

use agentgraph::State;
use serde::{Deserialize, Serialize};

/// A public state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
pub struct Research {
    /// Overwritten.
    pub topic: String,
    /// Appended.
    #[reducer(append)]
    pub notes: Vec<String>,
    /// Added.
    #[reducer(add)]
    pub tokens: u64,
}

/// A state without fields.
#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
pub struct Empty {}

/// A state of version 2, with fields that have defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
#[state(version = 2)]
pub struct Versioned {
    /// No default.
    pub name: String,
    /// The type's default.
    #[serde(default)]
    pub count: u32,
    /// A function's.
    #[serde(default = "three", rename = "limit")]
    pub max: u8,
}

fn three() -> u8 {
    3
}

/// A state whose fields all have the struct's defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
#[serde(default)]
#[state(version = 5)]
pub struct AllDefault {
    /// A default from the struct.
    pub level: u8,
}

mod private {
    use super::{Deserialize, Serialize, State};

    #[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
    pub(crate) struct Crate {
        #[reducer(with = keep_first)]
        pub(crate) first: Option<u8>,
    }

    fn keep_first(acc: &mut Option<u8>, update: Option<u8>) {
        if acc.is_none() {
            *acc = update;
        }
    }

    #[derive(Clone, Debug, Default, Serialize, Deserialize, State)]
    struct Private {
        #[reducer(max)]
        high: i8,
    }

    pub(crate) fn run() {
        let mut c = Crate::default();
        c.apply(CrateUpdate::new().first(Some(1)));
        c.apply(CrateUpdate::new().first(Some(2)));
        assert_eq!(c.first, Some(1));

        let mut p = Private::default();
        p.apply(PrivateUpdate::new().high(3));
        assert_eq!(p.high, 3);
    }
}

fn main() {
    let mut r = Research::default();
    r.apply(ResearchUpdate::new().topic("t".into()).notes(vec!["n".into()]).tokens(2));
    assert_eq!(r.tokens, 2);
    assert!(EmptyUpdate::new().is_empty());
    private::run();
    assert_eq!((Versioned::VERSION, AllDefault::VERSION, Research::VERSION), (2, 5, 1));
    let mut out = Vec::new();
    assert!(!Versioned::default_field(&(), 0, &mut out).unwrap());
    assert!(Versioned::default_field(&(), 1, &mut out).unwrap());
    assert!(Versioned::default_field(&(), 2, &mut out).unwrap());
    assert!(AllDefault::default_field(&(), 0, &mut out).unwrap());
    assert!(!AllDefault::default_field(&(), 1, &mut out).unwrap());
}
