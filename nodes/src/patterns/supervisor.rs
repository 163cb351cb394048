//! The supervisor: one node deciding, each round, which workers get a task, or that the work
//! is done.

use std::fmt;
use std::sync::Arc;

use agentgraph_engine::{
    BoxError, Command, CompiledGraph, Context, END, GraphBuilder, Route, START,
};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{
    HANDOFF_PREFIX, Handoff, Member, PatternError, TeamState, TeamStateUpdate, check_names,
    handoff_messages,
};
use crate::message::Message;
use crate::model::{ChatModel, ChatRequest, ChatResponse, ToolSpec, model_node};

type Rule = Arc<dyn Fn(&TeamState) -> Decision + Send + Sync>;

/// How the supervisor decides.
#[derive(Clone)]
enum Kind {
    Rule(Rule),
    Model(Arc<dyn ChatModel>),
    User,
}

/// What a supervisor decides in a round: hand tasks to workers (several at once run in
/// parallel, and the supervisor decides again when all of them are done), or finish, with a
/// last word or none.
///
/// In JSON (the answer to a [`WorkerChoice`] interrupt): `{"handoff": [{"to": "searcher",
/// "task": ".."}]}` or `{"finish": "done"}` (`{"finish": null}` for no last word).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::{Decision, Handoff};
/// let d: Decision = serde_json::from_value(serde_json::json!({
///     "handoff": [{ "to": "searcher", "task": "Find it." }]
/// })).unwrap();
/// assert_eq!(d, Decision::handoff(Handoff::new("searcher", "Find it.")));
/// assert_eq!(Decision::finish(), Decision::Finish(None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// These tasks, each to its worker, in parallel.
    Handoff(Vec<Handoff>),
    /// The work is done; the text, if any, is the supervisor's last message.
    Finish(Option<String>),
}

impl Decision {
    /// One task for one worker.
    ///
    /// # Examples
    ///
    /// See [`Decision`].
    pub fn handoff(handoff: Handoff) -> Self {
        Decision::Handoff(vec![handoff])
    }

    /// Tasks for several workers at once (a parallel handoff).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::patterns::{Decision, Handoff};
    /// let d = Decision::parallel([Handoff::new("a", "x"), Handoff::new("b", "y")]);
    /// assert!(matches!(d, Decision::Handoff(h) if h.len() == 2));
    /// ```
    pub fn parallel(handoffs: impl IntoIterator<Item = Handoff>) -> Self {
        Decision::Handoff(handoffs.into_iter().collect())
    }

    /// Done, without a last word.
    ///
    /// # Examples
    ///
    /// See [`Decision`].
    pub fn finish() -> Self {
        Decision::Finish(None)
    }

    /// Done, with a last word.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::patterns::Decision;
    /// assert_eq!(Decision::finish_with("ok"), Decision::Finish(Some("ok".into())));
    /// ```
    pub fn finish_with(text: impl Into<String>) -> Self {
        Decision::Finish(Some(text.into()))
    }
}

/// What a supervisor that lets the user choose ([`Supervisor::user_choice`]) interrupts with:
/// the workers (name, description) and the conversation's last answer. The answer is a
/// [`Decision`].
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::WorkerChoice;
/// let c: WorkerChoice = serde_json::from_value(serde_json::json!({
///     "kind": "choose_worker", "workers": [["searcher", "Searches."]], "last": null
/// })).unwrap();
/// assert_eq!(c.workers[0].0, "searcher");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerChoice {
    /// Always `choose_worker`.
    pub kind: String,
    /// The workers: (name, description).
    pub workers: Vec<(String, String)>,
    /// The text of the last message, if any.
    pub last: Option<String>,
}

/// A supervisor and its workers: each round the supervisor hands tasks to one worker or
/// several (they run in parallel, as tasks of one step), the workers report back, and the
/// supervisor decides again, until it finishes. [`compile`](Supervisor::compile) makes the
/// graph:
///
/// ```text
/// START ─▶ supervisor ─(go-to)─▶ worker ─▶ supervisor ─▶ … ─▶ END
///                    └────────▶ worker ─┘   (parallel workers: the supervisor runs once after both)
/// ```
///
/// The supervisor decides by a rule ([`Supervisor::rule`]: routing by intent, as code), by a
/// model ([`Supervisor::model`]: it calls `transfer_to_<worker>` tools, one call per worker it
/// hands a task to, and answers without a tool call when the work is done), or by asking the
/// user ([`Supervisor::user_choice`]: an interrupt answered with a [`Decision`]).
///
/// **What each one sees.** A worker gets its [`View`](super::View) of the team's messages and
/// its task (by default the user's messages and the agents' answers, no tool calls). The
/// supervisor's model gets the team's messages: the user's, its own handoff calls each with
/// its result (`Transferred to …`, added with the call, so no call is ever left unanswered
/// across a handoff), and the workers' answers (named after them). Workers run as subgraphs:
/// their tool calls and results stay in their own runs.
///
/// **Limits.** At most [`max_rounds`](Supervisor::max_rounds) rounds of handoffs per turn
/// (10 by default), then the run fails with [`PatternError::RoundLimit`]; a handoff to an
/// unknown worker fails it with [`PatternError::UnknownWorker`] (a model's call of an
/// unknown tool is answered with an error and the model asked again).
///
/// # Examples
///
/// Routing by intent with a rule, on a thread (see [the module](super) for a two-worker
/// round trip):
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_checkpoint::MemoryStore;
/// use agentgraph_engine::RunConfig;
/// use agentgraph_nodes::agent::Agent;
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
/// use agentgraph_nodes::patterns::{Decision, Handoff, Member, Supervisor, TeamState, TeamStateUpdate};
/// use agentgraph_nodes::Message;
///
/// #[derive(Debug)]
/// struct Says(&'static str);
/// impl ChatModel for Says {
///     fn model(&self) -> &str { self.0 }
///     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> {
///         Box::pin(async move { Ok(ChatResponse::new(Message::assistant(self.0))) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let graph = Supervisor::rule(|s: &TeamState| {
///     if s.answers_in_turn().next().is_some() {
///         return Decision::finish();
///     }
///     let asked = s.messages.last().and_then(Message::text).unwrap_or("");
///     let to = if asked.contains("invoice") { "billing" } else { "support" };
///     Decision::handoff(Handoff::new(to, asked))
/// })
/// .worker(Member::new("billing", Agent::new(Arc::new(Says("Invoice resent.")))))
/// .worker(Member::new("support", Agent::new(Arc::new(Says("Try turning it off and on.")))))
/// .compile()?;
///
/// let store = MemoryStore::new();
/// let ask = |text: &str| TeamStateUpdate::new().messages(vec![Message::user(text)]);
/// let s = graph.invoke_thread("t", ask("Where is my invoice?"), RunConfig::new().store(store.clone())).await?;
/// assert_eq!(s.last_speaker(), Some("billing"));
/// let s = graph.invoke_thread("t", ask("The app crashes."), RunConfig::new().store(store)).await?;
/// assert_eq!(s.answers_in_turn().next().unwrap().text(), Some("Try turning it off and on."));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Supervisor {
    kind: Kind,
    name: String,
    workers: Vec<Member>,
    max_rounds: u32,
    system: Option<String>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Rule(_) => "rule".to_owned(),
            Kind::Model(m) => format!("model {}", m.model()),
            Kind::User => "user".to_owned(),
        };
        f.debug_struct("Supervisor")
            .field("kind", &kind)
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("max_rounds", &self.max_rounds)
            .finish()
    }
}

impl Supervisor {
    /// The default of [`max_rounds`](Supervisor::max_rounds).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::patterns::Supervisor::DEFAULT_MAX_ROUNDS, 10);
    /// ```
    pub const DEFAULT_MAX_ROUNDS: u32 = 10;

    fn with_kind(kind: Kind) -> Self {
        Supervisor {
            kind,
            name: "supervisor".into(),
            workers: Vec::new(),
            max_rounds: Self::DEFAULT_MAX_ROUNDS,
            system: None,
        }
    }

    /// A supervisor deciding by `rule`, from the state (its messages, the last speaker, the
    /// answers of this turn).
    ///
    /// # Examples
    ///
    /// See [`Supervisor`].
    pub fn rule(rule: impl Fn(&TeamState) -> Decision + Send + Sync + 'static) -> Self {
        Self::with_kind(Kind::Rule(Arc::new(rule)))
    }

    /// A supervisor deciding with a model: it is offered one `transfer_to_<worker>` tool per
    /// worker (argument `task`), calls one or several to hand tasks over, and answers without
    /// a tool call when the work is done (its text is the team's answer). Its system prompt
    /// lists the workers and their descriptions unless [`system_prompt`](Supervisor::system_prompt)
    /// gives one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentgraph_nodes::agent::Agent;
    /// use agentgraph_nodes::message::{Message, ToolCall};
    /// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
    /// use agentgraph_nodes::patterns::{Member, Supervisor, TeamState};
    ///
    /// /// Hands the question to `math` once, then repeats its answer.
    /// #[derive(Debug)]
    /// struct Boss;
    /// impl ChatModel for Boss {
    ///     fn model(&self) -> &str { "boss" }
    ///     fn chat(&self, request: ChatRequest) -> ChatFuture<'_> {
    ///         Box::pin(async move {
    ///             request.check()?; // no unanswered tool call in what the supervisor sees
    ///             let last = request.messages.last().unwrap();
    ///             Ok(ChatResponse::new(match last.name.as_deref() {
    ///                 Some("math") => Message::assistant(format!("Math says {}", last.content.to_text())),
    ///                 _ => Message::assistant("").with_tool_calls([ToolCall::new(
    ///                     "h1", "transfer_to_math", serde_json::json!({ "task": "2+2" }),
    ///                 )]),
    ///             }))
    ///         })
    ///     }
    /// }
    /// #[derive(Debug)]
    /// struct Four;
    /// impl ChatModel for Four {
    ///     fn model(&self) -> &str { "four" }
    ///     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> {
    ///         Box::pin(async { Ok(ChatResponse::new(Message::assistant("4"))) })
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let graph = Supervisor::model(Arc::new(Boss))
    ///     .worker(Member::new("math", Agent::new(Arc::new(Four))).description("Does sums."))
    ///     .compile()?;
    /// let done = graph.invoke(TeamState::from_messages([Message::user("2+2?")])).await?;
    /// assert_eq!(done.messages.last().unwrap().text(), Some("Math says 4"));
    /// // user, the handoff call, its result, math's answer, the supervisor's answer
    /// assert_eq!(done.messages.len(), 5);
    /// # Ok(()) }
    /// ```
    pub fn model(model: Arc<dyn ChatModel>) -> Self {
        Self::with_kind(Kind::Model(model))
    }

    /// A supervisor that asks the user which workers get which task: each round interrupts
    /// with a [`WorkerChoice`]; resume with a [`Decision`] (as JSON).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentgraph_checkpoint::MemoryStore;
    /// use agentgraph_engine::{Error, Resume, RunConfig};
    /// use agentgraph_nodes::agent::Agent;
    /// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
    /// use agentgraph_nodes::patterns::{Decision, Handoff, Member, Supervisor, TeamState};
    /// use agentgraph_nodes::Message;
    /// # #[derive(Debug)] struct Hi;
    /// # impl ChatModel for Hi {
    /// #     fn model(&self) -> &str { "hi" }
    /// #     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> {
    /// #         Box::pin(async { Ok(ChatResponse::new(Message::assistant("hi!"))) })
    /// #     }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let graph = Supervisor::user_choice()
    ///     .worker(Member::new("greeter", Agent::new(Arc::new(Hi))))
    ///     .compile()?;
    /// let config = RunConfig::new().store(MemoryStore::new()).run_id("r");
    /// let start = TeamState::from_messages([Message::user("hello")]);
    /// let Err(Error::Interrupted(_)) = graph.run_with(start, config.clone()).await else { panic!() };
    /// let pick = Decision::handoff(Handoff::new("greeter", "Say hi."));
    /// let Err(Error::Interrupted(_)) = graph.resume_with("r", Resume::value(pick), config.clone()).await else { panic!() };
    /// let done = graph.resume_with("r", Resume::value(Decision::finish()), config).await?;
    /// assert_eq!(done.last_speaker(), Some("greeter"));
    /// # Ok(()) }
    /// ```
    pub fn user_choice() -> Self {
        Self::with_kind(Kind::User)
    }

    /// Adds a worker.
    ///
    /// # Examples
    ///
    /// See [`Supervisor`].
    #[must_use]
    pub fn worker(mut self, worker: Member) -> Self {
        self.workers.push(worker);
        self
    }

    /// The supervisor's name: its node's, and the name on its messages (`supervisor` by
    /// default).
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_nodes::patterns::{Decision, Supervisor};
    /// let s = Supervisor::rule(|_| Decision::finish()).named("lead");
    /// assert!(format!("{s:?}").contains("lead"));
    /// ```
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// At most `rounds` rounds of handoffs per turn (a turn starts with a user message).
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_nodes::patterns::{Decision, Supervisor};
    /// let s = Supervisor::rule(|_| Decision::finish()).max_rounds(3);
    /// assert!(format!("{s:?}").contains("max_rounds: 3"));
    /// ```
    #[must_use]
    pub fn max_rounds(mut self, rounds: u32) -> Self {
        self.max_rounds = rounds;
        self
    }

    /// The system prompt of a model supervisor, instead of the one listing the workers.
    ///
    /// # Examples
    ///
    /// ```
    /// # use agentgraph_nodes::patterns::{Decision, Supervisor};
    /// let s = Supervisor::rule(|_| Decision::finish()).system_prompt("Delegate everything.");
    /// # drop(s);
    /// ```
    #[must_use]
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system = Some(prompt.into());
        self
    }

    /// The graph: the supervisor node (named after the supervisor) and one subgraph node per
    /// worker (named after it).
    ///
    /// # Errors
    ///
    /// [`PatternError::InvalidName`], [`PatternError::DuplicateName`] (a worker named as the
    /// supervisor too), [`PatternError::NoAgents`].
    ///
    /// # Examples
    ///
    /// See [`Supervisor`].
    pub fn compile(&self) -> Result<CompiledGraph<TeamState>, PatternError> {
        check_names(
            self.workers
                .iter()
                .map(Member::name)
                .chain([self.name.as_str()]),
            &[],
        )?;
        let sup = Arc::new(self.clone());
        let mut b = GraphBuilder::<TeamState>::new();
        let name = self.name.clone();
        let mut targets: Vec<&str> = self.workers.iter().map(Member::name).collect();
        targets.extend([name.as_str(), END]);
        b.try_add_node(name.clone(), supervise(sup))?;
        for worker in &self.workers {
            let (input, output) = (Arc::new(worker.clone()), Arc::new(worker.clone()));
            let graph = worker.agent.compile()?;
            b.try_add_subgraph(
                worker.name.clone(),
                graph,
                move |s: &TeamState| {
                    let task = s.handoffs.iter().find(|h| h.to == input.name);
                    input.input(s, task.map(|h| (h.from.as_str(), h.task.as_str())))
                },
                move |done| TeamStateUpdate::new().messages(output.report(&done)),
            )?;
        }
        b.try_add_edge(START, &name)?
            .try_add_goto_edges(&name, targets)?;
        for worker in &self.workers {
            b.try_add_edge(&worker.name, &name)?;
        }
        Ok(b.compile()?)
    }

    /// The rounds of handoffs of this turn so far: the supervisor's messages with tool calls
    /// since the last user message.
    fn rounds(&self, messages: &[Message]) -> u32 {
        super::new_messages(messages)
            .iter()
            .filter(|m| m.name.as_deref() == Some(self.name.as_str()) && !m.tool_calls().is_empty())
            .count() as u32
    }

    /// The request of a model supervisor.
    fn request(&self, state: &TeamState) -> ChatRequest {
        let system = self.system.clone().unwrap_or_else(|| {
            let mut s = String::from(
                "You are a supervisor of a team of workers. Hand each task to the worker \
                 suited to it by calling its transfer tool with the task; call several to \
                 have them work in parallel. When their answers are enough, answer the user \
                 yourself, without calling a tool.\nWorkers:",
            );
            for w in &self.workers {
                s.push_str(&format!("\n- {}: {}", w.name, w.description));
            }
            s
        });
        let mut request = ChatRequest::new(
            std::iter::once(Message::system(system)).chain(state.messages.iter().cloned()),
        );
        for w in &self.workers {
            let description = if w.description.is_empty() {
                format!("Hands a task to {}.", w.name)
            } else {
                format!("Hands a task to {}: {}", w.name, w.description)
            };
            request = request.tool(ToolSpec::new(
                format!("{HANDOFF_PREFIX}{}", w.name),
                description,
                serde_json::json!({
                    "type": "object",
                    "properties": { "task": { "type": "string", "description": "What the worker should do." } },
                    "required": ["task"],
                }),
            ));
        }
        request
    }
}

type Node = Arc<
    dyn Fn(Arc<TeamState>, Context) -> BoxFuture<'static, Result<ChatResponse, BoxError>>
        + Send
        + Sync,
>;

/// The supervisor's node.
fn supervise(
    sup: Arc<Supervisor>,
) -> impl Fn(Arc<TeamState>, Context) -> BoxFuture<'static, Result<Command<TeamState>, BoxError>>
+ Send
+ Sync
+ 'static {
    let call: Option<Node> = match &sup.kind {
        Kind::Model(model) => {
            let s = sup.clone();
            Some(Arc::new(model_node(
                model.clone(),
                move |state: &TeamState| s.request(state),
                |_, r: ChatResponse| r,
            )))
        }
        _ => None,
    };
    move |state: Arc<TeamState>, ctx: Context| {
        let sup = sup.clone();
        let call = call.clone();
        Box::pin(async move {
            let mut recorded = Vec::new();
            let decision = match (&sup.kind, call) {
                (Kind::Rule(rule), _) => rule(&state),
                (Kind::User, _) => {
                    let choice = WorkerChoice {
                        kind: "choose_worker".into(),
                        workers: sup
                            .workers
                            .iter()
                            .map(|w| (w.name.clone(), w.description.clone()))
                            .collect(),
                        last: state
                            .messages
                            .last()
                            .map(|m| m.content.to_text().into_owned()),
                    };
                    ctx.interrupt::<_, Decision>(&choice)?
                }
                (Kind::Model(_), Some(call)) => {
                    let response = call(state.clone(), ctx.clone()).await?;
                    match model_decision(&sup, response.message) {
                        Parsed::Decided(d) => d,
                        Parsed::Handoff(message, handoffs) => {
                            recorded.push(message);
                            Decision::Handoff(handoffs)
                        }
                        Parsed::Again(messages) => {
                            // Only unknown tools were called: answer them, ask again.
                            if sup.rounds(&state.messages) + 1 > sup.max_rounds {
                                return Err(PatternError::RoundLimit {
                                    limit: sup.max_rounds,
                                }
                                .into());
                            }
                            return Ok(Command::new(TeamStateUpdate::new().messages(messages))
                                .goto(Route::to([sup.name.clone()])));
                        }
                    }
                }
                (Kind::Model(_), None) => unreachable!("a model supervisor has its call"),
            };
            decide(&sup, &state, decision, recorded)
        }) as BoxFuture<'static, _>
    }
}

/// What a model supervisor's answer says.
enum Parsed {
    /// Finish (no tool call).
    Decided(Decision),
    /// Handoffs: the model's message (with its calls) and the tasks, answered by `decide`.
    Handoff(Message, Vec<Handoff>),
    /// Only calls of unknown tools: the message and their error results.
    Again(Vec<Message>),
}

fn model_decision(sup: &Supervisor, message: Message) -> Parsed {
    let calls = message.tool_calls().to_vec();
    if calls.is_empty() {
        let text = message.content.to_text();
        let text = (!text.trim().is_empty()).then(|| text.into_owned());
        return Parsed::Decided(Decision::Finish(text));
    }
    let message = message.with_name(&sup.name);
    let mut handoffs = Vec::new();
    let mut errors = Vec::new();
    for call in &calls {
        let worker = call
            .name
            .strip_prefix(HANDOFF_PREFIX)
            .filter(|w| sup.workers.iter().any(|m| m.name == *w));
        match worker {
            Some(worker) => {
                let task = call
                    .arguments
                    .as_json()
                    .and_then(|a| a.get("task"))
                    .and_then(|t| t.as_str())
                    .unwrap_or_default();
                let mut h = Handoff::new(worker, task);
                h.call_id = call.id.clone();
                handoffs.push(h);
            }
            None => errors.push(
                Message::tool_error(
                    call.id.clone(),
                    format!(
                        "there is no tool `{}`: hand tasks over with the transfer_to_ tools",
                        call.name
                    ),
                )
                .with_name(call.name.clone()),
            ),
        }
    }
    if handoffs.is_empty() {
        let mut out = vec![message];
        out.extend(errors);
        return Parsed::Again(out);
    }
    // `decide` answers every call, the unknown ones with an error.
    Parsed::Handoff(message, handoffs)
}

/// Applies a decision: the handoff record and the go-to to the workers, or the last word
/// and `END`.
fn decide(
    sup: &Supervisor,
    state: &TeamState,
    decision: Decision,
    mut recorded: Vec<Message>,
) -> Result<Command<TeamState>, BoxError> {
    let handoffs = match decision {
        Decision::Handoff(h) if !h.is_empty() => h,
        Decision::Handoff(_) | Decision::Finish(None) => {
            return Ok(Command::new(TeamStateUpdate::new().handoffs(Vec::new())).goto(END));
        }
        Decision::Finish(Some(text)) => {
            let last = Message::assistant(text).with_name(&sup.name);
            return Ok(Command::new(
                TeamStateUpdate::new()
                    .messages(vec![last])
                    .handoffs(Vec::new())
                    .active(Some(sup.name.clone())),
            )
            .goto(END));
        }
    };
    if sup.rounds(&state.messages) >= sup.max_rounds {
        return Err(PatternError::RoundLimit {
            limit: sup.max_rounds,
        }
        .into());
    }
    // One task per worker: several for the same one are joined.
    let mut merged: Vec<Handoff> = Vec::new();
    for h in handoffs {
        if !sup.workers.iter().any(|w| w.name == h.to) {
            return Err(PatternError::UnknownWorker { name: h.to }.into());
        }
        match merged.iter_mut().find(|m| m.to == h.to) {
            Some(m) => {
                m.task.push('\n');
                m.task.push_str(&h.task);
            }
            None => merged.push(h),
        }
    }
    let messages = match recorded.pop() {
        // A model's own calls: answer each of them.
        Some(call) => {
            let mut out = vec![call.clone()];
            out.extend(call.tool_calls().iter().map(
                |c| match c.name.strip_prefix(HANDOFF_PREFIX) {
                    Some(to) if sup.workers.iter().any(|w| w.name == to) => {
                        Message::tool_result(c.id.clone(), format!("Transferred to {to}."))
                    }
                    _ => {
                        Message::tool_error(c.id.clone(), format!("there is no tool `{}`", c.name))
                    }
                },
            ));
            for h in &mut merged {
                h.from = sup.name.clone();
            }
            out
        }
        None => handoff_messages(&sup.name, &mut merged),
    };
    let targets: Vec<String> = merged.iter().map(|h| h.to.clone()).collect();
    Ok(Command::new(
        TeamStateUpdate::new()
            .messages(messages)
            .handoffs(merged)
            .active(Some(sup.name.clone())),
    )
    .goto(Route::to(targets)))
}
