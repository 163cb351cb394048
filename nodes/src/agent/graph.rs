//! The agent's graph: its `model` and `tool` nodes and their routers.

use std::sync::Arc;

use agentgraph_engine::{BoxError, Context, END, GraphBuilder, Packet, Route, START};
use futures_util::future::BoxFuture;

use super::{
    Agent, AgentError, AgentState, AgentStateUpdate, Approval, ApprovalRequest, InvalidToolCalls,
    MODEL_NODE, TOOL_NODE,
};
use crate::message::{Message, Role, ToolArguments, ToolCall};
use crate::messages::ensure_answered;
use crate::model::{ChatRequest, ChatResponse, model_node};
use crate::tool::{ArgumentsValidator, ToolContext, ToolError};

/// The builder of an agent's graph.
pub(super) fn build(agent: Agent) -> GraphBuilder<AgentState> {
    let agent = Arc::new(agent);
    let mut b = GraphBuilder::<AgentState>::new();
    let stop = agent.stop.clone();
    b.add_node(MODEL_NODE, model_task(agent.clone()));
    agent.set_model_task(&mut b, MODEL_NODE);
    b.add_node(TOOL_NODE, tool_task(agent))
        .add_edge(START, MODEL_NODE)
        .add_conditional_edges(MODEL_NODE, [TOOL_NODE, END], |s: &AgentState| {
            match s.messages.last().map(Message::tool_calls) {
                Some(calls) if !calls.is_empty() => {
                    Route::packets(calls.iter().map(|c| Packet::new(TOOL_NODE, &c.id)))
                }
                _ => Route::end(),
            }
        })
        .add_conditional_edges(
            TOOL_NODE,
            [MODEL_NODE, END],
            move |s: &AgentState| match &stop {
                Some(stop) if stop(&s.messages) => Route::end(),
                _ => Route::from(MODEL_NODE),
            },
        );
    b
}

/// The model calls of this invocation so far: the assistant messages after the last user
/// message (all of them when there is none).
fn turns(messages: &[Message]) -> usize {
    let start = messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .map_or(0, |i| i + 1);
    answers(&messages[start..])
}

/// The assistant messages among `messages`.
fn answers(messages: &[Message]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m.role, Role::Assistant { .. }))
        .count()
}

type Update = Result<AgentStateUpdate, AgentError>;

/// The `model` node: checks the history and the turn limit, calls the model (streaming its
/// text as [`model_node`] does), checks its tool calls as the policy says.
fn model_task(
    agent: Arc<Agent>,
) -> impl Fn(Arc<AgentState>, Context) -> BoxFuture<'static, Result<AgentStateUpdate, BoxError>>
+ Send
+ Sync
+ 'static {
    let request_agent = agent.clone();
    let check_agent = agent.clone();
    let call = Arc::new(model_node(
        agent.model.clone(),
        move |s: &AgentState| request(&request_agent, s),
        move |_: &AgentState, r: ChatResponse| -> Update {
            if check_agent.invalid != InvalidToolCalls::AnswerError {
                for call in r.message.tool_calls() {
                    if let Err(error) = check_call(&check_agent, call) {
                        return Err(AgentError::InvalidToolCall {
                            call_id: call.id.clone(),
                            error,
                        });
                    }
                }
            }
            Ok(AgentStateUpdate::new().messages(vec![r.message]))
        },
    ));
    move |state: Arc<AgentState>, ctx: Context| {
        let agent = agent.clone();
        let call = call.clone();
        Box::pin(async move {
            ensure_answered(&state.messages).map_err(AgentError::from)?;
            if turns(&state.messages) >= agent.max_turns as usize {
                return Err(AgentError::TurnLimit {
                    limit: agent.max_turns,
                }
                .into());
            }
            if let Some(limit) = agent.max_model_calls
                && answers(&state.messages) >= limit as usize
            {
                return Err(AgentError::ModelCallLimit { limit }.into());
            }
            let mut retries = match agent.invalid {
                InvalidToolCalls::RetryModel { retries } => retries,
                _ => 0,
            };
            loop {
                match call(state.clone(), ctx.clone()).await? {
                    Ok(update) => return Ok(update),
                    Err(e) if retries > 0 => {
                        tracing::warn!(
                            target: "agentgraph_nodes::agent",
                            error = %e,
                            retries_left = retries,
                            "invalid tool call: asking the model again"
                        );
                        retries -= 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }) as BoxFuture<'static, _>
    }
}

/// The request of a model call: the system prompt, the history, the tools offered.
fn request(agent: &Agent, state: &AgentState) -> ChatRequest {
    let system = agent.system.iter().map(|s| Message::system(s.as_str()));
    let request =
        ChatRequest::new(system.chain(state.messages.iter().cloned())).tools_from(&agent.tools);
    match &agent.request {
        Some(hook) => hook(request),
        None => request,
    }
}

/// Whether the agent's tools would run `call`: allowed, known, arguments JSON that satisfy
/// the tool's schema.
fn check_call(agent: &Agent, call: &ToolCall) -> Result<(), ToolError> {
    let tools = &agent.tools;
    if let Err(refusal) = tools.filter().check(&call.name) {
        return Err(ToolError::NotAllowed {
            tool: call.name.clone(),
            refusal,
        });
    }
    let Some(tool) = tools.get(&call.name) else {
        return Err(ToolError::Unknown {
            tool: call.name.clone(),
            available: tools.offered().map(|t| t.name().to_owned()).collect(),
        });
    };
    let args = match &call.arguments {
        ToolArguments::Json(args) => args,
        ToolArguments::Malformed(raw) => {
            return Err(ToolError::MalformedArguments {
                tool: call.name.clone(),
                raw: raw.clone(),
                source: call
                    .arguments
                    .parse_error()
                    .unwrap_or_else(|| serde_json::Error::io(std::io::Error::other("malformed"))),
            });
        }
    };
    let validator =
        ArgumentsValidator::new(tool.parameters()).map_err(|reason| ToolError::InvalidSchema {
            tool: call.name.clone(),
            reason,
        })?;
    validator
        .check(args)
        .map_err(|errors| ToolError::InvalidArguments {
            tool: call.name.clone(),
            errors,
        })
}

/// Why `call` may not run under the limits on calls: it is beyond its tool's
/// `max_calls_per_run` or the agent's `max_tool_calls`, counting the calls the model made in
/// the history, in order, up to and including it.
fn over_limit(agent: &Agent, messages: &[Message], call: &ToolCall) -> Option<String> {
    let per_tool = agent
        .tools
        .options(&call.name)
        .and_then(|o| o.max_calls_per_run);
    if per_tool.is_none() && agent.max_tool_calls.is_none() {
        return None;
    }
    let (mut same, mut all) = (0u32, 0u32);
    'count: for m in messages {
        for c in m.tool_calls() {
            all += 1;
            if c.name == call.name {
                same += 1;
            }
            if c.id == call.id {
                break 'count;
            }
        }
    }
    if let Some(limit) = per_tool.filter(|&limit| same > limit) {
        return Some(format!(
            "tool `{}` was not called: it may be called at most {limit} times in this run",
            call.name
        ));
    }
    if let Some(limit) = agent.max_tool_calls.filter(|&limit| all > limit) {
        return Some(format!(
            "tool `{}` was not called: at most {limit} tool calls may be made in this run",
            call.name
        ));
    }
    None
}

/// Whether `call` waits for a person's approval before it runs.
fn needs_approval(agent: &Agent, call: &ToolCall) -> bool {
    let by_options = agent
        .tools
        .options(&call.name)
        .is_some_and(|o| o.needs_approval);
    by_options || agent.approve.as_ref().is_some_and(|rule| rule(call))
}

/// The `tool` node: one task per call (the packet holds its id); answers the call with a
/// tool result, after the limits and the approval.
fn tool_task(
    agent: Arc<Agent>,
) -> impl Fn(Arc<AgentState>, Context) -> BoxFuture<'static, Result<AgentStateUpdate, BoxError>>
+ Send
+ Sync
+ 'static {
    move |state: Arc<AgentState>, ctx: Context| {
        let agent = agent.clone();
        Box::pin(async move {
            let call_id: String = ctx.input()?;
            let call = state
                .messages
                .iter()
                .rev()
                .flat_map(|m| m.tool_calls())
                .find(|c| c.id == call_id)
                .cloned()
                .ok_or(AgentError::CallNotFound { call_id })?;
            let answer = answer(&agent, &state.messages, call, &ctx).await?;
            Ok(AgentStateUpdate::new().messages(vec![answer]))
        }) as BoxFuture<'static, _>
    }
}

/// The answer to one call: a refusal under the limits, a rejection, or the tool's result.
/// `messages` are those whose calls count towards the limits on calls.
pub(crate) async fn answer(
    agent: &Agent,
    messages: &[Message],
    mut call: ToolCall,
    ctx: &Context,
) -> Result<Message, BoxError> {
    if let Some(refusal) = over_limit(agent, messages, &call) {
        tracing::warn!(
            target: "agentgraph_nodes::agent",
            tool = call.name.as_str(),
            call = call.id.as_str(),
            "tool call refused: over its limit"
        );
        return Ok(Message::tool_error(call.id, refusal).with_name(call.name));
    }
    let runnable = agent.tools.is_allowed(&call.name) && agent.tools.get(&call.name).is_some();
    let asked = match &call.arguments {
        ToolArguments::Json(arguments) if runnable && needs_approval(agent, &call) => {
            Some(ApprovalRequest {
                kind: "tool_approval".into(),
                tool: call.name.clone(),
                call_id: call.id.clone(),
                arguments: arguments.clone(),
            })
        }
        _ => None,
    };
    if let Some(request) = asked {
        match ctx.interrupt::<_, Approval>(&request)? {
            Approval::Approve => {}
            Approval::Reject { reason } => {
                let mut text = format!("the call of tool `{}` was rejected", call.name);
                if !reason.is_empty() {
                    text.push_str(": ");
                    text.push_str(&reason);
                }
                return Ok(Message::tool_error(call.id, text).with_name(call.name));
            }
            Approval::Edit { arguments } => call.arguments = ToolArguments::Json(arguments),
        }
    }
    // A call the agent hands its tools is taken from the run's budget of tool calls first:
    // over it, the call is not made and the task is refused (it runs on a resume with a
    // higher budget).
    ctx.charge_tool_calls(1)?;
    Ok(agent
        .tools
        .answer(&call, ToolContext::from_context(ctx))
        .await)
}
