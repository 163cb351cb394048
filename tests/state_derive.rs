//! `#[derive(State)]`: the generated update type, its setters, `FIELDS`, `for_each_written` and
//! `apply`, for every reducer kind.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use agentgraph::prelude::*;
use agentgraph::state::reducer::ReducerKind;
use agentgraph::state::{Field, reducer};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, State)]
struct Everything {
    topic: String,
    #[reducer(overwrite)]
    round: u32,
    #[reducer(append)]
    notes: Vec<String>,
    #[reducer(append)]
    transcript: String,
    #[reducer(append)]
    queue: VecDeque<u8>,
    #[reducer(add)]
    tokens: u64,
    #[reducer(add)]
    cost: f64,
    #[reducer(min)]
    best_rank: i32,
    #[reducer(max)]
    confidence: f32,
    #[reducer(merge)]
    scores: BTreeMap<String, u32>,
    #[reducer(merge)]
    headers: HashMap<String, String>,
    #[reducer(union)]
    tags: BTreeSet<String>,
    #[reducer(union)]
    seen: HashSet<u32>,
    #[reducer(with = longest)]
    longest: String,
    #[reducer(with = folds::gcd)]
    divisor: u64,
}

/// Keeps the longer string.
fn longest(acc: &mut String, update: String) {
    if update.len() > acc.len() {
        *acc = update;
    }
}

mod folds {
    /// Greatest common divisor, with 0 as the identity.
    pub(crate) fn gcd(acc: &mut u64, mut update: u64) {
        while update != 0 {
            (*acc, update) = (update, *acc % update);
        }
    }
}

#[test]
fn fields_list_names_and_reducers_in_order() {
    let expected = [
        Field::new("topic", ReducerKind::Overwrite).with_type("String"),
        Field::new("round", ReducerKind::Overwrite).with_type("u32"),
        Field::new("notes", ReducerKind::Append).with_type("Vec<String>"),
        Field::new("transcript", ReducerKind::Append).with_type("String"),
        Field::new("queue", ReducerKind::Append).with_type("VecDeque<u8>"),
        Field::new("tokens", ReducerKind::Add).with_type("u64"),
        Field::new("cost", ReducerKind::Add).with_type("f64"),
        Field::new("best_rank", ReducerKind::Min).with_type("i32"),
        Field::new("confidence", ReducerKind::Max).with_type("f32"),
        Field::new("scores", ReducerKind::Merge).with_type("BTreeMap<String,u32>"),
        Field::new("headers", ReducerKind::Merge).with_type("HashMap<String,String>"),
        Field::new("tags", ReducerKind::Union).with_type("BTreeSet<String>"),
        Field::new("seen", ReducerKind::Union).with_type("HashSet<u32>"),
        Field::new("longest", ReducerKind::Custom("longest")).with_type("String"),
        Field::new("divisor", ReducerKind::Custom("folds::gcd")).with_type("u64"),
    ];
    assert_eq!(Everything::FIELDS, expected);
}

fn written(update: &EverythingUpdate) -> Vec<usize> {
    let mut out = Vec::new();
    Everything::for_each_written(update, |i| out.push(i));
    out
}

#[test]
fn for_each_written_reports_set_fields_in_order() {
    assert_eq!(written(&EverythingUpdate::new()), Vec::<usize>::new());
    // Set out of order; reported in field order.
    let update = EverythingUpdate::new()
        .divisor(4u64)
        .topic("x".to_string())
        .tokens(1u64)
        .notes(vec![]);
    assert_eq!(written(&update), [0, 2, 5, 14]);

    let all = EverythingUpdate::new()
        .topic("t".to_string())
        .round(1u32)
        .notes(vec![])
        .transcript("".to_string())
        .queue(VecDeque::new())
        .tokens(0u64)
        .cost(0.0)
        .best_rank(0)
        .confidence(0.0f32)
        .scores(BTreeMap::new())
        .headers(HashMap::new())
        .tags(BTreeSet::new())
        .seen(HashSet::new())
        .longest("".to_string())
        .divisor(0u64);
    assert_eq!(
        written(&all),
        (0..Everything::FIELDS.len()).collect::<Vec<_>>()
    );
}

#[test]
fn is_empty_and_new() {
    assert!(EverythingUpdate::new().is_empty());
    assert!(EverythingUpdate::default().is_empty());
    assert!(!EverythingUpdate::new().round(3u32).is_empty());
    assert!(!EverythingUpdate::new().divisor(0u64).is_empty());
}

#[test]
fn setters_take_the_field_type_so_literals_infer() {
    let update = EverythingUpdate::new()
        .topic("a &str".to_string())
        .tokens(7) // an integer literal becomes the field's u64
        .cost(1.5)
        .best_rank(-3)
        .queue(VecDeque::from([1, 2]));
    assert_eq!(update.topic.as_deref(), Some("a &str"));
    assert_eq!(update.tokens, Some(7));
    assert_eq!(update.cost, Some(1.5));
    assert_eq!(update.best_rank, Some(-3));
    assert_eq!(update.queue, Some(VecDeque::from([1, 2])));
    // The fields are public: an update can also be written as a struct literal.
    let literal = EverythingUpdate {
        round: Some(2),
        ..EverythingUpdate::default()
    };
    assert_eq!(written(&literal), [1]);
}

#[test]
fn empty_update_changes_nothing() {
    let mut state = Everything {
        topic: "t".into(),
        tokens: 3,
        notes: vec!["n".into()],
        ..Everything::default()
    };
    let before = state.clone();
    state.apply(EverythingUpdate::new());
    assert_eq!(state, before);
}

#[test]
fn overwrite_replaces() {
    let mut state = Everything::default();
    state.apply(
        EverythingUpdate::new()
            .topic("first".to_string())
            .round(1u32),
    );
    state.apply(EverythingUpdate::new().topic("second".to_string()));
    assert_eq!(state.topic, "second");
    assert_eq!(state.round, 1, "an unwritten field keeps its value");
    state.apply(EverythingUpdate::new().round(0u32));
    assert_eq!(state.round, 0);
}

#[test]
fn append_extends_in_order() {
    let mut state = Everything::default();
    state.apply(
        EverythingUpdate::new()
            .notes(vec!["a".to_string(), "b".to_string()])
            .transcript("hello".to_string())
            .queue(VecDeque::from([1])),
    );
    state.apply(
        EverythingUpdate::new()
            .notes(vec!["c".to_string()])
            .transcript(", world".to_string())
            .queue(VecDeque::from([2, 3])),
    );
    assert_eq!(state.notes, ["a", "b", "c"]);
    assert_eq!(state.transcript, "hello, world");
    assert_eq!(state.queue, [1, 2, 3]);
}

#[test]
fn add_sums() {
    let mut state = Everything::default();
    for i in 1..=4u64 {
        state.apply(EverythingUpdate::new().tokens(i).cost(0.25));
    }
    assert_eq!(state.tokens, 10);
    assert_eq!(state.cost, 1.0);
}

#[test]
fn min_and_max_keep_the_extremes() {
    let mut state = Everything {
        best_rank: 10,
        confidence: 0.5,
        ..Everything::default()
    };
    for (rank, confidence) in [(7, 0.2f32), (12, 0.9), (3, 0.7), (5, 0.1)] {
        state.apply(
            EverythingUpdate::new()
                .best_rank(rank)
                .confidence(confidence),
        );
    }
    assert_eq!(state.best_rank, 3);
    assert_eq!(state.confidence, 0.9);
}

#[test]
fn merge_inserts_and_later_wins() {
    let mut state = Everything::default();
    state.apply(
        EverythingUpdate::new()
            .scores(BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2)]))
            .headers(HashMap::from([("k".to_string(), "v1".to_string())])),
    );
    state.apply(
        EverythingUpdate::new()
            .scores(BTreeMap::from([
                ("b".to_string(), 20),
                ("c".to_string(), 3),
            ]))
            .headers(HashMap::from([("k".to_string(), "v2".to_string())])),
    );
    assert_eq!(
        state.scores,
        BTreeMap::from([
            ("a".to_string(), 1),
            ("b".to_string(), 20),
            ("c".to_string(), 3)
        ])
    );
    assert_eq!(state.headers["k"], "v2");
}

#[test]
fn union_joins_sets() {
    let mut state = Everything::default();
    state.apply(
        EverythingUpdate::new()
            .tags(BTreeSet::from(["x".to_string(), "y".to_string()]))
            .seen(HashSet::from([1, 2])),
    );
    state.apply(
        EverythingUpdate::new()
            .tags(BTreeSet::from(["y".to_string(), "z".to_string()]))
            .seen(HashSet::from([2, 3])),
    );
    assert_eq!(
        state.tags,
        BTreeSet::from(["x".to_string(), "y".to_string(), "z".to_string()])
    );
    assert_eq!(state.seen, HashSet::from([1, 2, 3]));
}

#[test]
fn custom_reducers_are_called() {
    let mut state = Everything::default();
    for s in ["ab", "abcd", "abc"] {
        state.apply(EverythingUpdate::new().longest(s.to_string()));
    }
    assert_eq!(state.longest, "abcd");
    for n in [12u64, 18, 30] {
        state.apply(EverythingUpdate::new().divisor(n));
    }
    assert_eq!(state.divisor, 6);
}

#[test]
fn update_round_trips_through_serde_json() {
    let update = EverythingUpdate::new()
        .topic("t".to_string())
        .notes(vec!["n".to_string()])
        .tokens(3u64)
        .scores(BTreeMap::from([("a".to_string(), 1)]))
        .tags(BTreeSet::from(["x".to_string()]))
        .divisor(9u64);
    let json = serde_json::to_string(&update).unwrap();
    let back: EverythingUpdate = serde_json::from_str(&json).unwrap();
    assert_eq!(written(&back), written(&update));

    let mut a = Everything::default();
    let mut b = Everything::default();
    a.apply(update);
    b.apply(back);
    assert_eq!(a, b);

    // Unset fields may be left out of the JSON.
    let sparse: EverythingUpdate = serde_json::from_str(r#"{"tokens": 4}"#).unwrap();
    assert_eq!(written(&sparse), [5]);
    assert_eq!(sparse.tokens, Some(4));
}

/// A custom update name, given as an identifier.
#[derive(Clone, Default, Serialize, Deserialize, State)]
#[state(update = Delta)]
struct Renamed {
    #[reducer(add)]
    n: i64,
}

/// A custom update name, given as a string, and the crate path overridden.
#[derive(Clone, Default, Serialize, Deserialize, State)]
#[state(update = "Patch", crate = ::agentgraph)]
struct RenamedByString {
    #[reducer(append)]
    items: Vec<u8>,
}

/// The engine crate as the root, the way the engine's own tests derive `State`.
#[derive(Clone, Default, Serialize, Deserialize, State)]
#[state(crate = agentgraph_engine)]
struct ThroughEngine {
    #[reducer(max)]
    high: u8,
}

#[test]
fn custom_update_names_and_crate_paths() {
    let mut r = Renamed::default();
    r.apply(Delta::new().n(2));
    r.apply(Delta::new().n(-5));
    assert_eq!(r.n, -3);

    let mut s = RenamedByString::default();
    s.apply(Patch::new().items(vec![1]));
    s.apply(Patch::new().items(vec![2]));
    assert_eq!(s.items, [1, 2]);

    let mut e = ThroughEngine::default();
    e.apply(ThroughEngineUpdate::new().high(4));
    e.apply(ThroughEngineUpdate::new().high(2));
    assert_eq!(e.high, 4);
}

/// No fields: every update is empty.
#[derive(Clone, Default, Serialize, Deserialize, State)]
struct Nothing {}

#[test]
fn a_state_without_fields() {
    assert!(Nothing::FIELDS.is_empty());
    assert!(NothingUpdate::new().is_empty());
    let mut n = Nothing {};
    n.apply(NothingUpdate::new());
    Nothing::for_each_written(&NothingUpdate::new(), |_| panic!("no field"));
}

/// Awkward field names and types: raw identifiers, `Option` fields, `Self` in a type, a
/// custom reducer with a turbofish.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, State)]
struct Awkward {
    r#type: String,
    last: Option<u8>,
    #[reducer(append)]
    children: Vec<Self>,
    #[reducer(with = reducer::overwrite::<u16>)]
    value: u16,
    update: u8,
    f: u8,
}

#[test]
fn awkward_names_and_types() {
    assert_eq!(Awkward::FIELDS[0].name, "type");
    assert_eq!(
        Awkward::FIELDS[3].reducer,
        ReducerKind::Custom("reducer::overwrite::<u16>")
    );
    let mut a = Awkward::default();
    a.apply(
        AwkwardUpdate::new()
            .r#type("kind".to_string())
            .last(Some(5))
            .children(vec![Awkward::default()])
            .value(9u16)
            .update(1u8)
            .f(2u8),
    );
    assert_eq!(a.r#type, "kind");
    assert_eq!(a.last, Some(5));
    assert_eq!(a.children.len(), 1);
    assert_eq!((a.value, a.update, a.f), (9, 1, 2));
    a.apply(AwkwardUpdate::new().last(None));
    assert_eq!(
        a.last, None,
        "writing `None` to an `Option` field clears it"
    );
}

/// Visibility follows the state: a `pub(crate)` state in a module has a `pub(crate)` update.
mod nested {
    use super::*;

    #[derive(Clone, Default, Serialize, Deserialize, State)]
    pub(crate) struct Public {
        #[reducer(add)]
        pub(crate) count: u32,
    }
}

#[test]
fn update_is_reachable_where_the_state_is() {
    let mut p = nested::Public::default();
    p.apply(nested::PublicUpdate::new().count(3u32));
    assert_eq!(p.count, 3);
}

/// Generic code over any derived state.
fn apply_all<S: State>(state: &mut S, updates: impl IntoIterator<Item = S::Update>) {
    for u in updates {
        state.apply(u);
    }
}

#[test]
fn derived_states_work_through_the_trait() {
    let mut r = Renamed::default();
    apply_all(&mut r, [Delta::new().n(1), Delta::new().n(2)]);
    assert_eq!(r.n, 3);
}

fn sample_updates() -> Vec<EverythingUpdate> {
    vec![
        EverythingUpdate::new()
            .topic("first".into())
            .notes(vec!["a".into()])
            .transcript("x".into())
            .tokens(3)
            .best_rank(5)
            .scores(BTreeMap::from([("k".into(), 1)]))
            .longest("ab".into())
            .divisor(12),
        EverythingUpdate::new()
            .round(2)
            .notes(vec!["b".into(), "c".into()])
            .queue(VecDeque::from([9]))
            .cost(0.5)
            .confidence(0.9)
            .headers(HashMap::from([("h".into(), "v".into())]))
            .tags(BTreeSet::from(["t".into()]))
            .seen(HashSet::from([4]))
            .divisor(18),
    ]
}

#[test]
fn fields_encode_and_decode_one_by_one() {
    let mut state = Everything::default();
    for u in sample_updates() {
        state.apply(u);
    }
    let encoded: Vec<Vec<u8>> = (0..Everything::FIELDS.len())
        .map(|i| {
            let mut out = Vec::new();
            state.encode_field(i, &mut out).unwrap();
            out
        })
        .collect();
    let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    assert_eq!(Everything::decode_fields(&(), &slices).unwrap(), state);

    // Wrong arity and damaged bytes are errors naming the field, not panics.
    assert!(Everything::decode_fields(&(), &slices[1..]).is_err());
    let mut damaged = slices.clone();
    damaged[2] = &[0xff, 0xff, 0xff];
    let e = Everything::decode_fields(&(), &damaged).unwrap_err();
    assert!(e.to_string().starts_with("field `notes`"), "{e}");
    assert!(state.encode_field(99, &mut Vec::new()).is_err());
}

#[test]
fn encoded_deltas_merge_like_apply() {
    let mut applied = Everything::default();
    let mut merged = Everything::default();
    for u in sample_updates() {
        for i in 0..Everything::FIELDS.len() {
            let mut out = Vec::new();
            Everything::encode_written(&u, i, &mut out).unwrap();
            let mut written = false;
            Everything::for_each_written(&u, |f| written |= f == i);
            assert_eq!(out.is_empty(), !written, "field {i}");
            if written {
                merged.merge_encoded(i, &out).unwrap();
            }
        }
        applied.apply(u);
    }
    assert_eq!(merged, applied);
    assert!(merged.merge_encoded(2, &[1, 2, 3, 4, 5]).is_err());
}
