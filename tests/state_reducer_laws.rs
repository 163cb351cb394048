//! Reducer laws, checked with proptest on a state that `#[derive(State)]` implements:
//!
//! - an empty update changes nothing, and a field that an update does not write is unchanged;
//! - updates compose: applying `u1` then `u2` equals applying `u1` reduced with `u2`, for every
//!   reducer (for `overwrite` the later value wins);
//! - for `add`, `min`, `max`, `union` and `merge` with disjoint keys, the order of updates
//!   does not matter;
//! - `append` keeps order: the result is the concatenation.

use std::collections::{BTreeMap, BTreeSet};

use agentgraph::prelude::*;
use agentgraph::state::reducer;
use proptest::collection::{btree_map, btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, State)]
struct Laws {
    last: u8,
    #[reducer(append)]
    log: Vec<u8>,
    #[reducer(append)]
    text: String,
    #[reducer(add)]
    total: i64,
    #[reducer(min)]
    low: i32,
    #[reducer(max)]
    high: i32,
    #[reducer(merge)]
    map: BTreeMap<u8, u16>,
    #[reducer(union)]
    set: BTreeSet<u8>,
}

/// An update as plain data (the generated update type is neither `Clone` nor `Debug`).
#[derive(Clone, Debug, Default)]
struct Spec {
    last: Option<u8>,
    log: Option<Vec<u8>>,
    text: Option<String>,
    total: Option<i64>,
    low: Option<i32>,
    high: Option<i32>,
    map: Option<BTreeMap<u8, u16>>,
    set: Option<BTreeSet<u8>>,
}

impl Spec {
    /// The update, built with the generated setters.
    fn update(&self) -> LawsUpdate {
        let mut u = LawsUpdate::new();
        if let Some(v) = self.last {
            u = u.last(v);
        }
        if let Some(v) = &self.log {
            u = u.log(v.clone());
        }
        if let Some(v) = &self.text {
            u = u.text(v.clone());
        }
        if let Some(v) = self.total {
            u = u.total(v);
        }
        if let Some(v) = self.low {
            u = u.low(v);
        }
        if let Some(v) = self.high {
            u = u.high(v);
        }
        if let Some(v) = &self.map {
            u = u.map(v.clone());
        }
        if let Some(v) = &self.set {
            u = u.set(v.clone());
        }
        u
    }

    /// `self` reduced with `later`, field by field, with each field's reducer.
    fn then(self, later: Spec) -> Spec {
        fn both<T>(a: Option<T>, b: Option<T>, reduce: fn(&mut T, T)) -> Option<T> {
            match (a, b) {
                (Some(mut a), Some(b)) => {
                    reduce(&mut a, b);
                    Some(a)
                }
                (a, b) => a.or(b),
            }
        }
        Spec {
            last: both(self.last, later.last, reducer::overwrite),
            log: both(self.log, later.log, reducer::append),
            text: both(self.text, later.text, reducer::append),
            total: both(self.total, later.total, reducer::add),
            low: both(self.low, later.low, reducer::min),
            high: both(self.high, later.high, reducer::max),
            map: both(self.map, later.map, reducer::merge),
            set: both(self.set, later.set, reducer::union),
        }
    }

    /// The indexes of the fields the update writes, in field order.
    fn written(&self) -> Vec<usize> {
        let set = [
            self.last.is_some(),
            self.log.is_some(),
            self.text.is_some(),
            self.total.is_some(),
            self.low.is_some(),
            self.high.is_some(),
            self.map.is_some(),
            self.set.is_some(),
        ];
        (0..set.len()).filter(|&i| set[i]).collect()
    }
}

fn state() -> impl Strategy<Value = Laws> {
    (
        any::<u8>(),
        vec(any::<u8>(), 0..4),
        "[a-z]{0,4}",
        -1_000_000_000i64..1_000_000_000,
        any::<i32>(),
        any::<i32>(),
        btree_map(any::<u8>(), any::<u16>(), 0..4),
        btree_set(any::<u8>(), 0..4),
    )
        .prop_map(|(last, log, text, total, low, high, map, set)| Laws {
            last,
            log,
            text,
            total,
            low,
            high,
            map,
            set,
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        option::of(any::<u8>()),
        option::of(vec(any::<u8>(), 0..4)),
        option::of("[a-z]{0,4}"),
        option::of(-1_000_000i64..1_000_000),
        option::of(any::<i32>()),
        option::of(any::<i32>()),
        option::of(btree_map(any::<u8>(), any::<u16>(), 0..4)),
        option::of(btree_set(any::<u8>(), 0..4)),
    )
        .prop_map(|(last, log, text, total, low, high, map, set)| Spec {
            last,
            log,
            text,
            total,
            low,
            high,
            map,
            set,
        })
}

/// Updates that write only the order-independent fields (`add`, `min`, `max`, `union`, and
/// `merge` with keys that no two updates share), with a permutation of them.
fn commutative_specs() -> impl Strategy<Value = (Vec<Spec>, Vec<Spec>)> {
    vec(spec(), 0..8)
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, s)| Spec {
                    last: None,
                    log: None,
                    text: None,
                    // Disjoint keys: the high bits are the update's index.
                    map: s.map.map(|m| {
                        m.into_iter()
                            .map(|(k, v)| ((i as u8) << 4 | (k & 0x0f), v))
                            .collect()
                    }),
                    ..s
                })
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|specs| (Just(specs.clone()), Just(specs).prop_shuffle()))
}

fn applied(mut state: Laws, specs: &[Spec]) -> Laws {
    for s in specs {
        state.apply(s.update());
    }
    state
}

proptest! {
    #[test]
    fn empty_update_is_identity(s in state()) {
        let mut after = s.clone();
        after.apply(LawsUpdate::new());
        prop_assert_eq!(&after, &s);
        after.apply(LawsUpdate::default());
        prop_assert_eq!(after, s);
    }

    #[test]
    fn unwritten_fields_are_unchanged(s in state(), u in spec()) {
        let update = u.update();
        let mut written = Vec::new();
        Laws::for_each_written(&update, |i| written.push(i));
        prop_assert_eq!(&written, &u.written());
        prop_assert_eq!(update.is_empty(), written.is_empty());

        let mut after = s.clone();
        after.apply(update);
        let unchanged = [
            after.last == s.last,
            after.log == s.log,
            after.text == s.text,
            after.total == s.total,
            after.low == s.low,
            after.high == s.high,
            after.map == s.map,
            after.set == s.set,
        ];
        for (i, same) in unchanged.into_iter().enumerate() {
            prop_assert!(written.contains(&i) || same, "field {} changed but was not written", i);
        }
    }

    #[test]
    fn two_updates_equal_their_reduction(s in state(), u1 in spec(), u2 in spec()) {
        let one_by_one = applied(s.clone(), &[u1.clone(), u2.clone()]);
        let reduced = applied(s, &[u1.then(u2)]);
        prop_assert_eq!(one_by_one, reduced);
    }

    #[test]
    fn a_sequence_equals_its_reduction(s in state(), specs in vec(spec(), 0..8)) {
        let one_by_one = applied(s.clone(), &specs);
        let reduced = specs.into_iter().reduce(Spec::then).unwrap_or_default();
        prop_assert_eq!(one_by_one, applied(s, &[reduced]));
    }

    #[test]
    fn reduction_is_associative(u1 in spec(), u2 in spec(), u3 in spec(), s in state()) {
        let left = u1.clone().then(u2.clone()).then(u3.clone());
        let right = u1.then(u2.then(u3));
        prop_assert_eq!(applied(s.clone(), &[left]), applied(s, &[right]));
    }

    #[test]
    fn order_does_not_matter_for_commutative_reducers(
        s in state(),
        (specs, shuffled) in commutative_specs(),
    ) {
        prop_assert_eq!(applied(s.clone(), &specs), applied(s, &shuffled));
    }

    #[test]
    fn append_concatenates_in_order(s in state(), specs in vec(spec(), 0..8)) {
        let mut log = s.log.clone();
        let mut text = s.text.clone();
        for spec in &specs {
            log.extend(spec.log.iter().flatten());
            text.extend(spec.text.iter().map(String::as_str));
        }
        let after = applied(s, &specs);
        prop_assert_eq!(after.log, log);
        prop_assert_eq!(after.text, text);
    }

    #[test]
    fn overwrite_keeps_the_last_written_value(s in state(), specs in vec(spec(), 0..8)) {
        let expected = specs.iter().rev().find_map(|spec| spec.last).unwrap_or(s.last);
        prop_assert_eq!(applied(s, &specs).last, expected);
    }

    #[test]
    fn update_survives_serde(s in state(), u in spec()) {
        let json = serde_json::to_string(&u.update()).unwrap();
        let back: LawsUpdate = serde_json::from_str(&json).unwrap();
        let mut direct = s.clone();
        direct.apply(u.update());
        let mut through_json = s;
        through_json.apply(back);
        prop_assert_eq!(direct, through_json);
    }
}
