//! Planning mode: plan with read-only tools, a person approves, execute with every tool.

use std::sync::Arc;

use agentgraph_engine::{
    BoxError, Command, CompiledGraph, Context, END, GraphBuilder, Route, START,
};
use serde::{Deserialize, Serialize};

use super::ensemble::{Aggregate, Verdict, aggregate};
use super::{
    Answer, Member, PatternError, TeamState, TeamStateUpdate, check_names, last_text, run_messages,
};
use crate::agent::AgentState;
use crate::message::Message;
use crate::tool::ToolFilter;

/// Where a [`Plan`] stands.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::PlanStatus;
/// assert_eq!(PlanStatus::default(), PlanStatus::Proposed);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlanStatus {
    /// Made, waiting for its review.
    #[default]
    Proposed,
    /// Approved (as made or edited): being carried out.
    Approved,
    /// Rejected: the planners plan again.
    Rejected,
    /// Carried out.
    Done,
}

/// The plan of [`Planning`] mode, kept in [`TeamState::plan`] across the turns of a thread
/// (the next turn's planners are shown it).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::{Plan, PlanStatus};
/// let plan = Plan::default();
/// assert_eq!((plan.revision, plan.status), (0, PlanStatus::Proposed));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Plan {
    /// The planner whose plan it is (the one that carries it out).
    pub author: String,
    /// The plan.
    pub text: String,
    /// Where it stands.
    pub status: PlanStatus,
    /// How many plans were made on this thread, this one included.
    pub revision: u32,
}

/// What the review of a plan interrupts with: the plan and its author. The answer is a
/// [`PlanDecision`].
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::PlanReview;
/// let r: PlanReview = serde_json::from_value(serde_json::json!({
///     "kind": "plan_review", "author": "alice", "plan": "1. read 2. write", "revision": 1
/// })).unwrap();
/// assert_eq!(r.author, "alice");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlanReview {
    /// Always `plan_review`.
    pub kind: String,
    /// The planner.
    pub author: String,
    /// The plan.
    pub plan: String,
    /// Its [`Plan::revision`].
    pub revision: u32,
}

/// The answer to a [`PlanReview`]: in JSON `{"decision": "approve"}`, `{"decision": "edit",
/// "plan": ".."}` or `{"decision": "reject", "reason": ".."}`.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::patterns::PlanDecision;
/// let d: PlanDecision = serde_json::from_value(serde_json::json!({ "decision": "edit", "plan": "1. only read" })).unwrap();
/// assert_eq!(d, PlanDecision::Edit { plan: "1. only read".into() });
/// assert_eq!(serde_json::to_value(PlanDecision::Approve).unwrap(), serde_json::json!({ "decision": "approve" }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlanDecision {
    /// Carry it out as it is.
    Approve,
    /// Carry out this plan instead.
    Edit {
        /// The edited plan.
        plan: String,
    },
    /// Plan again: the reason is added to the conversation as a user message (named
    /// `reviewer`) for the planners.
    Reject {
        /// Why.
        #[serde(default)]
        reason: String,
    },
}

/// Planning mode: the planners first plan with a restricted tool set (the tools the
/// [`read_only`](Planning::read_only) filter permits; the others are added to the deny list
/// of each agent's own [`ToolSet`](crate::tool::ToolSet), so they are neither offered nor
/// run), then, when [`approval`](Planning::approval) is on (the default), a person reviews
/// the plan (an interrupt with a [`PlanReview`], answered with a [`PlanDecision`]: approve,
/// edit or reject), then the plan's author carries it out with its full tool set.
///
/// ```text
///        ┌▶ plan_a ─┐                         ┌▶ execute_a ─┐
/// START ─┤          ├─(join)─▶ choose ─▶ review ─┤             ├─▶ executed ─▶ END
///        └▶ plan_b ─┘     ▲                 │    └▶ execute_b ─┘
///                         └──── (rejected) ─┘
/// ```
///
/// With several planners (a parallel vote), they plan side by side and the plan is chosen by
/// an [`Aggregate`] ([`pick`](Planning::pick); a majority vote by default,
/// [`Concatenate`](Aggregate::Concatenate) makes one plan of all of them, by the first
/// planner): **only the winner runs side-effecting tools**, in the execution phase; the
/// others only ever had the read-only ones.
///
/// **What each one sees.** A planner gets its [`View`](super::View) of the team's messages
/// and the task of planning, with the thread's current [`Plan`] if there is one (so a plan
/// persists across turns and can be revised); its own tool calls stay in its run. The
/// executor gets its view and the approved plan. The plan is kept in [`TeamState::plan`];
/// the executor's answer is added to the team's messages. A planner or an executor whose run
/// fails fails the run: resume it (`resume`) and only the unfinished agents run again.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use agentgraph_checkpoint::MemoryStore;
/// use agentgraph_engine::{Error, Resume, RunConfig};
/// use agentgraph_nodes::agent::Agent;
/// use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
/// use agentgraph_nodes::patterns::{Member, PlanDecision, PlanStatus, Planning, TeamState};
/// use agentgraph_nodes::tool::ToolFilter;
/// use agentgraph_nodes::Message;
///
/// /// Plans when asked to, else reports what it was told to carry out.
/// #[derive(Debug)]
/// struct Worker;
/// impl ChatModel for Worker {
///     fn model(&self) -> &str { "worker" }
///     fn chat(&self, r: ChatRequest) -> ChatFuture<'_> {
///         let last = r.messages.last().unwrap().content.to_text().into_owned();
///         Box::pin(async move {
///             Ok(ChatResponse::new(Message::assistant(if last.starts_with("Make a plan") {
///                 "1. read the file".to_owned()
///             } else {
///                 format!("done: {}", last.lines().last().unwrap_or_default())
///             })))
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let graph = Planning::new(Member::new("dev", Agent::new(Arc::new(Worker))))
///     .read_only(ToolFilter::new().allow_pattern("read_*")?)
///     .compile()?;
/// let config = RunConfig::new().store(MemoryStore::new()).run_id("p");
/// let start = TeamState::from_messages([Message::user("Fix the bug.")]);
/// let Err(Error::Interrupted(stop)) = graph.run_with(start, config.clone()).await else { panic!() };
/// assert_eq!(stop.interrupts[0].payload["plan"], "1. read the file");
///
/// let edit = PlanDecision::Edit { plan: "1. read the log".into() };
/// let done = graph.resume_with("p", Resume::value(edit), config).await?;
/// assert_eq!(done.messages.last().unwrap().text(), Some("done: 1. read the log"));
/// assert_eq!(done.plan.unwrap().status, PlanStatus::Done);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Planning {
    planners: Vec<Member>,
    read_only: ToolFilter,
    pick: Aggregate,
    approval: bool,
}

const CHOOSE: &str = "choose";
const REVIEW: &str = "review";
const EXECUTED: &str = "executed";

fn plan_node(name: &str) -> String {
    format!("plan_{name}")
}

fn execute_node(name: &str) -> String {
    format!("execute_{name}")
}

impl Planning {
    /// Planning mode with one planner (the agent that carries the plan out too), with no
    /// tool allowed while planning until [`read_only`](Planning::read_only) says which are,
    /// and approval by a person.
    ///
    /// # Examples
    ///
    /// See [`Planning`].
    pub fn new(planner: Member) -> Self {
        Planning {
            planners: vec![planner],
            read_only: ToolFilter::new()
                .deny_pattern("*")
                .expect("a valid pattern"),
            pick: Aggregate::default(),
            approval: true,
        }
    }

    /// Adds a planner: the planners plan in parallel and the plan is picked by
    /// [`pick`](Planning::pick).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agentgraph_nodes::agent::Agent;
    /// # use agentgraph_nodes::patterns::{Aggregate, Member, Planning};
    /// # use agentgraph_nodes::model::{ChatFuture, ChatModel, ChatRequest, ChatResponse};
    /// # #[derive(Debug)] struct M;
    /// # impl ChatModel for M {
    /// #     fn model(&self) -> &str { "m" }
    /// #     fn chat(&self, _: ChatRequest) -> ChatFuture<'_> { unimplemented!() }
    /// # }
    /// let p = Planning::new(Member::new("a", Agent::new(Arc::new(M))))
    ///     .planner(Member::new("b", Agent::new(Arc::new(M))))
    ///     .pick(Aggregate::MajorityVote)
    ///     .approval(false);
    /// assert!(p.compile().is_ok());
    /// ```
    #[must_use]
    pub fn planner(mut self, planner: Member) -> Self {
        self.planners.push(planner);
        self
    }

    /// The tools allowed while planning: those this filter permits (and the agent's own
    /// lists allow). Every other tool of a planner's set is denied in the planning phase.
    ///
    /// # Examples
    ///
    /// See [`Planning`].
    #[must_use]
    pub fn read_only(mut self, filter: ToolFilter) -> Self {
        self.read_only = filter;
        self
    }

    /// How the plan is chosen among several planners' (a majority vote by default).
    ///
    /// # Examples
    ///
    /// See [`planner`](Planning::planner).
    #[must_use]
    pub fn pick(mut self, pick: Aggregate) -> Self {
        self.pick = pick;
        self
    }

    /// Whether a person reviews the plan before it is carried out (the default).
    ///
    /// # Examples
    ///
    /// See [`planner`](Planning::planner).
    #[must_use]
    pub fn approval(mut self, approval: bool) -> Self {
        self.approval = approval;
        self
    }

    /// A planner's agent for the planning phase: its tool set with every tool the read-only
    /// filter does not permit denied.
    fn planning_agent(&self, member: &Member) -> crate::agent::Agent {
        let full = member.agent.tool_set();
        let mut restricted = full.clone();
        for tool in full.offered() {
            if !self.read_only.permits(tool.name()) {
                restricted = restricted.deny(tool.name());
            }
        }
        member.agent.clone().tools(restricted)
    }

    /// The graph: `plan_<planner>` and `execute_<planner>` subgraph nodes per planner, and
    /// the `choose`, `review` and `executed` nodes.
    ///
    /// # Errors
    ///
    /// [`PatternError::InvalidName`], [`PatternError::DuplicateName`],
    /// [`PatternError::NoAgents`].
    ///
    /// # Examples
    ///
    /// See [`Planning`].
    pub fn compile(&self) -> Result<CompiledGraph<TeamState>, PatternError> {
        check_names(self.planners.iter().map(Member::name), &[])?;
        let mut b = GraphBuilder::<TeamState>::new();
        let plans: Vec<String> = self.planners.iter().map(|m| plan_node(&m.name)).collect();
        let executes: Vec<String> = self
            .planners
            .iter()
            .map(|m| execute_node(&m.name))
            .collect();
        for member in &self.planners {
            let (input, output) = (Arc::new(member.clone()), Arc::new(member.clone()));
            b.try_add_subgraph(
                plan_node(&member.name),
                self.planning_agent(member).compile()?,
                move |s: &TeamState| input.input(s, Some(("", &planning_task(s)))),
                move |done: AgentState| {
                    let text = last_text(run_messages(&done.messages));
                    TeamStateUpdate::new().answers(vec![Answer::new(output.name.clone(), text)])
                },
            )?
            .try_add_edge(START, &plan_node(&member.name))?;
            let (input, output) = (Arc::new(member.clone()), Arc::new(member.clone()));
            b.try_add_subgraph(
                execute_node(&member.name),
                member.agent.compile()?,
                move |s: &TeamState| {
                    let plan = s.plan.as_ref().map(|p| p.text.as_str()).unwrap_or_default();
                    let task = format!("Carry out this approved plan:\n{plan}");
                    input.input(s, Some(("", &task)))
                },
                move |done: AgentState| {
                    TeamStateUpdate::new()
                        .messages(output.report(&done))
                        .active(Some(output.name.clone()))
                },
            )?;
        }
        let count = self.planners.len();
        let how = Arc::new(self.pick.clone());
        let approval = self.approval;
        let first = self.planners[0].name.clone();
        b.try_add_node(CHOOSE, move |state: Arc<TeamState>, ctx: Context| {
            let how = how.clone();
            let first = first.clone();
            async move {
                let latest = &state.answers[state.answers.len().saturating_sub(count)..];
                let candidates: Vec<Answer> = latest
                    .iter()
                    .filter(|a| a.text.is_some())
                    .cloned()
                    .collect();
                let task = super::ensemble::task_of(&state);
                let (author, text) =
                    match aggregate(&how, &task, &candidates, state.clone(), ctx).await? {
                        Verdict::Winner(i) => (
                            candidates[i].agent.clone(),
                            candidates[i].text.clone().unwrap_or_default(),
                        ),
                        Verdict::All(text) => (first, text),
                    };
                let plan = Plan {
                    author: author.clone(),
                    text,
                    status: if approval {
                        PlanStatus::Proposed
                    } else {
                        PlanStatus::Approved
                    },
                    revision: state.plan.as_ref().map_or(0, |p| p.revision) + 1,
                };
                let next = if approval {
                    REVIEW.to_owned()
                } else {
                    execute_node(&author)
                };
                Ok::<_, BoxError>(
                    Command::new(TeamStateUpdate::new().plan(Some(plan)).winner(Some(author)))
                        .goto(Route::to([next])),
                )
            }
        })?
        .try_add_join(plans.iter().map(String::as_str), CHOOSE)?;
        let replan = plans.clone();
        b.try_add_node(REVIEW, move |state: Arc<TeamState>, ctx: Context| {
            let replan = replan.clone();
            async move {
                let mut plan = state.plan.clone().unwrap_or_default();
                let review = PlanReview {
                    kind: "plan_review".into(),
                    author: plan.author.clone(),
                    plan: plan.text.clone(),
                    revision: plan.revision,
                };
                let decision: PlanDecision = ctx.interrupt(&review)?;
                let mut update = TeamStateUpdate::new();
                let route = match decision {
                    PlanDecision::Approve => {
                        plan.status = PlanStatus::Approved;
                        Route::to([execute_node(&plan.author)])
                    }
                    PlanDecision::Edit { plan: edited } => {
                        plan.text = edited;
                        plan.status = PlanStatus::Approved;
                        Route::to([execute_node(&plan.author)])
                    }
                    PlanDecision::Reject { reason } => {
                        plan.status = PlanStatus::Rejected;
                        let mut text = "The plan was rejected.".to_owned();
                        if !reason.is_empty() {
                            text = format!("The plan was rejected: {reason}");
                        }
                        update = update.messages(vec![Message::user(text).with_name("reviewer")]);
                        Route::to(replan)
                    }
                };
                Ok::<_, BoxError>(Command::new(update.plan(Some(plan))).goto(route))
            }
        })?;
        let mut choose_targets: Vec<&str> = executes.iter().map(String::as_str).collect();
        choose_targets.push(REVIEW);
        b.try_add_goto_edges(CHOOSE, choose_targets)?;
        let mut review_targets: Vec<&str> = executes.iter().map(String::as_str).collect();
        review_targets.extend(plans.iter().map(String::as_str));
        b.try_add_goto_edges(REVIEW, review_targets)?;
        b.try_add_node(EXECUTED, |state: Arc<TeamState>, _: Context| async move {
            let mut plan = state.plan.clone().unwrap_or_default();
            plan.status = PlanStatus::Done;
            Ok::<_, BoxError>(TeamStateUpdate::new().plan(Some(plan)))
        })?
        .try_add_edge(EXECUTED, END)?;
        for execute in &executes {
            b.try_add_edge(execute, EXECUTED)?;
        }
        Ok(b.compile()?)
    }
}

/// A planner's task: plan, do not act; the thread's current plan when there is one.
fn planning_task(state: &TeamState) -> String {
    let mut task = String::from(
        "Make a plan for the request above. Do not carry it out: you may only use the \
         read-only tools you are offered, to gather what the plan needs. Reply with the plan.",
    );
    if let Some(plan) = &state.plan {
        let status = match plan.status {
            PlanStatus::Proposed => "proposed",
            PlanStatus::Approved => "approved, being carried out",
            PlanStatus::Rejected => "rejected",
            PlanStatus::Done => "carried out",
        };
        task.push_str(&format!(
            "\n\nThe current plan ({status}, by {}):\n{}",
            plan.author, plan.text
        ));
    }
    task
}
