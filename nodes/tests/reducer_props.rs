//! Properties of the `add_messages` reducer: updates applied one after the other equal their
//! concatenation applied at once (how the engine's plan-order merge and the stored deltas
//! compose), ids stay unique, removal markers are never stored, removing a missing id does
//! nothing, and a replaced message keeps its place.

use agentgraph_nodes::add_messages;
use agentgraph_nodes::message::Message;
use proptest::prelude::*;

/// A message or a removal marker, with ids from a small alphabet so that they collide.
fn op() -> impl Strategy<Value = Message> {
    (0u8..10, any::<bool>(), 0u32..1000).prop_map(|(id, remove, text)| {
        let id = format!("m{id}");
        if remove {
            Message::remove(id)
        } else {
            Message::user(format!("t{text}")).with_id(id)
        }
    })
}

/// Updates of 0 to 20 messages: both sides of the reducer's switch to an index at 8.
fn updates() -> impl Strategy<Value = Vec<Vec<Message>>> {
    prop::collection::vec(prop::collection::vec(op(), 0..20), 0..6)
}

fn ids(history: &[Message]) -> Vec<&str> {
    history.iter().map(|m| m.id.as_str()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn one_by_one_equals_concatenated(updates in updates()) {
        let mut stepwise = Vec::new();
        for u in &updates {
            add_messages(&mut stepwise, u.clone());
        }
        let mut at_once = Vec::new();
        add_messages(&mut at_once, updates.concat());
        prop_assert_eq!(&stepwise, &at_once);

        // Message by message, too (the scanning path only).
        let mut single = Vec::new();
        for m in updates.concat() {
            add_messages(&mut single, vec![m]);
        }
        prop_assert_eq!(&single, &at_once);
    }

    #[test]
    fn ids_stay_unique_and_markers_are_never_stored(updates in updates()) {
        let mut history = Vec::new();
        for u in updates {
            add_messages(&mut history, u);
            let mut sorted = ids(&history);
            sorted.sort_unstable();
            let before = sorted.len();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), before);
            prop_assert!(history.iter().all(|m| !m.is_removal()));
        }
    }

    #[test]
    fn removing_a_missing_id_does_nothing(updates in updates(), missing in 10u8..20) {
        let mut history = Vec::new();
        for u in updates {
            add_messages(&mut history, u);
        }
        let before = history.clone();
        add_messages(&mut history, vec![Message::remove(format!("m{missing}"))]);
        prop_assert_eq!(history, before);
    }

    #[test]
    fn a_replaced_message_keeps_its_place_and_the_others_their_order(
        updates in updates(),
        pick in any::<prop::sample::Index>(),
        text in "[a-z]{1,8}",
    ) {
        let mut history = Vec::new();
        for u in updates {
            add_messages(&mut history, u);
        }
        prop_assume!(!history.is_empty());
        let at = pick.index(history.len());
        let id = history[at].id.clone();
        let before = ids(&history).into_iter().map(str::to_owned).collect::<Vec<_>>();
        add_messages(&mut history, vec![Message::user(text.clone()).with_id(id)]);
        prop_assert_eq!(ids(&history), before.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(history[at].text(), Some(text.as_str()));
    }

    #[test]
    fn the_result_matches_a_model_of_the_rules(updates in updates()) {
        // The rules, written the slow and obvious way.
        let mut model: Vec<(String, String)> = Vec::new();
        let mut history = Vec::new();
        for u in updates {
            for m in &u {
                let found = model.iter().position(|(id, _)| *id == m.id);
                match (found, m.is_removal()) {
                    (Some(i), true) => { model.remove(i); }
                    (Some(i), false) => model[i].1 = m.text().unwrap().to_owned(),
                    (None, true) => {}
                    (None, false) => model.push((m.id.clone(), m.text().unwrap().to_owned())),
                }
            }
            add_messages(&mut history, u);
        }
        let got: Vec<(String, String)> =
            history.iter().map(|m| (m.id.clone(), m.text().unwrap().to_owned())).collect();
        prop_assert_eq!(got, model);
    }
}

/// Any JSON value: nested arrays and objects of numbers (floats of every size), strings,
/// booleans and nulls.
fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// What a checkpoint stores is what a resume reads: JSON content and arguments go through
    /// the engine's binary codec as JSON text, and come back equal, floats to the bit; and so
    /// does JSON.
    #[test]
    fn json_in_messages_survives_the_checkpoint_codec(content in json(), args in json(), raw in ".*") {
        use agentgraph_nodes::message::ToolCall;
        let messages = vec![
            Message::tool_result("c1", content),
            Message::assistant("").with_tool_calls([
                ToolCall::new("c2", "t", args),
                ToolCall::from_raw("c3", "t", raw),
            ]),
        ];
        let mut bytes = Vec::new();
        agentgraph_engine::codec::encode_into(&messages, &mut bytes).unwrap();
        let back: Vec<Message> = agentgraph_engine::codec::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &messages);
        // And through JSON, the monitor's and the CLI's form.
        let text = serde_json::to_string(&messages).unwrap();
        let back: Vec<Message> = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, messages);
    }
}
