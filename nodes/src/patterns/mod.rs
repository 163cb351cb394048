//! Multi-agent patterns over the engine's primitives: a [`Supervisor`] routing turns to
//! workers, a [`Swarm`] of agents handing the conversation to each other, an [`Ensemble`]
//! voting or judged, a [`Fallback`] chain, a sequential [`Pipeline`], and [`Planning`] mode
//! (plan with read-only tools, a person approves, then execute); and the [`group_chat`]: agents
//! taking turns on one transcript, a selector of the next speaker, stop conditions.
//!
//! Each pattern compiles to an ordinary [`CompiledGraph`](agentgraph_engine::CompiledGraph) over [`TeamState`]: every agent is
//! an [`Agent`] run as a subgraph (its own child run, checkpointed to the parent's store),
//! routing is a go-to or a router, parallel agents are tasks of one step merged in plan order,
//! approvals are interrupts. So checkpoints, resume after a crash or an interrupt, threads
//! (`invoke_thread`), events (each agent's streamed tokens, wrapped as subgraph events) and the
//! monitor work for every pattern as for any graph.
//!
//! # What each agent sees
//!
//! The [`TeamState::messages`] are the team's conversation: the user's messages, each agent's
//! answers (assistant messages [named](Message::name) after the agent) and the handoffs, each
//! recorded as a `transfer_to_<agent>` tool call **with its result in the same update**, so that
//! no history ever holds an unanswered call. An agent's own tool calls and results stay in its
//! child run (see [`Report`]) unless it is asked to report them.
//!
//! An agent is given, by its [`View`]:
//!
//! - [`View::Transcript`] (the default): the user's messages and the agents' answers, without
//!   any tool call or result (not even the handoffs), then its task as a user message. So
//!   workers never see each other's tool chatter, and never a dangling call.
//! - [`View::Task`]: its task alone (or the last user message when it has none).
//! - [`View::Everything`]: the team's messages as they are, then its task.
//!
//! Agent names must be 1 to 64 characters of `A-Z a-z 0-9 _ -` (the OpenAI `name` rule): they
//! name the messages, the handoff tools and the graph's nodes.
//!
//! # Examples
//!
//! A rule-based supervisor (no model needed to route) with two workers:
//!
//! ```
//! use std::sync::Arc;
//! use agentgraph_nodes::agent::Agent;
//! use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
//! use agentgraph_nodes::patterns::{Decision, Handoff, Member, Supervisor, TeamState};
//! use agentgraph_nodes::Message;
//!
//! /// Answers with its name and the last message it was given.
//! #[derive(Debug)]
//! struct Echo(&'static str);
//! impl ChatModel for Echo {
//!     fn model(&self) -> &str { self.0 }
//!     fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
//!         let last = request.messages.last().map(|m| m.content.to_text().into_owned());
//!         Box::pin(async move {
//!             Ok(ChatResponse::new(Message::assistant(format!("{}: {}", self.0, last.unwrap_or_default()))))
//!         })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let graph = Supervisor::rule(|s: &TeamState| match s.last_speaker() {
//!     Some("searcher") => Decision::handoff(Handoff::new("writer", "Write it up.")),
//!     Some("writer") => Decision::finish(),
//!     _ => Decision::handoff(Handoff::new("searcher", "Find sources.")),
//! })
//! .worker(Member::new("searcher", Agent::new(Arc::new(Echo("searcher")))))
//! .worker(Member::new("writer", Agent::new(Arc::new(Echo("writer")))))
//! .compile()?;
//!
//! let done = graph.invoke(TeamState::from_messages([Message::user("Rust async?")])).await?;
//! let said: Vec<&str> = done.answers_in_turn().map(|m| m.text().unwrap()).collect();
//! assert_eq!(said, ["searcher: Find sources.", "writer: Write it up."]);
//! # Ok(()) }
//! ```

mod ensemble;
pub mod group_chat;
mod planning;
mod supervisor;
mod swarm;

use agentgraph_engine::GraphError;
use serde::{Deserialize, Serialize};

pub use ensemble::{Aggregate, Ensemble, Fallback, Pipeline};
pub use planning::{Plan, PlanDecision, PlanReview, PlanStatus, Planning};
pub use supervisor::{Decision, Supervisor, WorkerChoice};
pub use swarm::Swarm;

use crate::agent::{Agent, AgentState};
use crate::message::{Message, Role, ToolCall};

/// The prefix of the handoff tools: `transfer_to_<agent>`.
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_nodes::patterns::HANDOFF_PREFIX, "transfer_to_");
/// ```
pub const HANDOFF_PREFIX: &str = "transfer_to_";

/// The state of every pattern's graph: the team's conversation and what the patterns keep
/// between steps and turns of a thread.
///
/// The derive makes `TeamStateUpdate`: `TeamStateUpdate::new().messages(vec![Message::user(..)])`
/// is the input of a thread's next invocation.
///
/// # Examples
///
/// ```
/// use agentgraph_engine::State;
/// use agentgraph_nodes::patterns::{TeamState, TeamStateUpdate};
/// use agentgraph_nodes::Message;
///
/// let mut state = TeamState::from_messages([Message::user("hi")]);
/// state.apply(TeamStateUpdate::new().messages(vec![Message::assistant("hello").with_name("bot")]));
/// assert_eq!(state.last_speaker(), Some("bot"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, agentgraph_macros::State)]
#[state(crate = agentgraph_engine)]
#[non_exhaustive]
pub struct TeamState {
    /// The team's conversation (see [the module](self) for what it holds).
    #[reducer(with = crate::messages::add_messages)]
    pub messages: Vec<Message>,
    /// The agent that spoke last: in a [`Swarm`], the one the next user message goes to.
    pub active: Option<String>,
    /// The tasks handed over in the last handoff (a supervisor's round, a swarm's transfer).
    pub handoffs: Vec<Handoff>,
    /// The answers of agents run side by side or one after the other (ensemble, fallback,
    /// planners), appended: each run of such agents adds one per agent, in the agents'
    /// order (so the last ones are the latest run's).
    #[reducer(append)]
    pub answers: Vec<Answer>,
    /// The agent whose answer was chosen last (a vote, a judge, a fallback, a plan).
    pub winner: Option<String>,
    /// The plan of [`Planning`] mode: kept across the turns of a thread.
    pub plan: Option<Plan>,
}

impl TeamState {
    /// A state holding these messages.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, patterns::TeamState};
    /// assert_eq!(TeamState::from_messages([Message::user("hi")]).messages.len(), 1);
    /// ```
    pub fn from_messages(messages: impl IntoIterator<Item = Message>) -> Self {
        TeamState {
            messages: messages.into_iter().collect(),
            ..TeamState::default()
        }
    }

    /// The name of the last message that has one (the agent that spoke last).
    ///
    /// # Examples
    ///
    /// See [`TeamState`].
    pub fn last_speaker(&self) -> Option<&str> {
        self.messages.iter().rev().find_map(|m| m.name.as_deref())
    }

    /// The agents' answers since the last user message: assistant messages with text and a
    /// name, without tool calls.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::{Message, patterns::TeamState};
    /// let s = TeamState::from_messages([
    ///     Message::user("a"), Message::assistant("old").with_name("x"),
    ///     Message::user("b"), Message::assistant("new").with_name("y"),
    /// ]);
    /// let texts: Vec<_> = s.answers_in_turn().filter_map(Message::text).collect();
    /// assert_eq!(texts, ["new"]);
    /// ```
    pub fn answers_in_turn(&self) -> impl Iterator<Item = &Message> {
        let start = self
            .messages
            .iter()
            .rposition(|m| m.role == Role::User)
            .map_or(0, |i| i + 1);
        self.messages[start..].iter().filter(|m| is_answer(m))
    }
}

/// A task handed to an agent: to whom, what, and by whom.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::Handoff;
/// let h = Handoff::new("writer", "Write a summary.");
/// assert_eq!((h.to.as_str(), h.task.as_str()), ("writer", "Write a summary."));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Handoff {
    /// The agent the task goes to.
    pub to: String,
    /// The task (or, in a swarm, the note for the next agent).
    pub task: String,
    /// The agent handing it over (filled in by the pattern).
    #[serde(default)]
    pub from: String,
    /// The id of the handoff's tool call in the team's messages (filled in by the pattern).
    #[serde(default)]
    pub call_id: String,
}

impl Handoff {
    /// A handoff of `task` to `to`.
    ///
    /// # Examples
    ///
    /// See [`Handoff`].
    pub fn new(to: impl Into<String>, task: impl Into<String>) -> Self {
        Handoff {
            to: to.into(),
            task: task.into(),
            from: String::new(),
            call_id: String::new(),
        }
    }
}

/// One agent's answer in a round: its text, or why it has none.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::Answer;
/// let a = Answer::new("fast", Some("42".into()));
/// assert!(a.error.is_none() && a.accepted);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Answer {
    /// The agent.
    pub agent: String,
    /// Its answer (the last text it said), if any.
    pub text: Option<String>,
    /// Why it has no usable answer: its run failed (the error, as text), or it said nothing.
    pub error: Option<String>,
    /// Whether the answer passed the pattern's check (a [`Fallback`]'s).
    pub accepted: bool,
}

impl Answer {
    /// An accepted answer, or (`None`) an agent that said nothing.
    ///
    /// # Examples
    ///
    /// See [`Answer`].
    pub fn new(agent: impl Into<String>, text: Option<String>) -> Self {
        let error = text
            .is_none()
            .then(|| "the agent gave no answer".to_owned());
        Answer {
            agent: agent.into(),
            accepted: text.is_some(),
            text,
            error,
        }
    }

    /// A failed agent's answer.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::patterns::Answer;
    /// let a = Answer::failed("fast", "timeout");
    /// assert_eq!(a.error.as_deref(), Some("timeout"));
    /// assert!(!a.accepted);
    /// ```
    pub fn failed(agent: impl Into<String>, error: impl Into<String>) -> Self {
        Answer {
            agent: agent.into(),
            text: None,
            error: Some(error.into()),
            accepted: false,
        }
    }
}

/// What an agent is given of the team's conversation when it runs (see [the module](self)).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::View;
/// assert_eq!(View::default(), View::Transcript);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum View {
    /// The user's messages and the agents' answers, without tool calls or results, then its
    /// task.
    #[default]
    Transcript,
    /// Its task alone (the last user message when it has none).
    Task,
    /// The team's messages as they are, then its task.
    Everything,
}

/// What an agent adds to the team's conversation when it is done.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::Report;
/// assert_eq!(Report::default(), Report::Answer);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// Its last text, as an assistant message named after it: its tool calls stay in its
    /// own run.
    #[default]
    Answer,
    /// Every message of its run (tool calls with their results, its answers), its assistant
    /// messages named after it: agents with [`View::Everything`] see them.
    Everything,
}

/// An agent of a team: a name, a description (offered to a supervisor's model and in the
/// handoff tools), the [`Agent`] itself, what it sees and what it reports.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_nodes::agent::Agent;
/// use agentgraph_nodes::patterns::{Member, Report, View};
/// # use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
/// # #[derive(Debug)] struct M;
/// # impl ChatModel for M {
/// #     fn model(&self) -> &str { "m" }
/// #     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> { unimplemented!() }
/// # }
/// let searcher = Member::new("searcher", Agent::new(Arc::new(M)))
///     .description("Searches the web.")
///     .sees(View::Task)
///     .reports(Report::Everything);
/// assert_eq!(searcher.name(), "searcher");
/// ```
#[derive(Debug, Clone)]
pub struct Member {
    name: String,
    description: String,
    agent: Agent,
    view: View,
    report: Report,
}

impl Member {
    /// A member named `name` (see [the module](self) for the names allowed) running `agent`,
    /// seeing the [`View::Transcript`] and reporting its [`Report::Answer`].
    ///
    /// # Examples
    ///
    /// See [`Member`].
    pub fn new(name: impl Into<String>, agent: Agent) -> Self {
        Member {
            name: name.into(),
            description: String::new(),
            agent,
            view: View::default(),
            report: Report::default(),
        }
    }

    /// What the member does (for the supervisor's model and the handoff tools).
    ///
    /// # Examples
    ///
    /// See [`Member`].
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// What it sees when it runs.
    ///
    /// # Examples
    ///
    /// See [`Member`].
    #[must_use]
    pub fn sees(mut self, view: View) -> Self {
        self.view = view;
        self
    }

    /// What it adds to the team's conversation.
    ///
    /// # Examples
    ///
    /// See [`Member`].
    #[must_use]
    pub fn reports(mut self, report: Report) -> Self {
        self.report = report;
        self
    }

    /// Its name.
    ///
    /// # Examples
    ///
    /// See [`Member`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The agent's input: what it sees of `state`, then `task` as a user message (from
    /// `from`, when given).
    fn input(&self, state: &TeamState, task: Option<(&str, &str)>) -> AgentState {
        let mut messages = match self.view {
            View::Transcript => transcript(&state.messages),
            View::Everything => state.messages.clone(),
            View::Task => match task {
                Some(_) => Vec::new(),
                None => state
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .cloned()
                    .into_iter()
                    .collect(),
            },
        };
        if let Some((from, task)) = task {
            let mut m = Message::user(task);
            if !from.is_empty() {
                m = m.with_name(from);
            }
            messages.push(m);
        }
        // Marks where the input ends: what follows in the agent's final state is its run's.
        if let Some(last) = messages.last_mut() {
            last.id.push_str(INPUT_END);
        }
        AgentState::from_messages(messages)
    }

    /// What the agent adds to the team's messages after its run (`done`): its run's
    /// messages, as its [`Report`] says.
    fn report(&self, done: &AgentState) -> Vec<Message> {
        let new = run_messages(&done.messages);
        match self.report {
            Report::Answer => last_text(new)
                .map(|text| vec![Message::assistant(text).with_name(&self.name)])
                .unwrap_or_default(),
            Report::Everything => new
                .iter()
                .map(|m| match m.role {
                    Role::Assistant { .. } => m.clone().with_name(&self.name),
                    _ => m.clone(),
                })
                .collect(),
        }
    }
}

/// The errors of the patterns: a team that cannot be built, and the errors their nodes fail
/// a run with.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::PatternError;
/// let e = PatternError::InvalidName { name: "a b".into() };
/// assert_eq!(e.to_string(), "agent name `a b` is not 1 to 64 characters of A-Z a-z 0-9 _ -: rename the agent");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// An agent's name is not allowed.
    #[error("agent name `{name}` is not 1 to 64 characters of A-Z a-z 0-9 _ -: rename the agent")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// Two agents of a team have the same name, or an agent has a name the pattern uses.
    #[error(
        "agent name `{name}` is used twice, or reserved by the pattern: give each agent a name of its own"
    )]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// The team has no agent.
    #[error("the team has no agent: add one before compiling")]
    NoAgents,
    /// The graph does not compile (a bug of the pattern, or a name it cannot use).
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A supervisor handed a task to an agent that is not one of its workers, or a swarm's
    /// default agent or handoff names an agent it does not have.
    #[error("`{name}` is not an agent of the team: add it, or hand over to one of its agents")]
    UnknownWorker {
        /// The name.
        name: String,
    },
    /// A supervisor made its `limit` rounds of handoffs in this turn without finishing.
    #[error(
        "the supervisor made its {limit} rounds of this turn without finishing: raise `max_rounds`, or resume with a new user message"
    )]
    RoundLimit {
        /// The limit.
        limit: u32,
    },
    /// Every agent of a fallback chain failed or gave an answer its check refused.
    #[error(
        "no agent of the fallback chain gave an accepted answer ({attempts} tried; `TeamState::answers` says why each was refused)"
    )]
    NoAcceptedAnswer {
        /// How many agents were tried.
        attempts: usize,
    },
    /// An ensemble or the planners have no answer to aggregate.
    #[error(
        "no agent answered (every run failed or said nothing; `TeamState::answers` holds their errors)"
    )]
    NoAnswers,
}

/// Checks the names of a team's members (and the names the pattern reserves).
fn check_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    reserved: &[&str],
) -> Result<(), PatternError> {
    let mut seen: Vec<&str> = reserved.to_vec();
    let mut any = false;
    for name in names {
        any = true;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(PatternError::InvalidName { name: name.into() });
        }
        if seen.contains(&name) {
            return Err(PatternError::DuplicateName { name: name.into() });
        }
        seen.push(name);
    }
    if any {
        Ok(())
    } else {
        Err(PatternError::NoAgents)
    }
}

/// The conversation without tool calls and results: the user's messages and the assistants'
/// texts (an assistant message with calls keeps its text, without them). What
/// [`View::Transcript`] gives an agent; it never holds an unanswered call.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::message::{Message, ToolCall};
/// use agentgraph_nodes::patterns::transcript;
///
/// let history = vec![
///     Message::user("weather in Oslo?"),
///     Message::assistant("").with_tool_calls([ToolCall::new("c1", "weather", serde_json::json!({}))]),
///     Message::tool_result("c1", "-3°C"),
///     Message::assistant("It is -3°C.").with_name("weather"),
/// ];
/// let seen = transcript(&history);
/// assert_eq!(seen.len(), 2);
/// assert_eq!(seen[1].text(), Some("It is -3°C."));
/// assert!(agentgraph_nodes::messages::ensure_answered(&seen).is_ok());
/// ```
pub fn transcript(messages: &[Message]) -> Vec<Message> {
    messages
        .iter()
        .filter_map(|m| match &m.role {
            Role::User => Some(m.clone()),
            Role::Assistant { tool_calls } if tool_calls.is_empty() => {
                (!m.content.is_empty()).then(|| m.clone())
            }
            Role::Assistant { .. } => {
                let text = m.content.to_text();
                (!text.trim().is_empty()).then(|| {
                    let mut kept = Message::assistant(m.content.clone()).with_id(m.id.clone());
                    kept.name = m.name.clone();
                    kept
                })
            }
            _ => None,
        })
        .collect()
}

/// An agent's answer in the team's messages: an assistant message with text and a name,
/// without tool calls.
fn is_answer(m: &Message) -> bool {
    matches!(&m.role, Role::Assistant { tool_calls } if tool_calls.is_empty())
        && m.name.is_some()
        && !m.content.is_empty()
}

/// The messages an agent's run added: those after the last user message of its history.
fn new_messages(messages: &[Message]) -> &[Message] {
    let start = messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .map_or(0, |i| i + 1);
    &messages[start..]
}

/// The suffix of the id of the last message [`Member::input`] gives an agent.
const INPUT_END: &str = "#input-end";

/// The messages an agent's run added to its input (see [`Member::input`]).
fn run_messages(messages: &[Message]) -> &[Message] {
    match messages.iter().rposition(|m| m.id.ends_with(INPUT_END)) {
        Some(i) => &messages[i + 1..],
        None => new_messages(messages),
    }
}

/// The last non-empty text of these messages' assistant messages.
fn last_text(messages: &[Message]) -> Option<String> {
    messages.iter().rev().find_map(|m| match m.role {
        Role::Assistant { .. } => {
            let text = m.content.to_text();
            (!text.trim().is_empty()).then(|| text.into_owned())
        }
        _ => None,
    })
}

/// The handoff record of the team's messages: `from`'s assistant message calling
/// `transfer_to_<to>` for each handoff, and each call's result, in one update.
fn handoff_messages(from: &str, handoffs: &mut [Handoff]) -> Vec<Message> {
    let calls: Vec<ToolCall> = handoffs
        .iter_mut()
        .map(|h| {
            h.from = from.to_owned();
            if h.call_id.is_empty() {
                h.call_id = format!("handoff-{}", crate::message::new_id());
            }
            ToolCall::new(
                h.call_id.clone(),
                format!("{HANDOFF_PREFIX}{}", h.to),
                serde_json::json!({ "task": h.task }),
            )
        })
        .collect();
    let mut out = vec![
        Message::assistant("")
            .with_name(from)
            .with_tool_calls(calls),
    ];
    out.extend(
        handoffs
            .iter()
            .map(|h| Message::tool_result(h.call_id.clone(), format!("Transferred to {}.", h.to))),
    );
    out
}

/// The handoff calls made since the last user message, by anyone.
fn handoffs_in_turn(messages: &[Message]) -> usize {
    new_messages(messages)
        .iter()
        .flat_map(Message::tool_calls)
        .filter(|c| c.name.starts_with(HANDOFF_PREFIX))
        .count()
}
