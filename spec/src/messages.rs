//! The `messages` reducer of a file's state: the node library's `add_messages` on JSON.

use agentgraph_engine::{JsonReducer, JsonType};
use agentgraph_nodes::{Message, add_messages};
use serde_json::Value;

/// `messages`: chat messages merged by the node library's `add_messages` (a message whose
/// id is already in the list replaces it; the others are appended). Values that are not
/// messages are appended as they are.
pub(crate) fn reducer() -> JsonReducer {
    JsonReducer::custom("messages", merge).for_types(&[JsonType::Messages, JsonType::List])
}

fn merge(acc: &mut Value, update: Value) {
    let decoded = (
        serde_json::from_value::<Vec<Message>>(acc.clone()),
        serde_json::from_value::<Vec<Message>>(update.clone()),
    );
    if let (Ok(mut history), Ok(new)) = decoded {
        add_messages(&mut history, new);
        if let Ok(merged) = serde_json::to_value(history) {
            *acc = merged;
            return;
        }
    }
    JsonReducer::Append.merge(acc, update);
}
