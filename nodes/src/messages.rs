//! Histories of messages: the reducer of a conversation field, and the check that a history
//! can be sent to a model.

use std::collections::{HashMap, HashSet};

use crate::message::{Message, MessageError, Role, ToolCallRef};

/// Below this many messages in an update, each one is looked up by scanning the history from
/// its end (no allocation); from this many on, through an index of the history's ids.
const INDEX_FROM: usize = 8;

/// The reducer of a conversation: `#[reducer(with = agentgraph::nodes::add_messages)]` on a
/// `Vec<Message>` field.
///
/// The update's messages are taken one by one, in order:
///
/// - a message whose id is not in the history is **appended**;
/// - a message whose id is in the history **replaces** that message, in place;
/// - a removal marker ([`Message::remove`]) **removes** the message with its id; a marker for
///   an id the history does not hold does nothing (the message may have been removed
///   already: removing is idempotent), and a marker is never stored.
///
/// So ids stay unique, the result depends only on the history and the update (no clock, no
/// randomness), and applying two updates one after the other equals applying their
/// concatenation: the engine merges the updates of a step in plan order, then packet order,
/// which makes the result the same in sequential and parallel runs. A removed id may come
/// back: a later message with it is appended at the end.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::add_messages;
/// use agentgraph_nodes::message::Message;
///
/// let mut history = vec![Message::user("hi").with_id("u1"), Message::assistant("Hello").with_id("a1")];
/// add_messages(
///     &mut history,
///     vec![
///         Message::assistant("Hello! How can I help?").with_id("a1"), // replaces a1
///         Message::user("What time is it?").with_id("u2"),           // appended
///         Message::remove("u1"),                                      // removes u1
///         Message::remove("nope"),                                    // nothing
///     ],
/// );
/// let ids: Vec<&str> = history.iter().map(|m| m.id.as_str()).collect();
/// assert_eq!(ids, ["a1", "u2"]);
/// assert_eq!(history[0].text(), Some("Hello! How can I help?"));
/// ```
///
/// On a state field, with the derive (`agentgraph::nodes::add_messages` through the facade):
///
/// ```
/// use agentgraph_engine::State;
/// use agentgraph_nodes::message::Message;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Default, Serialize, Deserialize, agentgraph_macros::State)]
/// #[state(crate = agentgraph_engine)]
/// struct Chat {
///     #[reducer(with = agentgraph_nodes::add_messages)]
///     messages: Vec<Message>,
/// }
///
/// let mut chat = Chat::default();
/// chat.apply(ChatUpdate::new().messages(vec![Message::user("hi").with_id("u1")]));
/// chat.apply(ChatUpdate::new().messages(vec![Message::user("hello").with_id("u1")]));
/// assert_eq!(chat.messages.len(), 1);
/// assert_eq!(chat.messages[0].text(), Some("hello"));
/// ```
pub fn add_messages(history: &mut Vec<Message>, update: Vec<Message>) {
    if update.len() < INDEX_FROM {
        add_scanning(history, update);
    } else {
        add_indexed(history, update);
    }
}

/// One message at a time, each looked up by a scan from the end (recent messages are the
/// ones replaced most often).
fn add_scanning(history: &mut Vec<Message>, update: Vec<Message>) {
    for message in update {
        let at = history.iter().rposition(|m| m.id == message.id);
        match (at, message.is_removal()) {
            (Some(i), true) => {
                history.remove(i);
            }
            (Some(i), false) => history[i] = message,
            (None, true) => {}
            (None, false) => history.push(message),
        }
    }
}

/// The same through an index of ids: removals are marked and compacted at the end, so every
/// position in the index stays valid until then.
fn add_indexed(history: &mut Vec<Message>, update: Vec<Message>) {
    let mut index: HashMap<String, usize> = history
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.clone(), i))
        .collect();
    let mut removed = vec![false; history.len()];
    for message in update {
        match (index.get(&message.id).copied(), message.is_removal()) {
            (Some(i), true) => {
                index.remove(&message.id);
                removed[i] = true;
            }
            (Some(i), false) => history[i] = message,
            (None, true) => {}
            (None, false) => {
                index.insert(message.id.clone(), history.len());
                removed.push(false);
                history.push(message);
            }
        }
    }
    if removed.iter().any(|&r| r) {
        let mut flags = removed.into_iter();
        history.retain(|_| !flags.next().unwrap_or(false));
    }
}

/// The tool calls of assistant messages that no later tool result answers, in the order they
/// were made.
///
/// A tool result answers a call when its [`call_id`](Message::call_id) is the call's id and it
/// comes after the assistant message. Appending an assistant message with tool calls to a
/// history is fine (the tools run next); sending a history with unanswered calls to a model is
/// not (OpenAI-compatible servers refuse it): see [`ensure_answered`].
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{Message, ToolCall};
/// use agentgraph_nodes::messages::unanswered_tool_calls;
/// use serde_json::json;
///
/// let ask = Message::assistant("").with_tool_calls([
///     ToolCall::new("c1", "weather", json!({ "city": "Paris" })),
///     ToolCall::new("c2", "weather", json!({ "city": "Oslo" })),
/// ]);
/// let history = vec![Message::user("weather?"), ask, Message::tool_result("c1", "18°C")];
/// let open = unanswered_tool_calls(&history);
/// assert_eq!(open.len(), 1);
/// assert_eq!(open[0].call_id, "c2");
/// ```
pub fn unanswered_tool_calls(history: &[Message]) -> Vec<ToolCallRef> {
    // From the end: the results seen so far are those after the message at hand.
    let mut answered: HashSet<&str> = HashSet::new();
    let mut open = Vec::new();
    for message in history.iter().rev() {
        match &message.role {
            Role::Tool { call_id, .. } => {
                answered.insert(call_id);
            }
            Role::Assistant { tool_calls } => {
                for call in tool_calls.iter().rev() {
                    if !answered.contains(call.id.as_str()) {
                        open.push(ToolCallRef {
                            message_id: message.id.clone(),
                            call_id: call.id.clone(),
                            tool: call.name.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    open.reverse();
    open
}

/// Refuses a history with a tool call that has no result, naming the first such call: the
/// check to make before a model call.
///
/// # Errors
///
/// [`MessageError::UnansweredToolCall`] naming the call, its tool and its message.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{Message, ToolCall};
/// use agentgraph_nodes::messages::ensure_answered;
///
/// let mut history = vec![
///     Message::user("2+2?"),
///     Message::assistant("").with_tool_calls([ToolCall::new("c1", "add", serde_json::json!([2, 2]))]),
/// ];
/// assert!(ensure_answered(&history).is_err());
/// history.push(Message::tool_result("c1", "4"));
/// assert!(ensure_answered(&history).is_ok());
/// ```
pub fn ensure_answered(history: &[Message]) -> Result<(), MessageError> {
    match unanswered_tool_calls(history).into_iter().next() {
        None => Ok(()),
        Some(open) => Err(MessageError::UnansweredToolCall {
            call_id: open.call_id,
            tool: open.tool,
            message_id: open.message_id,
        }),
    }
}
