//! Agents on the same task: an [`Ensemble`] (in parallel, aggregated), a [`Fallback`] chain
//! and a sequential [`Pipeline`].

use std::fmt;
use std::sync::Arc;

use agentgraph_engine::{
    BoxError, CompiledGraph, Context, END, GraphBuilder, NodeFailure, Route, START,
};
use futures_util::future::BoxFuture;

use super::{
    Answer, Member, PatternError, TeamState, TeamStateUpdate, check_names, last_text, run_messages,
};
use crate::agent::AgentState;
use crate::message::{Message, Role};
use crate::model::{ChatModel, ChatRequest, ChatResponse, model_node};

type PickFn = Arc<dyn Fn(&[Answer]) -> Option<usize> + Send + Sync>;

/// How the answers of agents run side by side become one.
///
/// - [`Concatenate`](Aggregate::Concatenate): every answer, each under its agent's name, in
///   the agents' order, as one message named `ensemble`.
/// - [`MajorityVote`](Aggregate::MajorityVote): the answer given most often (compared
///   trimmed, lower-case, without a final `.`/`!`), ties going to the agent added first.
/// - [`Judge`](Aggregate::Judge): a model is shown the task and the numbered answers and
///   replies with the number of the best one (its first number from 1 to the count; a reply
///   without one picks the first answer). Its tokens stream as the aggregating node's.
/// - [`Pick`](Aggregate::Pick): a function of the answers returns the index of the winner.
///
/// Failed agents' answers take no part (but stay in [`TeamState::answers`]).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::{Aggregate, Answer};
/// let longest = Aggregate::pick(|answers: &[Answer]| {
///     (0..answers.len()).max_by_key(|&i| answers[i].text.as_ref().map_or(0, String::len))
/// });
/// assert!(format!("{longest:?}").contains("Pick"));
/// assert!(matches!(Aggregate::default(), Aggregate::MajorityVote));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Aggregate {
    /// All the answers.
    Concatenate,
    /// The most frequent answer.
    #[default]
    MajorityVote,
    /// A model picks.
    Judge(Arc<dyn ChatModel>),
    /// A function picks (the index into the answers it is given).
    Pick(PickFn),
}

impl fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Concatenate => f.write_str("Concatenate"),
            Aggregate::MajorityVote => f.write_str("MajorityVote"),
            Aggregate::Judge(m) => write!(f, "Judge({})", m.model()),
            Aggregate::Pick(_) => f.write_str("Pick"),
        }
    }
}

impl Aggregate {
    /// A judge model.
    ///
    /// # Examples
    ///
    /// See [`Ensemble`].
    pub fn judge(model: Arc<dyn ChatModel>) -> Self {
        Aggregate::Judge(model)
    }

    /// A function picking the winner's index.
    ///
    /// # Examples
    ///
    /// See [`Aggregate`].
    pub fn pick(pick: impl Fn(&[Answer]) -> Option<usize> + Send + Sync + 'static) -> Self {
        Aggregate::Pick(Arc::new(pick))
    }
}

/// The outcome of an aggregation.
pub(super) enum Verdict {
    /// The answer at this index of the candidates.
    Winner(usize),
    /// All of them, concatenated.
    All(String),
}

/// A vote's key of an answer.
fn normalized(text: &str) -> String {
    text.trim()
        .trim_end_matches(['.', '!'])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Aggregates `candidates` (answers with text) for `task`.
pub(super) async fn aggregate(
    how: &Aggregate,
    task: &str,
    candidates: &[Answer],
    state: Arc<TeamState>,
    ctx: Context,
) -> Result<Verdict, BoxError> {
    if candidates.is_empty() {
        return Err(PatternError::NoAnswers.into());
    }
    let text = |i: usize| candidates[i].text.as_deref().unwrap_or_default();
    Ok(match how {
        Aggregate::Concatenate => Verdict::All(
            (0..candidates.len())
                .map(|i| format!("[{}]\n{}", candidates[i].agent, text(i)))
                .collect::<Vec<_>>()
                .join("\n\n"),
        ),
        Aggregate::MajorityVote => {
            let keys: Vec<String> = (0..candidates.len()).map(|i| normalized(text(i))).collect();
            let votes = |i: usize| keys.iter().filter(|k| **k == keys[i]).count();
            // The first of the most voted (max_by_key keeps the last of equals: go in reverse).
            let best = (0..candidates.len())
                .rev()
                .max_by_key(|&i| votes(i))
                .unwrap_or(0);
            Verdict::Winner(best)
        }
        Aggregate::Pick(pick) => Verdict::Winner(
            pick(candidates)
                .filter(|&i| i < candidates.len())
                .unwrap_or(0),
        ),
        Aggregate::Judge(model) => {
            let mut prompt = format!("Task:\n{task}\n");
            for i in 0..candidates.len() {
                prompt.push_str(&format!("\nAnswer {}:\n{}\n", i + 1, text(i)));
            }
            let request = ChatRequest::new([
                Message::system(
                    "You are a judge. Several agents answered the same task. Reply with the \
                     number of the best answer, and nothing else.",
                ),
                Message::user(prompt),
            ]);
            let call = model_node(
                model.clone(),
                move |_: &TeamState| request.clone(),
                |_, r: ChatResponse| r,
            );
            let reply = call(state, ctx).await?;
            let said = reply.message.content.to_text();
            let number = said
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|d| d.parse::<usize>().ok())
                .find(|&n| (1..=candidates.len()).contains(&n));
            Verdict::Winner(number.map_or(0, |n| n - 1))
        }
    })
}

/// The task of a run of agents: the last user message's text.
pub(super) fn task_of(state: &TeamState) -> String {
    state
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.to_text().into_owned())
        .unwrap_or_default()
}

/// The name of the node recording a member's failure.
fn failed_node(name: &str) -> String {
    format!("{name}_failed")
}

/// A node recording a member's failure (its error edge's handler) as a failed [`Answer`].
fn record_failure(
    name: String,
) -> impl Fn(Arc<TeamState>, Context) -> BoxFuture<'static, Result<TeamStateUpdate, BoxError>>
+ Send
+ Sync
+ 'static {
    move |_, ctx: Context| {
        let name = name.clone();
        Box::pin(async move {
            let failure: NodeFailure = ctx.input()?;
            Ok(TeamStateUpdate::new().answers(vec![Answer::failed(name, failure.error)]))
        }) as BoxFuture<'static, _>
    }
}

/// Several agents on the same task, in parallel (tasks of one step, each agent a subgraph),
/// then one answer by an [`Aggregate`]:
///
/// ```text
///        ┌▶ a ─┐
/// START ─┼▶ b ─┼─(join)─▶ aggregate ─▶ END
///        └▶ c ─┘
/// ```
///
/// **What each one sees.** Every agent gets its [`View`](super::View) of the team's
/// messages, whose last user message is the task; none sees another's answer or tool calls.
/// The answers are recorded in [`TeamState::answers`] (one per agent, in the agents' order; a
/// failed agent's with its error, by its `<agent>_failed` handler a step later: a failure
/// does not fail the ensemble), and the aggregate becomes one assistant
/// message: the winner's answer named after it (and [`TeamState::winner`] set), or the
/// concatenation named `ensemble`. A judge sees the task and the numbered answers only.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_nodes::agent::Agent;
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
/// use agentgraph_nodes::patterns::{Aggregate, Ensemble, Member, TeamState};
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
/// fn member(name: &str, says: &'static str) -> Member {
///     Member::new(name, Agent::new(Arc::new(Says(says))))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let vote = Ensemble::new(Aggregate::MajorityVote)
///     .agent(member("a", "Paris"))
///     .agent(member("b", "Lyon"))
///     .agent(member("c", "paris."))
///     .compile()?;
/// let done = vote.invoke(TeamState::from_messages([Message::user("Capital of France?")])).await?;
/// assert_eq!(done.winner.as_deref(), Some("a"));
/// assert_eq!(done.messages.last().unwrap().text(), Some("Paris"));
/// assert_eq!(done.answers.len(), 3);
///
/// // A judge model that always says "2".
/// let judged = Ensemble::new(Aggregate::judge(Arc::new(Says("2"))))
///     .agent(member("a", "Paris"))
///     .agent(member("b", "Lyon"))
///     .compile()?;
/// let done = judged.invoke(TeamState::from_messages([Message::user("Capital?")])).await?;
/// assert_eq!(done.winner.as_deref(), Some("b"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Ensemble {
    agents: Vec<Member>,
    aggregate: Aggregate,
}

/// The name of an ensemble's aggregating node.
const AGGREGATE: &str = "aggregate";

impl Ensemble {
    /// An ensemble aggregating by `aggregate`, without agents yet.
    ///
    /// # Examples
    ///
    /// See [`Ensemble`].
    pub fn new(aggregate: Aggregate) -> Self {
        Ensemble {
            agents: Vec::new(),
            aggregate,
        }
    }

    /// Adds an agent.
    ///
    /// # Examples
    ///
    /// See [`Ensemble`].
    #[must_use]
    pub fn agent(mut self, agent: Member) -> Self {
        self.agents.push(agent);
        self
    }

    /// The graph: one subgraph node per agent (named after it), a handler node per agent
    /// recording its failure (`<agent>_failed`), and the `aggregate` node.
    ///
    /// # Errors
    ///
    /// [`PatternError::InvalidName`], [`PatternError::DuplicateName`] (`aggregate` is
    /// reserved), [`PatternError::NoAgents`].
    ///
    /// # Examples
    ///
    /// See [`Ensemble`].
    pub fn compile(&self) -> Result<CompiledGraph<TeamState>, PatternError> {
        check_names(self.agents.iter().map(Member::name), &[AGGREGATE])?;
        let mut b = GraphBuilder::<TeamState>::new();
        let mut arriving = Vec::new();
        for member in &self.agents {
            let (input, output) = (Arc::new(member.clone()), Arc::new(member.clone()));
            b.try_add_subgraph(
                member.name.clone(),
                member.agent.compile()?,
                move |s: &TeamState| input.input(s, None),
                move |done: AgentState| {
                    let text = last_text(run_messages(&done.messages));
                    TeamStateUpdate::new().answers(vec![Answer::new(output.name.clone(), text)])
                },
            )?;
            let failed = failed_node(&member.name);
            b.try_add_node(failed.clone(), record_failure(member.name.clone()))?
                .on_error(&member.name, &failed)
                .try_add_edge(START, &member.name)?;
            arriving.push(member.name.clone());
            arriving.push(failed);
        }
        let count = self.agents.len();
        let how = Arc::new(self.aggregate.clone());
        b.try_add_node(AGGREGATE, move |state: Arc<TeamState>, ctx: Context| {
            let how = how.clone();
            async move {
                let latest = &state.answers[state.answers.len().saturating_sub(count)..];
                let candidates: Vec<Answer> = latest
                    .iter()
                    .filter(|a| a.text.is_some())
                    .cloned()
                    .collect();
                let task = task_of(&state);
                let verdict = aggregate(&how, &task, &candidates, state.clone(), ctx).await?;
                Ok::<_, BoxError>(match verdict {
                    Verdict::All(text) => TeamStateUpdate::new()
                        .messages(vec![Message::assistant(text).with_name("ensemble")])
                        .winner(None),
                    Verdict::Winner(i) => {
                        let winner = &candidates[i];
                        let text = winner.text.clone().unwrap_or_default();
                        TeamStateUpdate::new()
                            .messages(vec![Message::assistant(text).with_name(&winner.agent)])
                            .winner(Some(winner.agent.clone()))
                            .active(Some(winner.agent.clone()))
                    }
                })
            }
        })?
        .try_add_join(arriving.iter().map(String::as_str), AGGREGATE)?
        .try_add_edge(AGGREGATE, END)?;
        Ok(b.compile()?)
    }
}

type Check = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A fallback chain: the first agent tries; when its run fails, or its answer fails the
/// [`check`](Fallback::check), the next one tries, and so on (cheapest first). The first
/// accepted answer is the team's.
///
/// ```text
/// START ─▶ cheap ─(failed or refused)─▶ strong ─(failed or refused)─▶ exhausted (fails the run)
///            └─(accepted)─▶ END            └─(accepted)─▶ END
/// ```
///
/// **What each one sees.** Each agent gets its [`View`](super::View) of the team's
/// messages: not the answers of those before it, which are recorded in
/// [`TeamState::answers`] (refused ones with `accepted: false`, failed ones with their
/// error). The accepted answer becomes an assistant message named after its agent, and
/// [`TeamState::winner`]. When no agent is accepted the run fails with
/// [`PatternError::NoAcceptedAnswer`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_nodes::agent::Agent;
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse, ModelError};
/// use agentgraph_nodes::patterns::{Fallback, Member, TeamState};
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
/// let chain = Fallback::new()
///     .agent(Member::new("tiny", Agent::new(Arc::new(Says("dunno")))))
///     .agent(Member::new("large", Agent::new(Arc::new(Says("42")))))
///     .check(|answer| answer.parse::<i64>().is_ok())
///     .compile()?;
/// let done = chain.invoke(TeamState::from_messages([Message::user("6 x 7?")])).await?;
/// assert_eq!(done.winner.as_deref(), Some("large"));
/// assert_eq!(done.messages.last().unwrap().text(), Some("42"));
/// assert!(!done.answers[0].accepted && done.answers[1].accepted);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Fallback {
    agents: Vec<Member>,
    check: Option<Check>,
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("agents", &self.agents)
            .field("check", &self.check.is_some())
            .finish()
    }
}

/// The name of a fallback chain's last node, failing the run.
const EXHAUSTED: &str = "exhausted";

impl Fallback {
    /// An empty chain, accepting any answer with text.
    ///
    /// # Examples
    ///
    /// See [`Fallback`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next agent of the chain.
    ///
    /// # Examples
    ///
    /// See [`Fallback`].
    #[must_use]
    pub fn agent(mut self, agent: Member) -> Self {
        self.agents.push(agent);
        self
    }

    /// The check an answer must pass to be accepted (besides having text).
    ///
    /// # Examples
    ///
    /// See [`Fallback`].
    #[must_use]
    pub fn check(mut self, check: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.check = Some(Arc::new(check));
        self
    }

    /// The graph: one subgraph node per agent (named after it), a handler per agent for its
    /// failure (`<agent>_failed`), and `exhausted`, which fails the run.
    ///
    /// # Errors
    ///
    /// [`PatternError::InvalidName`], [`PatternError::DuplicateName`] (`exhausted` is
    /// reserved), [`PatternError::NoAgents`].
    ///
    /// # Examples
    ///
    /// See [`Fallback`].
    pub fn compile(&self) -> Result<CompiledGraph<TeamState>, PatternError> {
        check_names(self.agents.iter().map(Member::name), &[EXHAUSTED])?;
        let mut b = GraphBuilder::<TeamState>::new();
        let attempts = self.agents.len();
        b.try_add_node(EXHAUSTED, move |_: Arc<TeamState>, _: Context| async move {
            Err::<TeamStateUpdate, BoxError>(PatternError::NoAcceptedAnswer { attempts }.into())
        })?;
        for member in &self.agents {
            let (input, output) = (Arc::new(member.clone()), Arc::new(member.clone()));
            let check = self.check.clone();
            b.try_add_subgraph(
                member.name.clone(),
                member.agent.compile()?,
                move |s: &TeamState| input.input(s, None),
                move |done: AgentState| {
                    let text = last_text(run_messages(&done.messages));
                    let mut answer = Answer::new(output.name.clone(), text.clone());
                    let passes = |t: &str| check.as_ref().is_none_or(|c| c(t));
                    match text {
                        Some(text) if passes(&text) => TeamStateUpdate::new()
                            .messages(output.report(&done))
                            .answers(vec![answer])
                            .winner(Some(output.name.clone()))
                            .active(Some(output.name.clone())),
                        _ => {
                            answer.accepted = false;
                            if answer.error.is_none() {
                                answer.error = Some("the answer failed the check".into());
                            }
                            TeamStateUpdate::new().answers(vec![answer])
                        }
                    }
                },
            )?;
            let failed = failed_node(&member.name);
            b.try_add_node(failed.clone(), record_failure(member.name.clone()))?
                .on_error(&member.name, &failed);
        }
        for (i, member) in self.agents.iter().enumerate() {
            let next: &str = self
                .agents
                .get(i + 1)
                .map_or(EXHAUSTED, |m| m.name.as_str());
            b.try_add_edge(&failed_node(&member.name), next)?;
            let next_owned = next.to_owned();
            b.try_add_conditional_edges(&member.name, [next, END], move |s: &TeamState| {
                match s.answers.last() {
                    Some(a) if a.accepted => Route::end(),
                    _ => Route::to([next_owned.clone()]),
                }
            })?;
        }
        if let Some(first) = self.agents.first() {
            b.try_add_edge(START, &first.name)?;
        }
        b.try_add_edge(EXHAUSTED, END)?;
        Ok(b.compile()?)
    }
}

/// A sequential pipeline: each agent in turn, each seeing (by its [`View`](super::View))
/// the conversation with the answers of those before it, each adding its own:
///
/// ```text
/// START ─▶ researcher ─▶ writer ─▶ editor ─▶ END
/// ```
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_nodes::agent::Agent;
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
/// use agentgraph_nodes::patterns::{Member, Pipeline, TeamState};
/// use agentgraph_nodes::Message;
///
/// /// Says how many messages it was given.
/// #[derive(Debug)]
/// struct Count;
/// impl ChatModel for Count {
///     fn model(&self) -> &str { "count" }
///     fn chat(&self, r: ChatRequest) -> ChatFuture<'_> {
///         Box::pin(async move { Ok(ChatResponse::new(Message::assistant(r.messages.len().to_string()))) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let graph = Pipeline::new()
///     .agent(Member::new("first", Agent::new(Arc::new(Count))))
///     .agent(Member::new("second", Agent::new(Arc::new(Count))))
///     .compile()?;
/// let done = graph.invoke(TeamState::from_messages([Message::user("go")])).await?;
/// let said: Vec<_> = done.answers_in_turn().map(|m| (m.name.clone().unwrap(), m.text().unwrap().to_owned())).collect();
/// assert_eq!(said, [("first".into(), "1".into()), ("second".into(), "2".into())]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    agents: Vec<Member>,
}

impl Pipeline {
    /// An empty pipeline.
    ///
    /// # Examples
    ///
    /// See [`Pipeline`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next agent.
    ///
    /// # Examples
    ///
    /// See [`Pipeline`].
    #[must_use]
    pub fn agent(mut self, agent: Member) -> Self {
        self.agents.push(agent);
        self
    }

    /// The graph: one subgraph node per agent (named after it), in a line.
    ///
    /// # Errors
    ///
    /// [`PatternError::InvalidName`], [`PatternError::DuplicateName`],
    /// [`PatternError::NoAgents`].
    ///
    /// # Examples
    ///
    /// See [`Pipeline`].
    pub fn compile(&self) -> Result<CompiledGraph<TeamState>, PatternError> {
        check_names(self.agents.iter().map(Member::name), &[])?;
        let mut b = GraphBuilder::<TeamState>::new();
        let mut previous = START.to_owned();
        for member in &self.agents {
            let (input, output) = (Arc::new(member.clone()), Arc::new(member.clone()));
            b.try_add_subgraph(
                member.name.clone(),
                member.agent.compile()?,
                move |s: &TeamState| input.input(s, None),
                move |done: AgentState| {
                    TeamStateUpdate::new()
                        .messages(output.report(&done))
                        .active(Some(output.name.clone()))
                },
            )?
            .try_add_edge(&previous, &member.name)?;
            previous = member.name.clone();
        }
        b.try_add_edge(&previous, END)?;
        Ok(b.compile()?)
    }
}
