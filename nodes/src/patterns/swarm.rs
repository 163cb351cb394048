//! The swarm: agents handing the conversation to each other with handoff tools.

use std::sync::Arc;

use agentgraph_engine::{CompiledGraph, END, GraphBuilder, Route, START};
use serde::Deserialize;

use super::{
    HANDOFF_PREFIX, Handoff, Member, PatternError, TeamState, TeamStateUpdate, check_names,
    handoff_messages, handoffs_in_turn, run_messages,
};
use crate::agent::AgentState;
use crate::message::{Message, Role};
use crate::tool::tool_fn;

/// The arguments of a handoff tool.
#[derive(Deserialize, schemars::JsonSchema)]
struct Note {
    /// What the next agent should know or do.
    #[serde(default)]
    message: String,
}

/// A swarm: agents that hand the conversation to each other. Each agent is offered a
/// `transfer_to_<agent>` tool per agent it may hand over to (argument `message`, a note for
/// it); calling one ends its turn, and the other agent goes on in the same run (a go-to).
/// The agent that spoke last is the thread's [`TeamState::active`] agent: the next user
/// message (the thread's next invocation) goes to it; the first one goes to the default
/// agent (the first added, or [`default_agent`](Swarm::default_agent)).
///
/// ```text
/// START ─(the active agent)─▶ triage ─(transfer_to_billing)─▶ billing ─▶ END
/// ```
///
/// **What each one sees.** An agent gets its [`View`](super::View) of the team's messages
/// (by default the user's messages and the agents' answers, without tool calls), and, when it
/// was handed the conversation, the note as a user message named after the agent handing
/// over. The handoff itself is recorded in the team's messages as the sender's
/// `transfer_to_…` call with its result (so no call is ever left without one); the sender's
/// other tool calls stay in its own run unless it [reports](super::Report) them.
///
/// **Limits.** At most [`max_handoffs`](Swarm::max_handoffs) handoffs per turn (8 by
/// default): a handoff beyond is recorded (and the receiver made active for the next turn)
/// but not followed, and the turn ends.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_checkpoint::MemoryStore;
/// use agentgraph_engine::RunConfig;
/// use agentgraph_nodes::agent::Agent;
/// use agentgraph_nodes::message::{Message, ToolCall};
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
/// use agentgraph_nodes::patterns::{Member, Swarm, TeamStateUpdate};
///
/// /// Hands anything about money to `billing`.
/// #[derive(Debug)]
/// struct Triage;
/// impl ChatModel for Triage {
///     fn model(&self) -> &str { "triage" }
///     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> {
///         Box::pin(async {
///             Ok(ChatResponse::new(Message::assistant("").with_tool_calls([ToolCall::new(
///                 "t1", "transfer_to_billing", serde_json::json!({ "message": "refund" }),
///             )])))
///         })
///     }
/// }
/// #[derive(Debug)]
/// struct Billing;
/// impl ChatModel for Billing {
///     fn model(&self) -> &str { "billing" }
///     fn chat(&self, r: ChatRequest) -> ChatFuture<'_> {
///         let n = r.messages.iter().filter(|m| m.role == agentgraph_nodes::message::Role::User).count();
///         Box::pin(async move { Ok(ChatResponse::new(Message::assistant(format!("billing, message {n}")))) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let graph = Swarm::new()
///     .agent(Member::new("triage", Agent::new(Arc::new(Triage))))
///     .agent(Member::new("billing", Agent::new(Arc::new(Billing))).description("Refunds."))
///     .compile()?;
/// let store = MemoryStore::new();
/// let say = |t: &str| TeamStateUpdate::new().messages(vec![Message::user(t)]);
///
/// let s = graph.invoke_thread("chat", say("My money back!"), RunConfig::new().store(store.clone())).await?;
/// assert_eq!(s.active.as_deref(), Some("billing"));
/// // The next message goes straight to billing: triage is not asked again.
/// let s = graph.invoke_thread("chat", say("Thanks."), RunConfig::new().store(store)).await?;
/// assert_eq!(s.messages.last().unwrap().name.as_deref(), Some("billing"));
/// assert_eq!(s.messages.last().unwrap().text(), Some("billing, message 2"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Swarm {
    agents: Vec<Member>,
    default: Option<String>,
    max_handoffs: Option<u32>,
    routes: Vec<(String, Vec<String>)>,
}

impl Swarm {
    /// The default of [`max_handoffs`](Swarm::max_handoffs).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(agentgraph_nodes::patterns::Swarm::DEFAULT_MAX_HANDOFFS, 8);
    /// ```
    pub const DEFAULT_MAX_HANDOFFS: u32 = 8;

    /// An empty swarm.
    ///
    /// # Examples
    ///
    /// See [`Swarm`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an agent; the first one added is the default agent.
    ///
    /// # Examples
    ///
    /// See [`Swarm`].
    #[must_use]
    pub fn agent(mut self, agent: Member) -> Self {
        self.agents.push(agent);
        self
    }

    /// The agent a thread's first message goes to.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = agentgraph_nodes::patterns::Swarm::new().default_agent("triage");
    /// assert!(format!("{s:?}").contains("triage"));
    /// ```
    #[must_use]
    pub fn default_agent(mut self, name: impl Into<String>) -> Self {
        self.default = Some(name.into());
        self
    }

    /// The agents `from` may hand over to (all the others by default).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = agentgraph_nodes::patterns::Swarm::new().handoffs("triage", ["billing", "support"]);
    /// assert!(format!("{s:?}").contains("support"));
    /// ```
    #[must_use]
    pub fn handoffs<I, T>(mut self, from: impl Into<String>, to: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.routes
            .push((from.into(), to.into_iter().map(Into::into).collect()));
        self
    }

    /// At most `handoffs` handoffs per turn.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = agentgraph_nodes::patterns::Swarm::new().max_handoffs(2);
    /// assert!(format!("{s:?}").contains("Some(2)"));
    /// ```
    #[must_use]
    pub fn max_handoffs(mut self, handoffs: u32) -> Self {
        self.max_handoffs = Some(handoffs);
        self
    }

    /// The agents `from` may hand over to.
    fn targets(&self, from: &str) -> Vec<String> {
        match self.routes.iter().rev().find(|(f, _)| f == from) {
            Some((_, to)) => to.clone(),
            None => self
                .agents
                .iter()
                .map(|a| a.name.clone())
                .filter(|n| n != from)
                .collect(),
        }
    }

    /// The graph: one subgraph node per agent (named after it), entered at the active agent.
    ///
    /// # Errors
    ///
    /// [`PatternError::InvalidName`], [`PatternError::DuplicateName`],
    /// [`PatternError::NoAgents`]; [`PatternError::UnknownWorker`] for a default agent or a
    /// handoff target that is not an agent of the swarm.
    ///
    /// # Examples
    ///
    /// See [`Swarm`].
    pub fn compile(&self) -> Result<CompiledGraph<TeamState>, PatternError> {
        check_names(self.agents.iter().map(Member::name), &[])?;
        let known = |n: &str| self.agents.iter().any(|a| a.name == n);
        let default = self
            .default
            .clone()
            .unwrap_or_else(|| self.agents[0].name.clone());
        if !known(&default) {
            return Err(PatternError::UnknownWorker { name: default });
        }
        for (from, to) in &self.routes {
            if let Some(bad) = std::iter::once(from).chain(to).find(|n| !known(n)) {
                return Err(PatternError::UnknownWorker { name: bad.clone() });
            }
        }
        let names: Vec<String> = self.agents.iter().map(|a| a.name.clone()).collect();
        let max = self.max_handoffs.unwrap_or(Self::DEFAULT_MAX_HANDOFFS) as usize;
        let mut b = GraphBuilder::<TeamState>::new();
        for member in &self.agents {
            let targets = self.targets(&member.name);
            let agent = with_handoff_tools(member, &targets);
            let (input, output) = (Arc::new(member.clone()), Arc::new(member.clone()));
            let out_targets = targets.clone();
            b.try_add_subgraph(
                member.name.clone(),
                agent.compile()?,
                move |s: &TeamState| {
                    let me = &input.name;
                    let handed = s.handoffs.first().filter(|h| {
                        h.to == *me
                            && s.messages.last().and_then(Message::call_id) == Some(&h.call_id)
                    });
                    let note = handed.map(|h| {
                        let mut text = format!("{} handed the conversation over to you.", h.from);
                        if !h.task.is_empty() {
                            text.push(' ');
                            text.push_str(&h.task);
                        }
                        (h.from.clone(), text)
                    });
                    input.input(s, note.as_ref().map(|(f, t)| (f.as_str(), t.as_str())))
                },
                move |done: AgentState| report(&output, &out_targets, &done),
            )?;
        }
        let entry = names.clone();
        b.try_add_conditional_edges(
            START,
            names.iter().map(String::as_str),
            move |s: &TeamState| {
                let to = s
                    .active
                    .as_ref()
                    .filter(|a| entry.contains(a))
                    .unwrap_or(&default);
                Route::to([to.clone()])
            },
        )?;
        for member in &self.agents {
            let targets = self.targets(&member.name);
            let me = member.name.clone();
            let mut route_targets: Vec<&str> = targets.iter().map(String::as_str).collect();
            route_targets.push(END);
            b.try_add_conditional_edges(&member.name, route_targets, move |s: &TeamState| match s
                .handoffs
                .first()
            {
                Some(h) if h.from == me && handoffs_in_turn(&s.messages) <= max => {
                    Route::to([h.to.clone()])
                }
                _ => Route::end(),
            })?;
        }
        Ok(b.compile()?)
    }
}

/// The agent of a swarm member: its tools and a `transfer_to_<target>` tool per target, and
/// a stop hook ending its run once it called one.
fn with_handoff_tools(member: &Member, targets: &[String]) -> crate::agent::Agent {
    let mut tools = member.agent.tool_set().clone();
    for to in targets {
        let done = format!("Transferred to {to}.");
        let description = "Hands the conversation over to this agent, with a note for it.";
        tools.insert(
            Arc::new(tool_fn(
                format!("{HANDOFF_PREFIX}{to}"),
                description,
                move |note: Note| {
                    // The note reaches the next agent through the call's arguments.
                    drop(note.message);
                    let done = done.clone();
                    async move { Ok::<_, std::convert::Infallible>(done) }
                },
            )),
            Default::default(),
        );
    }
    let user_stop = member.agent.stop_hook();
    let names: Vec<String> = targets
        .iter()
        .map(|t| format!("{HANDOFF_PREFIX}{t}"))
        .collect();
    member
        .agent
        .clone()
        .tools(tools)
        .stop_when(move |messages: &[Message]| {
            let handed = messages
                .iter()
                .rev()
                .find(|m| matches!(m.role, Role::Assistant { .. }))
                .is_some_and(|m| m.tool_calls().iter().any(|c| names.contains(&c.name)));
            handed || user_stop.as_ref().is_some_and(|stop| stop(messages))
        })
}

/// A swarm member's update after its run: its report, and the handoff it made if any.
fn report(member: &Member, targets: &[String], done: &AgentState) -> TeamStateUpdate {
    let new = run_messages(&done.messages);
    let handoff = new.iter().rev().find_map(|m| {
        m.tool_calls().iter().find_map(|c| {
            let to = c.name.strip_prefix(HANDOFF_PREFIX)?;
            targets.iter().any(|t| t == to).then(|| {
                let note = c
                    .arguments
                    .as_json()
                    .and_then(|a| a.get("message"))
                    .and_then(|t| t.as_str())
                    .unwrap_or_default();
                let mut h = Handoff::new(to, note);
                h.call_id = c.id.clone();
                h.from = member.name.clone();
                h
            })
        })
    });
    let mut messages = member.report(done);
    let Some(handoff) = handoff else {
        return TeamStateUpdate::new()
            .messages(messages)
            .handoffs(Vec::new())
            .active(Some(member.name.clone()));
    };
    let mut handoffs = vec![handoff];
    if !messages
        .iter()
        .any(|m| m.call_id() == Some(&handoffs[0].call_id))
    {
        // Reported as an answer: record the handoff call (with its result) on its own.
        messages.extend(handoff_messages(&member.name, &mut handoffs));
    } else {
        // Everything reported: the call and its result are there; the result must be last
        // for the receiver to be handed the note.
        let at = messages
            .iter()
            .position(|m| m.call_id() == Some(&handoffs[0].call_id))
            .expect("found above");
        let result = messages.remove(at);
        messages.push(result);
    }
    let to = handoffs[0].to.clone();
    TeamStateUpdate::new()
        .messages(messages)
        .handoffs(handoffs)
        .active(Some(to))
}
