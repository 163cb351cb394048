//! Group chat: several agents take turns on one shared transcript; a selector picks who speaks
//! next, a transition map says who may speak after whom, and stop conditions end the chat.
//!
//! [`GroupChat::compile`] makes an ordinary graph over [`GroupChatState`], so a chat is
//! checkpointed, resumed, observed and monitored like any run:
//!
//! ```text
//! START ─▶ (first speaker, or `select`) ─▶ alice ─(turn done: stop? ─▶ END)─▶ next speaker ...
//!                                            │ ▲
//!                            tool calls ─▶ alice.tools (one task per call)
//! ```
//!
//! - **Agents** ([`ChatAgent`]): a model agent ([`ChatAgent::model`], an [`Agent`] with its
//!   model, system prompt and tools), a user agent ([`ChatAgent::user`]: a person answers
//!   through an interrupt, [`UserTurn`]) or a function agent ([`ChatAgent::function`]). Each
//!   agent is a node named after it; a model agent with tools has a second node,
//!   `{name}.tools`, with one task per tool call.
//! - **Turns.** A turn is one step (a model agent with tools: one step per model call and one
//!   per batch of tool calls, until the model answers without tool calls). Every step is
//!   checkpointed, so a crashed chat resumes at the unfinished turn: a finished turn, a
//!   finished tool call, is never done again. The model's text streams as
//!   [`EventKind::Token`](agentgraph_engine::EventKind::Token) events of the agent's node.
//! - **Selector** ([`Selector`]): round robin (the default), a function, or a model's choice
//!   ([`ModelSelector`]: a node `select` asks the model for one of the allowed names as
//!   structured output, and falls back as its [`Fallback`] says when it names nobody valid).
//! - **Transition map** ([`GroupChat::allow`], [`GroupChat::deny`]): who may speak after whom.
//!   The selector chooses among the allowed agents only. A rule naming an unknown agent, a
//!   pair both allowed and denied, or an agent after whom nobody may speak is a build error
//!   naming the agents ([`GroupChatError`]).
//! - **Stop conditions** ([`Stop`]): a number of rounds, a keyword, a function of the state, a
//!   budget of tokens; combined with [`Stop::and`] and [`Stop::or`] (or `&` and `|`). They are
//!   checked after every turn; without one, a chat stops after
//!   [`GroupChat::DEFAULT_MAX_ROUNDS`] rounds.
//!
//! # What each agent sees
//!
//! The transcript ([`GroupChatState::messages`]) keeps every message with its speaker's name
//! ([`Message::name`]): an agent's answers are assistant messages, a user agent's user
//! messages, each named after the agent; a tool result belongs to the speaker of the call it
//! answers. A model agent is sent ([`GroupChat::seen_by`]):
//!
//! 1. its [`Agent`]'s system prompt, if any;
//! 2. the messages without a speaker (the task given as input, a system message) as they are;
//! 3. its own messages as they are: its answers as assistant messages, its tool calls and
//!    their results;
//! 4. every other agent's message as a **user message prefixed with the speaker's name**
//!    (`"bob: I disagree."`, with `name` set to `bob`);
//! 5. other agents' tool calls and results are **hidden** (their text, if any, is kept), unless
//!    [`GroupChat::share_tool_messages`] is on: then each becomes a user message saying what
//!    was called and what it answered.
//!
//! A model selector sees the same as an agent that has not spoken yet, followed by a question
//! naming the candidates. Usage reported by the models (agents and selector) is added to
//! [`GroupChatState::tokens`], which [`Stop::tokens`] reads.
//!
//! # Examples
//!
//! Function agents and a round robin (a model agent is the same with [`ChatAgent::model`]):
//!
//! ```
//! use agentgraph_nodes::Message;
//! use agentgraph_nodes::patterns::group_chat::{ChatAgent, GroupChat, GroupChatState, Stop};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let chat = GroupChat::new()
//!     .agent(ChatAgent::function("pro", |_: &[Message]| "Tabs.".to_owned()))
//!     .agent(ChatAgent::function("con", |seen: &[Message]| {
//!         if seen.len() > 3 { "Fine, tabs. DONE".to_owned() } else { "Spaces.".to_owned() }
//!     }))
//!     .stop_when(Stop::keyword("DONE") | Stop::max_rounds(10))
//!     .compile()?;
//! let done = chat.invoke(GroupChatState::new("Tabs or spaces?")).await?;
//! let said: Vec<(Option<&str>, Option<&str>)> =
//!     done.messages.iter().map(|m| (m.name.as_deref(), m.text())).collect();
//! assert_eq!(said, [
//!     (None, Some("Tabs or spaces?")),
//!     (Some("pro"), Some("Tabs.")),
//!     (Some("con"), Some("Spaces.")),
//!     (Some("pro"), Some("Tabs.")),
//!     (Some("con"), Some("Fine, tabs. DONE")),
//! ]);
//! assert_eq!(done.turns, 4);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ops::{BitAnd, BitOr};
use std::sync::Arc;

use agentgraph_engine::{
    BoxError, CompiledGraph, Context, END, GraphBuilder, GraphError, Packet, Route, START,
};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::{Agent, AgentError, answer};
use crate::message::{Content, Message, Role};
use crate::model::{ChatModel, ChatRequest, ChatResponse, ResponseFormat, model_node};

/// The name of the node of a [`ModelSelector`].
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_nodes::patterns::group_chat::SELECT_NODE, "select");
/// ```
pub const SELECT_NODE: &str = "select";

/// The state of a group chat: the shared transcript and the chat's counters.
///
/// The derive makes `GroupChatStateUpdate`, the update type (the input of a thread's next
/// invocation: `GroupChatStateUpdate::new().messages(vec![Message::user(..)])`).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::group_chat::GroupChatState;
/// let state = GroupChatState::new("Is Rust fast?");
/// assert_eq!(state.messages[0].text(), Some("Is Rust fast?"));
/// assert_eq!((state.turns, state.tokens, state.speaker), (0, 0, None));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
pub struct GroupChatState {
    /// The transcript, every agent's messages named after it, reduced by
    /// [`add_messages`](crate::messages::add_messages).
    #[reducer(with = crate::messages::add_messages)]
    pub messages: Vec<Message>,
    /// The agent whose turn ended last (`None` before the first).
    pub speaker: Option<String>,
    /// The speaker the [`ModelSelector`] chose last.
    pub next: Option<String>,
    /// The turns taken.
    #[reducer(add)]
    pub turns: u32,
    /// The tokens the models reported (the agents' calls and the selector's).
    #[reducer(add)]
    pub tokens: u64,
}

impl GroupChatState {
    /// A chat on a task: one user message without a speaker.
    ///
    /// # Examples
    ///
    /// See [`GroupChatState`].
    pub fn new(task: impl Into<Content>) -> Self {
        Self::from_messages([Message::user(task)])
    }

    /// A chat starting from these messages.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, patterns::group_chat::GroupChatState};
    /// let s = GroupChatState::from_messages([Message::system("Be civil."), Message::user("Go.")]);
    /// assert_eq!(s.messages.len(), 2);
    /// ```
    pub fn from_messages(messages: impl IntoIterator<Item = Message>) -> Self {
        GroupChatState {
            messages: messages.into_iter().collect(),
            ..GroupChatState::default()
        }
    }

    /// The last message of a finished turn: the transcript's last message when it was said
    /// by [`speaker`](GroupChatState::speaker).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, patterns::group_chat::GroupChatState};
    /// let mut s = GroupChatState::new("Go.");
    /// assert!(s.last_turn().is_none());
    /// s.messages.push(Message::assistant("Gone.").with_name("runner"));
    /// s.speaker = Some("runner".into());
    /// assert_eq!(s.last_turn().and_then(Message::text), Some("Gone."));
    /// ```
    pub fn last_turn(&self) -> Option<&Message> {
        let speaker = self.speaker.as_deref()?;
        self.messages
            .last()
            .filter(|m| m.name.as_deref() == Some(speaker))
    }
}

/// What a user agent's turn interrupts with (the interrupt's payload, as JSON). The answer
/// is the user's message, a JSON string: `Resume::value("I agree.")`.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::group_chat::UserTurn;
/// let t: UserTurn = serde_json::from_value(serde_json::json!({
///     "kind": "group_chat_user", "agent": "human", "turn": 3,
///     "last_speaker": "critic", "last_text": "Prove it."
/// })).unwrap();
/// assert_eq!((t.agent.as_str(), t.turn), ("human", 3));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserTurn {
    /// Always `group_chat_user`: tells this interrupt apart from others of a graph.
    pub kind: String,
    /// The user agent whose turn it is.
    pub agent: String,
    /// The turns taken before this one.
    pub turn: u32,
    /// Who spoke last, if anyone.
    pub last_speaker: Option<String>,
    /// What was said last (the transcript's last message's text).
    pub last_text: Option<String>,
}

type AgentFn = Arc<dyn Fn(&[Message]) -> String + Send + Sync>;

#[derive(Clone)]
enum AgentKind {
    Model(Arc<Agent>),
    User,
    Function(AgentFn),
}

/// A participant of a [`GroupChat`]: a model agent, a user agent (a person, through an
/// interrupt) or a function. Its name is its node's name and its messages' `name`: 1 to 64
/// ASCII letters, digits, `_` or `-` (what OpenAI accepts as a name), not `select`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_nodes::agent::Agent;
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
/// use agentgraph_nodes::{Message, patterns::group_chat::ChatAgent};
/// # #[derive(Debug)] struct Hello;
/// # impl ChatModel for Hello {
/// #     fn model(&self) -> &str { "hello" }
/// #     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> {
/// #         Box::pin(async { Ok(ChatResponse::new(Message::assistant("Hello!"))) })
/// #     }
/// # }
///
/// let critic = ChatAgent::model("critic", Agent::new(Arc::new(Hello)).system_prompt("Find flaws."))
///     .description("finds the flaws in every plan");
/// let human = ChatAgent::user("human");
/// let clock = ChatAgent::function("clock", |_: &[Message]| "It is noon.".to_owned());
/// assert_eq!([critic.name(), human.name(), clock.name()], ["critic", "human", "clock"]);
/// ```
#[derive(Clone)]
pub struct ChatAgent {
    name: String,
    description: String,
    kind: AgentKind,
}

impl fmt::Debug for ChatAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            AgentKind::Model(_) => "model",
            AgentKind::User => "user",
            AgentKind::Function(_) => "function",
        };
        f.debug_struct("ChatAgent")
            .field("name", &self.name)
            .field("kind", &kind)
            .finish()
    }
}

impl ChatAgent {
    fn with_kind(name: impl Into<String>, kind: AgentKind) -> Self {
        ChatAgent {
            name: name.into(),
            description: String::new(),
            kind,
        }
    }

    /// A model agent: `agent`'s model, system prompt, tools (one task per call, approvals,
    /// limits on calls), its [`max_turns`](Agent::max_turns) as the limit of model calls in
    /// one turn, its [`model_retry`](Agent::model_retry) and
    /// [`model_timeout`](Agent::model_timeout) for its turns' tasks, and its
    /// [`request_with`](Agent::request_with) hook. Invalid tool calls are
    /// answered to the model as errors; the agent's `stop_when` is not used (the chat's
    /// [`Stop`] is).
    ///
    /// # Examples
    ///
    /// See [`ChatAgent`].
    pub fn model(name: impl Into<String>, agent: Agent) -> Self {
        Self::with_kind(name, AgentKind::Model(Arc::new(agent)))
    }

    /// A user agent: its turn interrupts the run with a [`UserTurn`]; the answer (a string)
    /// is its message, a user message named after it.
    ///
    /// # Examples
    ///
    /// See [`ChatAgent`].
    pub fn user(name: impl Into<String>) -> Self {
        Self::with_kind(name, AgentKind::User)
    }

    /// A function agent: `speak` gets the transcript and returns its message's text (an
    /// assistant message named after it).
    ///
    /// # Examples
    ///
    /// See [`ChatAgent`].
    pub fn function(
        name: impl Into<String>,
        speak: impl Fn(&[Message]) -> String + Send + Sync + 'static,
    ) -> Self {
        Self::with_kind(name, AgentKind::Function(Arc::new(speak)))
    }

    /// What the agent does, for a [`ModelSelector`] choosing the next speaker.
    ///
    /// # Examples
    ///
    /// See [`ChatAgent`].
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The agent's name.
    ///
    /// # Examples
    ///
    /// See [`ChatAgent`].
    pub fn name(&self) -> &str {
        &self.name
    }

    fn tools_node(&self) -> Option<String> {
        match &self.kind {
            AgentKind::Model(agent) if !agent.tools.is_empty() => {
                Some(format!("{}.tools", self.name))
            }
            _ => None,
        }
    }
}

/// What a [`ModelSelector`] does when the model names nobody the transition map allows.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::group_chat::Fallback;
/// assert_eq!(Fallback::default(), Fallback::RoundRobin);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// The next allowed agent in round robin order.
    #[default]
    RoundRobin,
    /// This agent, when it is allowed; otherwise round robin.
    Agent(String),
    /// The `select` node fails with [`GroupChatError::NoValidSpeaker`].
    Fail,
}

/// The next speaker chosen by a model: the `select` node sends the transcript (as an agent
/// that has not spoken sees it, [`GroupChat::seen_by`]), the candidates with their
/// descriptions, and asks for `{"speaker": "<name>"}` under a JSON Schema whose `enum` is the
/// candidates (structured output). The answer is read as that JSON, or else as a bare name,
/// or else as the one candidate it mentions; otherwise the [`Fallback`] decides. When only
/// one agent is allowed, the model is not asked.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
/// use agentgraph_nodes::patterns::group_chat::{Fallback, ModelSelector, Selector};
/// use agentgraph_nodes::Message;
/// # #[derive(Debug)] struct Picker;
/// # impl ChatModel for Picker {
/// #     fn model(&self) -> &str { "picker" }
/// #     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> {
/// #         Box::pin(async { Ok(ChatResponse::new(Message::assistant(r#"{"speaker":"b"}"#))) })
/// #     }
/// # }
/// let selector: Selector = ModelSelector::new(Arc::new(Picker))
///     .prompt("Pick whoever has not spoken for longest.")
///     .structured(false)
///     .fallback(Fallback::Agent("moderator".into()))
///     .into();
/// # drop(selector);
/// ```
#[derive(Clone)]
pub struct ModelSelector {
    model: Arc<dyn ChatModel>,
    prompt: Option<String>,
    structured: bool,
    fallback: Fallback,
}

impl fmt::Debug for ModelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSelector")
            .field("model", &self.model.model())
            .field("prompt", &self.prompt.is_some())
            .field("structured", &self.structured)
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl ModelSelector {
    /// A selector on `model`, with the default prompt, structured output and the round robin
    /// fallback.
    ///
    /// # Examples
    ///
    /// See [`ModelSelector`].
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        ModelSelector {
            model,
            prompt: None,
            structured: true,
            fallback: Fallback::default(),
        }
    }

    /// The system prompt, instead of the default (which says the model picks the next
    /// speaker and lists the agents with their descriptions).
    ///
    /// # Examples
    ///
    /// See [`ModelSelector`].
    #[must_use]
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// Whether to send the JSON Schema of the answer (`response_format`); on by default. Turn
    /// it off for servers that refuse it: the question still asks for the JSON.
    ///
    /// # Examples
    ///
    /// See [`ModelSelector`].
    #[must_use]
    pub fn structured(mut self, on: bool) -> Self {
        self.structured = on;
        self
    }

    /// What to do when the model names nobody valid.
    ///
    /// # Examples
    ///
    /// See [`ModelSelector`].
    #[must_use]
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }
}

type SelectFn = Arc<dyn Fn(&GroupChatState, &[&str]) -> Option<String> + Send + Sync>;

#[derive(Clone)]
enum SelectorKind {
    RoundRobin,
    Function(SelectFn),
    Model(Arc<ModelSelector>),
}

/// How the next speaker is chosen, among the agents the transition map allows after the last
/// one (every agent before the first turn).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::group_chat::Selector;
/// // The agent who has spoken least (ties: the first allowed).
/// let fair = Selector::function(|state, allowed| {
///     allowed
///         .iter()
///         .min_by_key(|a| state.messages.iter().filter(|m| m.name.as_deref() == Some(**a)).count())
///         .map(|a| a.to_string())
/// });
/// # drop((fair, Selector::round_robin()));
/// ```
#[derive(Clone)]
pub struct Selector(SelectorKind);

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SelectorKind::RoundRobin => f.write_str("Selector::RoundRobin"),
            SelectorKind::Function(_) => f.write_str("Selector::Function"),
            SelectorKind::Model(m) => f.debug_tuple("Selector::Model").field(m).finish(),
        }
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::round_robin()
    }
}

impl Selector {
    /// The agents in the order they were added, each followed by the next one the transition
    /// map allows (the default).
    ///
    /// # Examples
    ///
    /// See [`Selector`].
    pub fn round_robin() -> Self {
        Selector(SelectorKind::RoundRobin)
    }

    /// A function of the state and the allowed agents (in the order they were added). It is
    /// a router: keep it deterministic. A `None`, or a name not allowed, falls back to round
    /// robin.
    ///
    /// # Examples
    ///
    /// See [`Selector`].
    pub fn function(
        select: impl Fn(&GroupChatState, &[&str]) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Selector(SelectorKind::Function(Arc::new(select)))
    }

    /// A model's choice, with the defaults of [`ModelSelector::new`].
    ///
    /// # Examples
    ///
    /// See [`ModelSelector`].
    pub fn model(model: Arc<dyn ChatModel>) -> Self {
        ModelSelector::new(model).into()
    }
}

impl From<ModelSelector> for Selector {
    fn from(selector: ModelSelector) -> Self {
        Selector(SelectorKind::Model(Arc::new(selector)))
    }
}

type StopFn = Arc<dyn Fn(&GroupChatState) -> bool + Send + Sync>;

#[derive(Clone)]
enum StopKind {
    MaxRounds(u32),
    Keyword(String),
    Tokens(u64),
    When(StopFn),
    And(Box<Stop>, Box<Stop>),
    Or(Box<Stop>, Box<Stop>),
}

/// A stop condition, checked on the state after every turn; `a & b`, `a | b` combine them.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::{Message, patterns::group_chat::{GroupChatState, Stop}};
///
/// let stop = Stop::max_rounds(20) | (Stop::keyword("AGREED") & Stop::when(|s| s.turns >= 2));
/// let mut s = GroupChatState::new("Debate.");
/// s.messages.push(Message::assistant("AGREED").with_name("a"));
/// s.speaker = Some("a".into());
/// s.turns = 1;
/// assert!(!stop.holds(&s)); // the keyword, but too early
/// s.turns = 2;
/// assert!(stop.holds(&s));
/// assert!(Stop::tokens(1_000).or(Stop::max_rounds(3)).holds(&GroupChatState { turns: 3, ..s }));
/// ```
#[derive(Clone)]
pub struct Stop(StopKind);

impl fmt::Debug for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            StopKind::MaxRounds(n) => write!(f, "max_rounds({n})"),
            StopKind::Keyword(k) => write!(f, "keyword({k:?})"),
            StopKind::Tokens(n) => write!(f, "tokens({n})"),
            StopKind::When(_) => f.write_str("when(..)"),
            StopKind::And(a, b) => write!(f, "({a:?} & {b:?})"),
            StopKind::Or(a, b) => write!(f, "({a:?} | {b:?})"),
        }
    }
}

impl Stop {
    /// Stops once `rounds` turns were taken ([`GroupChatState::turns`], counted over the
    /// whole chat, across a thread's invocations).
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    pub fn max_rounds(rounds: u32) -> Self {
        Stop(StopKind::MaxRounds(rounds))
    }

    /// Stops when the last turn's message contains `keyword` (AutoGen's `TERMINATE`).
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    pub fn keyword(keyword: impl Into<String>) -> Self {
        Stop(StopKind::Keyword(keyword.into()))
    }

    /// Stops once the models reported at least `tokens` tokens ([`GroupChatState::tokens`]).
    /// A streamed answer reports its usage only when the provider is asked to (for
    /// `OpenAiModel`, `stream_usage(true)`); a turn without a report counts nothing.
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    pub fn tokens(tokens: u64) -> Self {
        Stop(StopKind::Tokens(tokens))
    }

    /// Stops when `stop` returns `true` (keep it deterministic: it is part of routing).
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    pub fn when(stop: impl Fn(&GroupChatState) -> bool + Send + Sync + 'static) -> Self {
        Stop(StopKind::When(Arc::new(stop)))
    }

    /// Stops when both hold.
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    #[must_use]
    pub fn and(self, other: Stop) -> Self {
        Stop(StopKind::And(Box::new(self), Box::new(other)))
    }

    /// Stops when either holds.
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    #[must_use]
    pub fn or(self, other: Stop) -> Self {
        Stop(StopKind::Or(Box::new(self), Box::new(other)))
    }

    /// Whether the condition holds on `state`.
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    pub fn holds(&self, state: &GroupChatState) -> bool {
        match &self.0 {
            StopKind::MaxRounds(n) => state.turns >= *n,
            StopKind::Keyword(k) => state
                .last_turn()
                .is_some_and(|m| m.content.to_text().contains(k.as_str())),
            StopKind::Tokens(n) => state.tokens >= *n,
            StopKind::When(f) => f(state),
            StopKind::And(a, b) => a.holds(state) && b.holds(state),
            StopKind::Or(a, b) => a.holds(state) || b.holds(state),
        }
    }
}

impl BitAnd for Stop {
    type Output = Stop;
    fn bitand(self, rhs: Stop) -> Stop {
        self.and(rhs)
    }
}

impl BitOr for Stop {
    type Output = Stop;
    fn bitor(self, rhs: Stop) -> Stop {
        self.or(rhs)
    }
}

/// Why a group chat cannot be built, or why its `select` node failed.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::Message;
/// use agentgraph_nodes::patterns::group_chat::{ChatAgent, GroupChat, GroupChatError};
///
/// let say = |text: &'static str| move |_: &[Message]| text.to_owned();
/// let err = GroupChat::new()
///     .agent(ChatAgent::function("a", say("hi")))
///     .agent(ChatAgent::function("b", say("ho")))
///     .allow("a", ["c"])
///     .compile()
///     .unwrap_err();
/// assert!(matches!(err, GroupChatError::UnknownAgent { ref rule, ref name } if rule == "a" && name == "c"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupChatError {
    /// The chat has no agent.
    #[error("a group chat needs at least one agent")]
    NoAgents,
    /// An agent's name is empty, longer than 64, has characters other than ASCII letters,
    /// digits, `_` and `-`, or is `select`.
    #[error(
        "`{0}` cannot name an agent: use 1 to 64 ASCII letters, digits, `_` or `-`, not `select`"
    )]
    InvalidName(String),
    /// Two agents have this name.
    #[error("two agents are named `{0}`")]
    DuplicateAgent(String),
    /// A transition rule, the first speaker or the fallback names an agent the chat does not
    /// have.
    #[error("the {rule} names `{name}`, which is not an agent of the chat")]
    UnknownAgent {
        /// Where: the agent whose rule it is, `first speaker` or `fallback`.
        rule: String,
        /// The unknown name.
        name: String,
    },
    /// A pair is both allowed and denied.
    #[error("`{to}` is both allowed and denied to speak after `{from}`")]
    Contradiction {
        /// The agent who spoke.
        from: String,
        /// The agent who would speak next.
        to: String,
    },
    /// The transition map leaves nobody to speak after this agent.
    #[error("no agent may speak after `{0}`: its transition rules deny everyone")]
    NoSuccessor(String),
    /// The graph could not be built (a bug).
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The selector's model named nobody allowed, under [`Fallback::Fail`].
    #[error("the selector's answer `{answer}` names none of {}", candidates.join(", "))]
    NoValidSpeaker {
        /// The model's answer.
        answer: String,
        /// The agents allowed.
        candidates: Vec<String>,
    },
}

/// A group chat: agents, a selector, a transition map and stop conditions;
/// [`compile`](GroupChat::compile) makes its graph. See [the module](self).
///
/// # Examples
///
/// See [the module](self).
#[derive(Clone, Default)]
pub struct GroupChat {
    agents: Vec<ChatAgent>,
    selector: Selector,
    stop: Option<Stop>,
    allow: Vec<(String, Vec<String>)>,
    deny: Vec<(String, Vec<String>)>,
    first: Option<String>,
    share_tools: bool,
}

impl fmt::Debug for GroupChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupChat")
            .field("agents", &self.agents)
            .field("selector", &self.selector)
            .field("stop", &self.stop)
            .field("allow", &self.allow)
            .field("deny", &self.deny)
            .field("first", &self.first)
            .field("share_tools", &self.share_tools)
            .finish()
    }
}

impl GroupChat {
    /// The rounds after which a chat without a stop condition stops (AutoGen's default).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::patterns::group_chat::GroupChat::DEFAULT_MAX_ROUNDS, 10);
    /// ```
    pub const DEFAULT_MAX_ROUNDS: u32 = 10;

    /// An empty chat: round robin, every agent allowed after every agent, stopping after
    /// [`DEFAULT_MAX_ROUNDS`](GroupChat::DEFAULT_MAX_ROUNDS) rounds.
    ///
    /// # Examples
    ///
    /// See [the module](self).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an agent (the round robin order is the order of these calls).
    ///
    /// # Examples
    ///
    /// See [the module](self).
    #[must_use]
    pub fn agent(mut self, agent: ChatAgent) -> Self {
        self.agents.push(agent);
        self
    }

    /// How the next speaker is chosen (round robin by default).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::patterns::group_chat::{GroupChat, Selector};
    /// let chat = GroupChat::new().selector(Selector::function(|_, allowed| allowed.last().map(|a| a.to_string())));
    /// # drop(chat);
    /// ```
    #[must_use]
    pub fn selector(mut self, selector: impl Into<Selector>) -> Self {
        self.selector = selector.into();
        self
    }

    /// When the chat ends (checked after every turn); replaces the default of
    /// [`DEFAULT_MAX_ROUNDS`](GroupChat::DEFAULT_MAX_ROUNDS) rounds.
    ///
    /// # Examples
    ///
    /// See [the module](self).
    #[must_use]
    pub fn stop_when(mut self, stop: Stop) -> Self {
        self.stop = Some(stop);
        self
    }

    /// After `from`, only these agents may speak (several calls for one agent add up).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::Message;
    /// use agentgraph_nodes::patterns::group_chat::{ChatAgent, GroupChat, GroupChatState, Stop};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let say = |t: &'static str| move |_: &[Message]| t.to_owned();
    /// let chat = GroupChat::new()
    ///     .agent(ChatAgent::function("host", say("next?")))
    ///     .agent(ChatAgent::function("a", say("a here")))
    ///     .agent(ChatAgent::function("b", say("b here")))
    ///     .allow("a", ["host"]) // a hands back to the host; b may not follow a
    ///     .deny("host", ["host", "a"])
    ///     .stop_when(Stop::max_rounds(4))
    ///     .compile()?;
    /// let done = chat.invoke(GroupChatState::new("Roll call.")).await?;
    /// let who: Vec<_> = done.messages[1..].iter().map(|m| m.name.as_deref().unwrap()).collect();
    /// assert_eq!(who, ["host", "b", "host", "b"]);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn allow<I, T>(mut self, from: &str, to: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.allow
            .push((from.to_owned(), to.into_iter().map(Into::into).collect()));
        self
    }

    /// After `from`, these agents may not speak.
    ///
    /// # Examples
    ///
    /// See [`allow`](GroupChat::allow).
    #[must_use]
    pub fn deny<I, T>(mut self, from: &str, to: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.deny
            .push((from.to_owned(), to.into_iter().map(Into::into).collect()));
        self
    }

    /// Who speaks first in every invocation (instead of the selector's choice).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::patterns::group_chat::GroupChat;
    /// let chat = GroupChat::new().first_speaker("moderator");
    /// # drop(chat);
    /// ```
    #[must_use]
    pub fn first_speaker(mut self, name: impl Into<String>) -> Self {
        self.first = Some(name.into());
        self
    }

    /// Shows every agent's tool calls and results to the others (as user messages saying
    /// what was called and answered); off by default: an agent sees only its own.
    ///
    /// # Examples
    ///
    /// See [`seen_by`](GroupChat::seen_by).
    #[must_use]
    pub fn share_tool_messages(mut self, share: bool) -> Self {
        self.share_tools = share;
        self
    }

    /// What `agent` is sent of `messages` (without its system prompt): see
    /// [what each agent sees](self#what-each-agent-sees).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::message::{Message, Role, ToolCall};
    /// use agentgraph_nodes::patterns::group_chat::GroupChat;
    ///
    /// let call = ToolCall::new("c1", "search", serde_json::json!({ "q": "tides" }));
    /// let transcript = [
    ///     Message::user("Why are there tides?"),
    ///     Message::assistant("").with_tool_calls([call]).with_name("bob"),
    ///     Message::tool_result("c1", "the moon").with_name("search"),
    ///     Message::assistant("The moon.").with_name("bob"),
    ///     Message::assistant("And the sun.").with_name("ann"),
    /// ];
    /// let seen = GroupChat::new().seen_by("ann", &transcript);
    /// let shown: Vec<(&str, String)> =
    ///     seen.iter().map(|m| (m.role.as_str(), m.content.to_text().into_owned())).collect();
    /// assert_eq!(shown, [
    ///     ("user", "Why are there tides?".to_owned()),
    ///     ("user", "bob: The moon.".to_owned()),
    ///     ("assistant", "And the sun.".to_owned()),
    /// ]);
    /// let shared = GroupChat::new().share_tool_messages(true).seen_by("ann", &transcript);
    /// assert_eq!(shared.len(), 5);
    /// assert_eq!(shared[1].text(), Some(r#"bob called `search` with {"q":"tides"}"#));
    /// assert_eq!(shared[2].text(), Some("`search` answered bob: the moon"));
    /// ```
    pub fn seen_by(&self, agent: &str, messages: &[Message]) -> Vec<Message> {
        seen_by(agent, messages, self.share_tools)
    }

    /// The chat's graph over [`GroupChatState`].
    ///
    /// # Errors
    ///
    /// [`GroupChatError`]: no agent, an invalid or duplicate name, a transition rule, first
    /// speaker or fallback naming an unknown agent, a pair both allowed and denied, an agent
    /// after whom nobody may speak.
    ///
    /// # Examples
    ///
    /// See [the module](self).
    pub fn compile(&self) -> Result<CompiledGraph<GroupChatState>, GroupChatError> {
        let chat = Arc::new(Plan::new(self)?);
        build(chat)?.compile().map_err(GroupChatError::from)
    }
}

/// A checked chat: agents by index, the allowed successors of each.
struct Plan {
    agents: Vec<ChatAgent>,
    names: Vec<String>,
    next: Vec<Vec<usize>>,
    selector: SelectorKind,
    stop: Stop,
    first: Option<usize>,
    share_tools: bool,
}

impl Plan {
    fn new(chat: &GroupChat) -> Result<Plan, GroupChatError> {
        if chat.agents.is_empty() {
            return Err(GroupChatError::NoAgents);
        }
        let names: Vec<String> = chat.agents.iter().map(|a| a.name.clone()).collect();
        for (i, name) in names.iter().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name != SELECT_NODE
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(GroupChatError::InvalidName(name.clone()));
            }
            if names[..i].contains(name) {
                return Err(GroupChatError::DuplicateAgent(name.clone()));
            }
        }
        let index = |rule: &str, name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| GroupChatError::UnknownAgent {
                    rule: rule.to_owned(),
                    name: name.to_owned(),
                })
        };
        let n = names.len();
        let mut allowed: Vec<Option<Vec<bool>>> = vec![None; n];
        for (from, to) in &chat.allow {
            let f = index(from, from)?;
            let set = allowed[f].get_or_insert_with(|| vec![false; n]);
            for t in to {
                set[index(from, t)?] = true;
            }
        }
        let mut next: Vec<Vec<bool>> = allowed
            .into_iter()
            .map(|a| a.unwrap_or_else(|| vec![true; n]))
            .collect();
        for (from, to) in &chat.deny {
            let f = index(from, from)?;
            for t in to {
                let t = index(from, t)?;
                let explicitly = chat
                    .allow
                    .iter()
                    .any(|(a, b)| a == from && b.iter().any(|x| *x == names[t]));
                if explicitly {
                    return Err(GroupChatError::Contradiction {
                        from: from.clone(),
                        to: names[t].clone(),
                    });
                }
                next[f][t] = false;
            }
        }
        let next: Vec<Vec<usize>> = next
            .into_iter()
            .map(|set| (0..n).filter(|&i| set[i]).collect())
            .collect();
        if let Some(i) = next.iter().position(Vec::is_empty) {
            return Err(GroupChatError::NoSuccessor(names[i].clone()));
        }
        let first = chat
            .first
            .as_deref()
            .map(|f| index("first speaker", f))
            .transpose()?;
        if let SelectorKind::Model(m) = &chat.selector.0
            && let Fallback::Agent(a) = &m.fallback
        {
            index("fallback", a)?;
        }
        Ok(Plan {
            agents: chat.agents.clone(),
            names,
            next,
            selector: chat.selector.0.clone(),
            stop: chat
                .stop
                .clone()
                .unwrap_or(Stop::max_rounds(GroupChat::DEFAULT_MAX_ROUNDS)),
            first,
            share_tools: chat.share_tools,
        })
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The agents allowed after the last speaker (all before the first turn).
    fn candidates(&self, state: &GroupChatState) -> Vec<usize> {
        match state.speaker.as_deref().and_then(|s| self.position(s)) {
            Some(last) => self.next[last].clone(),
            None => (0..self.names.len()).collect(),
        }
    }

    /// The first candidate after the last speaker, in the agents' order.
    fn round_robin(&self, state: &GroupChatState, candidates: &[usize]) -> usize {
        let n = self.names.len();
        let last = state.speaker.as_deref().and_then(|s| self.position(s));
        let start = last.map_or(0, |l| l + 1);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|i| candidates.contains(i))
            .unwrap_or(candidates[0])
    }

    /// Where the chat goes before a turn: the first speaker, the selector's choice, or the
    /// `select` node.
    fn route_next(&self, state: &GroupChatState) -> Route {
        let candidates = self.candidates(state);
        let chosen = match &self.selector {
            SelectorKind::RoundRobin => self.round_robin(state, &candidates),
            SelectorKind::Function(select) => {
                let allowed: Vec<&str> = candidates.iter().map(|&i| &*self.names[i]).collect();
                match select(state, &allowed).and_then(|name| self.position(&name)) {
                    Some(i) if candidates.contains(&i) => i,
                    other => {
                        tracing::warn!(
                            target: "agentgraph_nodes::patterns::group_chat",
                            chosen = ?other.map(|i| &self.names[i]),
                            "the selector named no allowed agent: round robin"
                        );
                        self.round_robin(state, &candidates)
                    }
                }
            }
            SelectorKind::Model(_) if candidates.len() == 1 => candidates[0],
            SelectorKind::Model(_) => return Route::from(SELECT_NODE),
        };
        Route::from(self.names[chosen].clone())
    }

    /// Where the chat goes after a finished turn.
    fn after_turn(&self, state: &GroupChatState) -> Route {
        if self.stop.holds(state) {
            Route::end()
        } else {
            self.route_next(state)
        }
    }
}

/// The chat's graph.
fn build(chat: Arc<Plan>) -> Result<GraphBuilder<GroupChatState>, GroupChatError> {
    let mut b = GraphBuilder::<GroupChatState>::new();
    b.named("group_chat");
    let model_selector = matches!(chat.selector, SelectorKind::Model(_));
    let mut targets: Vec<String> = chat.names.clone();
    if model_selector {
        targets.push(SELECT_NODE.to_owned());
    }
    targets.push(END.to_owned());
    let turn_targets = || targets.iter().map(String::as_str);
    for (i, agent) in chat.agents.iter().enumerate() {
        let name = agent.name.as_str();
        match &agent.kind {
            AgentKind::Model(model) => {
                b.try_add_node(name, model_turn(chat.clone(), i, model.clone()))?;
                model.set_model_task(&mut b, name);
                if let Some(tools) = agent.tools_node() {
                    b.try_add_node(tools, tool_turn(model.clone()))?;
                }
            }
            AgentKind::User => {
                b.try_add_node(name, user_turn(chat.names[i].clone()))?;
            }
            AgentKind::Function(speak) => {
                b.try_add_node(name, function_turn(chat.names[i].clone(), speak.clone()))?;
            }
        }
    }
    if let SelectorKind::Model(selector) = &chat.selector {
        b.try_add_node(SELECT_NODE, select_turn(chat.clone(), selector.clone()))?;
    }
    for agent in &chat.agents {
        let name = agent.name.as_str();
        let c = chat.clone();
        match agent.tools_node() {
            Some(tools) => {
                b.try_add_edge(&tools, name)?;
                let mut to: Vec<&str> = turn_targets().collect();
                to.push(&tools);
                let tools_node = tools.clone();
                b.try_add_conditional_edges(name, to, move |s: &GroupChatState| {
                    match s.messages.last().map(Message::tool_calls) {
                        Some(calls) if !calls.is_empty() => Route::packets(
                            calls.iter().map(|c| Packet::new(tools_node.clone(), &c.id)),
                        ),
                        _ => c.after_turn(s),
                    }
                })?;
            }
            None => {
                b.try_add_conditional_edges(name, turn_targets(), move |s: &GroupChatState| {
                    c.after_turn(s)
                })?;
            }
        }
    }
    if let SelectorKind::Model(_) = &chat.selector {
        b.try_add_conditional_edges(
            SELECT_NODE,
            chat.names.iter().map(String::as_str),
            |s| match &s.next {
                Some(next) => Route::from(next.clone()),
                None => Route::end(),
            },
        )?;
    }
    let c = chat.clone();
    b.try_add_conditional_edges(START, turn_targets(), move |s: &GroupChatState| {
        match c.first {
            Some(first) => Route::from(c.names[first].clone()),
            None => c.route_next(s),
        }
    })?;
    Ok(b)
}

type Turn = BoxFuture<'static, Result<GroupChatStateUpdate, BoxError>>;

/// Whose message `m` is, given the owners of the calls seen so far.
fn speaker_of<'a>(m: &'a Message, owners: &HashMap<&'a str, &'a str>) -> Option<&'a str> {
    match &m.role {
        Role::Tool { call_id, .. } => owners.get(call_id.as_str()).copied(),
        _ => m.name.as_deref(),
    }
}

/// What `me` is sent of `messages`: see the module's documentation.
fn seen_by(me: &str, messages: &[Message], share_tools: bool) -> Vec<Message> {
    let mut owners: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if let (Role::Assistant { tool_calls }, Some(name)) = (&m.role, m.name.as_deref()) {
            for c in tool_calls {
                owners.insert(c.id.as_str(), name);
            }
        }
        let Some(speaker) = speaker_of(m, &owners) else {
            // No speaker: the task, a system message, or a tool result of such a call.
            out.push(m.clone());
            continue;
        };
        if speaker == me || matches!(m.role, Role::System) {
            out.push(m.clone());
            continue;
        }
        let text = m.content.to_text();
        match &m.role {
            Role::Tool { .. } if share_tools => {
                let tool = m.name.as_deref().unwrap_or("tool");
                let verb = if m.is_error() {
                    "failed for"
                } else {
                    "answered"
                };
                out.push(
                    Message::user(format!("`{tool}` {verb} {speaker}: {text}")).with_name(speaker),
                );
            }
            Role::Tool { .. } => {}
            Role::Assistant { tool_calls } if !tool_calls.is_empty() => {
                let mut said: Vec<String> = Vec::new();
                if !text.is_empty() {
                    said.push(format!("{speaker}: {text}"));
                }
                if share_tools {
                    said.extend(tool_calls.iter().map(|c| {
                        format!(
                            "{speaker} called `{}` with {}",
                            c.name,
                            c.arguments.to_json_text()
                        )
                    }));
                }
                if !said.is_empty() {
                    out.push(Message::user(said.join("\n")).with_name(speaker));
                }
            }
            _ => out.push(Message::user(format!("{speaker}: {text}")).with_name(speaker)),
        }
    }
    out
}

/// The model calls `me` made in its unfinished turn: its assistant messages with tool calls
/// at the end of the transcript (with their results between them).
fn calls_this_turn(me: &str, messages: &[Message]) -> u32 {
    let mut calls = 0;
    for m in messages.iter().rev() {
        match &m.role {
            Role::Tool { .. } => {}
            Role::Assistant { tool_calls }
                if !tool_calls.is_empty() && m.name.as_deref() == Some(me) =>
            {
                calls += 1;
            }
            _ => break,
        }
    }
    calls
}

/// A model agent's node: one model call of its turn (the model's text streamed as tokens).
fn model_turn(
    chat: Arc<Plan>,
    i: usize,
    agent: Arc<Agent>,
) -> impl Fn(Arc<GroupChatState>, Context) -> Turn + Send + Sync + 'static {
    let name = chat.names[i].clone();
    let has_tools = !agent.tools.is_empty();
    let (request_agent, request_chat, request_name) = (agent.clone(), chat.clone(), name.clone());
    let update_name = name.clone();
    let call = Arc::new(model_node(
        agent.model.clone(),
        move |s: &GroupChatState| {
            let system = request_agent
                .system
                .iter()
                .map(|s| Message::system(s.as_str()));
            let seen = seen_by(&request_name, &s.messages, request_chat.share_tools);
            let request = ChatRequest::new(system.chain(seen)).tools_from(&request_agent.tools);
            match &request_agent.request {
                Some(hook) => hook(request),
                None => request,
            }
        },
        move |_: &GroupChatState, r: ChatResponse| {
            let tokens = r.usage.map_or(0, |u| u.total());
            let mut message = r.message.with_name(update_name.as_str());
            if !has_tools && let Role::Assistant { tool_calls } = &mut message.role {
                // Offered no tools: calls it made anyway are not kept.
                tool_calls.clear();
            }
            let update = GroupChatStateUpdate::new().tokens(tokens);
            if message.tool_calls().is_empty() {
                update
                    .messages(vec![message])
                    .turns(1)
                    .speaker(Some(update_name.clone()))
            } else {
                update.messages(vec![message])
            }
        },
    ));
    move |state: Arc<GroupChatState>, ctx: Context| {
        let (agent, call, name) = (agent.clone(), call.clone(), name.clone());
        Box::pin(async move {
            if calls_this_turn(&name, &state.messages) >= agent.max_turns {
                return Err(AgentError::TurnLimit {
                    limit: agent.max_turns,
                }
                .into());
            }
            call(state, ctx).await
        }) as Turn
    }
}

/// A model agent's tool node: one task per call of its last answer.
fn tool_turn(
    agent: Arc<Agent>,
) -> impl Fn(Arc<GroupChatState>, Context) -> Turn + Send + Sync + 'static {
    move |state: Arc<GroupChatState>, ctx: Context| {
        let agent = agent.clone();
        Box::pin(async move {
            let call_id: String = ctx.input()?;
            let (position, call) = state
                .messages
                .iter()
                .enumerate()
                .rev()
                .find_map(|(p, m)| {
                    m.tool_calls()
                        .iter()
                        .find(|c| c.id == call_id)
                        .map(|c| (p, c))
                })
                .ok_or(AgentError::CallNotFound { call_id })?;
            // The limits on calls count this agent's calls only.
            let owner = state.messages[position].name.as_deref();
            let own: Vec<Message> = state.messages[..=position]
                .iter()
                .filter(|m| !m.tool_calls().is_empty() && m.name.as_deref() == owner)
                .cloned()
                .collect();
            let result = answer(&agent, &own, call.clone(), &ctx).await?;
            Ok(GroupChatStateUpdate::new().messages(vec![result]))
        }) as Turn
    }
}

/// A user agent's node: interrupts with a [`UserTurn`]; the answer is its message.
fn user_turn(
    name: String,
) -> impl Fn(Arc<GroupChatState>, Context) -> Turn + Send + Sync + 'static {
    move |state: Arc<GroupChatState>, ctx: Context| {
        let name = name.clone();
        Box::pin(async move {
            let last = state.messages.last();
            let owners = HashMap::new();
            let asked = UserTurn {
                kind: "group_chat_user".into(),
                agent: name.clone(),
                turn: state.turns,
                last_speaker: last.and_then(|m| speaker_of(m, &owners)).map(str::to_owned),
                last_text: last.map(|m| m.content.to_text().into_owned()),
            };
            let said: String = ctx.interrupt(&asked)?;
            Ok(GroupChatStateUpdate::new()
                .messages(vec![Message::user(said).with_name(name.as_str())])
                .turns(1)
                .speaker(Some(name)))
        }) as Turn
    }
}

/// A function agent's node.
fn function_turn(
    name: String,
    speak: AgentFn,
) -> impl Fn(Arc<GroupChatState>, Context) -> Turn + Send + Sync + 'static {
    move |state: Arc<GroupChatState>, _: Context| {
        let said = speak(&state.messages);
        let update = GroupChatStateUpdate::new()
            .messages(vec![Message::assistant(said).with_name(name.as_str())])
            .turns(1)
            .speaker(Some(name.clone()));
        Box::pin(async move { Ok(update) }) as Turn
    }
}

/// The question a [`ModelSelector`] is asked, and the schema of its answer.
fn selection_request(
    chat: &Plan,
    selector: &ModelSelector,
    state: &GroupChatState,
    candidates: &[&str],
) -> ChatRequest {
    let system = selector.prompt.clone().unwrap_or_else(|| {
        let mut prompt =
            String::from("You choose who speaks next in a group chat. The participants:\n");
        for a in &chat.agents {
            prompt.push_str(&format!("- {}", a.name));
            if !a.description.is_empty() {
                prompt.push_str(&format!(": {}", a.description));
            }
            prompt.push('\n');
        }
        prompt
    });
    let question = format!(
        "Who speaks next? Choose one of: {}. Answer with JSON only: {{\"speaker\": \"<name>\"}}.",
        candidates.join(", ")
    );
    let messages = std::iter::once(Message::system(system))
        .chain(seen_by("", &state.messages, chat.share_tools))
        .chain(std::iter::once(Message::user(question)));
    let mut request = ChatRequest::new(messages);
    if selector.structured {
        request = request.response_format(ResponseFormat::json_schema(
            "next_speaker",
            json!({
                "type": "object",
                "properties": { "speaker": { "type": "string", "enum": candidates } },
                "required": ["speaker"],
                "additionalProperties": false,
            }),
        ));
    }
    request
}

/// The candidate an answer names: `{"speaker": name}`, a bare name, or the one candidate
/// mentioned.
fn parse_choice<'a>(text: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let exact = |s: &str| {
        let s = s
            .trim()
            .trim_matches(|c: char| c == '"' || c == '\'' || c == '`' || c == '.');
        candidates
            .iter()
            .copied()
            .find(|c| c.eq_ignore_ascii_case(s))
    };
    if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text.trim())
        && let Some(Value::String(s)) = ["speaker", "name", "next"].iter().find_map(|k| o.get(*k))
    {
        return exact(s);
    }
    if let Some(c) = exact(text) {
        return Some(c);
    }
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .collect();
    let mut named = candidates
        .iter()
        .copied()
        .filter(|c| words.iter().any(|w| w.eq_ignore_ascii_case(c)));
    match (named.next(), named.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// The `select` node of a [`ModelSelector`]: asks the model, checks the answer, falls back.
fn select_turn(
    chat: Arc<Plan>,
    selector: Arc<ModelSelector>,
) -> impl Fn(Arc<GroupChatState>, Context) -> Turn + Send + Sync + 'static {
    move |state: Arc<GroupChatState>, ctx: Context| {
        let (chat, selector) = (chat.clone(), selector.clone());
        Box::pin(async move {
            let candidates = chat.candidates(&state);
            let names: Vec<&str> = candidates.iter().map(|&i| &*chat.names[i]).collect();
            let request = selection_request(&chat, &selector, &state, &names);
            crate::model::check_model_budget(&ctx)?;
            let response = selector.model.chat(request).await?;
            if let Some(usage) = response.usage {
                ctx.record_model_usage(
                    selector.model.model(),
                    usage.input_tokens,
                    usage.output_tokens,
                );
            }
            let tokens = response.usage.map_or(0, |u| u.total());
            let text = response.text();
            let chosen = match parse_choice(&text, &names) {
                Some(name) => name.to_owned(),
                None => {
                    tracing::warn!(
                        target: "agentgraph_nodes::patterns::group_chat",
                        answer = %text,
                        fallback = ?selector.fallback,
                        "the selector's model named no allowed agent"
                    );
                    match &selector.fallback {
                        Fallback::Agent(a) if names.contains(&a.as_str()) => a.clone(),
                        Fallback::Fail => {
                            return Err(GroupChatError::NoValidSpeaker {
                                answer: text.into_owned(),
                                candidates: names.iter().map(|n| (*n).to_owned()).collect(),
                            }
                            .into());
                        }
                        _ => chat.names[chat.round_robin(&state, &candidates)].clone(),
                    }
                }
            };
            Ok(GroupChatStateUpdate::new()
                .next(Some(chosen))
                .tokens(tokens))
        }) as Turn
    }
}

#[cfg(test)]
mod tests {
    use super::parse_choice;

    #[test]
    fn choices_are_read_from_json_names_and_mentions() {
        let c = ["alice", "bob"];
        assert_eq!(parse_choice(r#"{"speaker": "bob"}"#, &c), Some("bob"));
        assert_eq!(parse_choice(r#"{"speaker": "carol"}"#, &c), None);
        assert_eq!(parse_choice(" Alice. ", &c), Some("alice"));
        assert_eq!(parse_choice("I think bob should go.", &c), Some("bob"));
        assert_eq!(parse_choice("alice or bob", &c), None);
        assert_eq!(parse_choice("nobody", &c), None);
    }
}
