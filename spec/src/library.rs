//! The node library's kinds in files: `subgraph` (always), `tool`, `model`, `agent`,
//! `pattern`, `http` and `mcp` (each behind the feature it needs).

// Without the features, some helpers have no user.
#![cfg_attr(
    not(all(feature = "openai", feature = "http", feature = "mcp")),
    allow(dead_code)
)]

use std::path::PathBuf;
#[cfg(feature = "tools")]
use std::sync::Arc;

use agentgraph_engine::{DynSchema, DynState, DynUpdate, JsonType};
use serde_json::{Map, Value};

use crate::error::did_you_mean;
use crate::registry::{FileSubgraph, NodeParams, NodeRegistry};

/// Adds the kinds of the features this build has.
pub(crate) fn register(registry: NodeRegistry) -> NodeRegistry {
    #[cfg(feature = "tools")]
    let registry = registry.kind("tool", tools::tool);
    #[cfg(feature = "openai")]
    let registry = registry.kind("model", model::model);
    #[cfg(feature = "agent")]
    let registry = registry.graph_kind("agent", model::agent);
    #[cfg(feature = "patterns")]
    let registry = registry.graph_kind("pattern", model::pattern);
    #[cfg(feature = "http")]
    let registry = registry.kind("http", http::http);
    #[cfg(feature = "mcp")]
    let registry = registry.kind("mcp", mcp::mcp);
    registry
}

/// Refuses a parameter the kind does not take (naming the closest one it takes).
pub(crate) fn known_keys(with: &Value, kind: &str, keys: &[&str]) -> Result<(), String> {
    match with {
        Value::Null => Ok(()),
        Value::Object(map) => {
            for key in map.keys() {
                if !keys.contains(&key.as_str()) {
                    let hint = did_you_mean(key, keys.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(format!("`{kind}` takes no parameter `{key}`{hint}"));
                }
            }
            Ok(())
        }
        _ => Err(format!("`{kind}` takes an object of parameters")),
    }
}

/// The string parameter `key`, if given.
pub(crate) fn opt_str<'a>(with: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match with.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` is a string")),
    }
}

/// The string parameter `key`, required.
pub(crate) fn req_str<'a>(with: &'a Value, key: &str) -> Result<&'a str, String> {
    opt_str(with, key)?.ok_or_else(|| format!("`{key}` is required"))
}

/// The whole-number parameter `key`, if given.
pub(crate) fn opt_u32(with: &Value, key: &str) -> Result<Option<u32>, String> {
    match with.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("`{key}` is a whole number")),
    }
}

/// The list of strings `key` (empty when left out).
pub(crate) fn str_list(with: &Value, key: &str) -> Result<Vec<String>, String> {
    match with.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("`{key}` is a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("`{key}` is a list of strings")),
    }
}

/// The field `key` names (`default` when left out), checked against the schema; `types` are
/// the types it may have (all when empty).
pub(crate) fn field_named(
    schema: &DynSchema,
    with: &Value,
    key: &str,
    default: Option<&str>,
    types: &[JsonType],
) -> Result<Option<(usize, String)>, String> {
    let Some(name) = opt_str(with, key)?.or(default) else {
        return Ok(None);
    };
    let Some(i) = schema.index_of(name) else {
        let hint = did_you_mean(name, schema.fields().iter().map(|f| f.name))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(format!("`{key}`: the state has no field `{name}`{hint}"));
    };
    let ty = schema.ty(i);
    if !types.is_empty() && ty != JsonType::Any && !types.contains(&ty) {
        return Err(format!("`{key}`: field `{name}` is {ty}"));
    }
    Ok(Some((i, name.to_owned())))
}

/// Whether a field's reducer adds what is written to what is there (so that only the new
/// messages are written).
pub(crate) fn accumulates(schema: &DynSchema, field: usize) -> bool {
    matches!(schema.reducer(field).name(), "messages" | "append")
}

/// `subgraph`: another graph file, run as this node (see `NodeRegistry::builtin`).
pub(crate) fn subgraph(p: &NodeParams<'_>) -> Result<FileSubgraph, String> {
    known_keys(p.with, "subgraph", &["path", "inputs", "outputs"])?;
    let rel = req_str(p.with, "path")?;
    let path = p.dir.join(rel);
    let canonical = std::fs::canonicalize(&path)
        .map_err(|e| format!("`path`: cannot read `{}`: {e}", path.display()))?;
    if !canonical.is_file() {
        return Err(format!("`path`: `{}` is not a file", path.display()));
    }
    if let Some(first) = p.includes.iter().position(|f| *f == canonical) {
        let mut chain: Vec<String> = p.includes[first..]
            .iter()
            .map(|f| format!("`{}`", f.display()))
            .collect();
        chain.push(format!("`{}`", canonical.display()));
        return Err(format!(
            "`path`: the files include each other in a cycle: {}",
            chain.join(" includes ")
        ));
    }
    let child = crate::GraphSpec::from_path_in(&path, p.registry, p.includes)
        .map_err(|e| format!("`path`: `{}` is not valid:\n{e}", path.display()))?;
    let parent = p.schema.clone();
    let schema = child.schema().clone();
    let shared = |key: &str| -> Result<Vec<String>, String> {
        let listed = str_list(p.with, key)?;
        let names: Vec<String> = if p.with.get(key).is_some() {
            listed
        } else {
            schema
                .fields()
                .iter()
                .filter(|f| parent.index_of(f.name).is_some())
                .map(|f| f.name.to_owned())
                .collect()
        };
        for name in &names {
            let (Some(c), Some(q)) = (schema.index_of(name), parent.index_of(name)) else {
                return Err(format!(
                    "`{key}`: `{name}` is not a field of both this file and `{rel}`"
                ));
            };
            if schema.ty(c) != parent.ty(q) {
                return Err(format!(
                    "`{key}`: field `{name}` is {} here and {} in `{rel}`",
                    parent.ty(q),
                    schema.ty(c)
                ));
            }
        }
        Ok(names)
    };
    let inputs = shared("inputs")?;
    let outputs = shared("outputs")?;
    let child_schema = schema.clone();
    let input = move |s: &DynState| {
        let values: Map<String, Value> = inputs
            .iter()
            .filter_map(|n| s.get(n).map(|v| (n.clone(), v.clone())))
            .collect();
        DynState::from_json(&child_schema, Value::Object(values))
            .unwrap_or_else(|_| DynState::new(&child_schema))
    };
    let output = move |done: DynState| {
        let values: Map<String, Value> = outputs
            .iter()
            .filter_map(|n| done.get(n).map(|v| (n.clone(), v.clone())))
            .collect();
        DynUpdate::from_json(&parent, Value::Object(values))
            .unwrap_or_else(|_| DynUpdate::of(&parent))
    };
    Ok(FileSubgraph::new(child, input, output))
}

/// A path in a parameter: relative to the file's folder.
#[cfg(feature = "mcp")]
fn relative(p: &NodeParams<'_>, path: &str) -> PathBuf {
    if path.starts_with("./") || path.starts_with("../") {
        p.dir.join(path)
    } else {
        PathBuf::from(path)
    }
}

#[cfg(not(feature = "mcp"))]
#[allow(dead_code)]
fn relative(_: &NodeParams<'_>, path: &str) -> PathBuf {
    PathBuf::from(path)
}

/// The arguments of a tool call: `args` (an object), overlaid by the object field
/// `args_from`, if any.
#[cfg(feature = "tools")]
fn call_args(
    p: &NodeParams<'_>,
) -> Result<impl Fn(&DynState) -> Value + Send + Sync + 'static, String> {
    let base = match p.param("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("`args` is an object".to_owned()),
    };
    let from =
        field_named(p.schema, p.with, "args_from", None, &[JsonType::Object])?.map(|(_, n)| n);
    Ok(move |s: &DynState| {
        let mut args = base.clone();
        if let Some(Value::Object(more)) = from.as_ref().and_then(|f| s.get(f)) {
            args.extend(more.clone());
        }
        Value::Object(args)
    })
}

/// A tool's output as a field's value: JSON as it is, anything else as text.
#[cfg(feature = "tools")]
fn output_value(content: &agentgraph_nodes::message::Content) -> Value {
    match content {
        agentgraph_nodes::message::Content::Json(v) => v.clone(),
        other => Value::String(other.to_text().into_owned()),
    }
}

#[cfg(feature = "tools")]
mod tools {
    use super::*;
    use agentgraph_engine::{Context, async_node};
    use agentgraph_nodes::tool::{Tool, ToolContext};

    use crate::registry::FileNode;

    /// `tool`: calls a registered tool (or an HTTP tool declared in place) and writes what it
    /// returns to `output`.
    pub(crate) fn tool(p: &NodeParams<'_>) -> Result<FileNode, String> {
        known_keys(
            p.with,
            "tool",
            &["tool", "http", "args", "args_from", "output"],
        )?;
        let tool: Arc<dyn Tool> = match (p.param("tool"), p.param("http")) {
            (Some(Value::String(name)), None) => p.registry.get_tool(name)?.clone(),
            (None, Some(_http)) => {
                #[cfg(feature = "http")]
                {
                    Arc::new(super::http::HttpTool::from_param(_http)?)
                }
                #[cfg(not(feature = "http"))]
                {
                    return Err("HTTP tools need the feature `http`".to_owned());
                }
            }
            (Some(_), Some(_)) => return Err("a `tool` or an `http` tool, not both".to_owned()),
            (Some(_), None) => return Err("`tool` is a registered tool's name".to_owned()),
            (None, None) => return Err("`tool` (a registered tool's name) is required".to_owned()),
        };
        let args = Arc::new(call_args(p)?);
        let output = field_named(p.schema, p.with, "output", None, &[])?.map(|(_, n)| n);
        let node = async_node(move |s: Arc<DynState>, ctx: Context| {
            let (tool, args, output) = (tool.clone(), args.clone(), output.clone());
            async move {
                let out = tool.call(args(&s), ToolContext::from_context(&ctx)).await?;
                Ok(match output {
                    Some(field) => s.update().set(&field, output_value(&out.content))?,
                    None => s.update(),
                })
            }
        });
        Ok(Arc::new(node))
    }

    /// The tools an agent's `tools` list names: registered ones by name, HTTP tools in place.
    pub(crate) fn tool_list(
        p: &NodeParams<'_>,
        with: &Value,
    ) -> Result<Vec<Arc<dyn Tool>>, String> {
        let list = match with.get("tools") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(list)) => list,
            Some(_) => return Err("`tools` is a list".to_owned()),
        };
        list.iter()
            .map(|item| match item {
                Value::String(name) => p.registry.get_tool(name).map(|t| vec![t.clone()]),
                Value::Object(o) if o.contains_key("http") => {
                    #[cfg(feature = "http")]
                    {
                        let tool: Arc<dyn Tool> =
                            Arc::new(super::http::HttpTool::from_param(&o["http"])?);
                        Ok(vec![tool])
                    }
                    #[cfg(not(feature = "http"))]
                    {
                        Err("HTTP tools need the feature `http`".to_owned())
                    }
                }
                Value::Object(o) if o.contains_key("mcp") => {
                    #[cfg(feature = "mcp")]
                    {
                        super::mcp::server_tools(p, &o["mcp"])
                    }
                    #[cfg(not(feature = "mcp"))]
                    {
                        Err("MCP tools need the feature `mcp`".to_owned())
                    }
                }
                _ => Err(
                    "`tools`: each is a registered tool's name, `{ http: {...} }` or \
                     `{ mcp: {...} }`"
                        .to_owned(),
                ),
            })
            .collect::<Result<Vec<Vec<_>>, String>>()
            .map(|lists| lists.into_iter().flatten().collect())
    }
}

#[cfg(feature = "openai")]
mod model {
    use super::*;
    use agentgraph_engine::{Context, async_node};
    use agentgraph_nodes::Message;
    use agentgraph_nodes::model::openai::OpenAiModel;
    use agentgraph_nodes::model::{ChatModel, ChatRequest};

    use crate::registry::FileNode;

    /// The chat model `model` names, built from the file's declaration.
    pub(crate) fn chat_model(
        p: &NodeParams<'_>,
        with: &Value,
    ) -> Result<Arc<dyn ChatModel>, String> {
        let name = req_str(with, "model")?;
        let spec = p.model(name)?;
        let mut b = OpenAiModel::builder(spec.model.value.clone());
        if let Some(url) = &spec.base_url {
            b = b.base_url(url.value.clone());
        }
        if let Some(var) = &spec.base_url_env {
            match std::env::var(&var.value) {
                Ok(url) if !url.trim().is_empty() => b = b.base_url(url),
                _ if spec.base_url.is_some() => {}
                _ => {
                    return Err(format!(
                        "model `{name}`: the environment variable `{}` (its `base_url_env`) is not set",
                        var.value
                    ));
                }
            }
        }
        // No `api_key_env`, no key: a file's base URL never gets OPENAI_API_KEY unasked.
        b = match &spec.api_key_env {
            Some(var) => b.api_key_env(var.value.clone()),
            None => b.no_api_key(),
        };
        if let Some(ms) = &spec.timeout_ms {
            b = b.timeout(std::time::Duration::from_millis(ms.value));
        }
        if let Some(n) = &spec.max_retries {
            b = b.max_retries(n.value);
        }
        let model = b.build().map_err(|e| format!("model `{name}`: {e}"))?;
        Ok(Arc::new(model))
    }

    /// Sampling settings: the node's, else the model's.
    fn sampling(p: &NodeParams<'_>, with: &Value) -> Result<(Option<f32>, Option<u32>), String> {
        let spec = p.model(req_str(with, "model")?)?;
        let temperature = match with.get("temperature") {
            None | Some(Value::Null) => spec.temperature.as_ref().map(|t| t.value),
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| "`temperature` is a number".to_owned())? as f32,
            ),
        };
        let max_tokens = opt_u32(with, "max_tokens")?.or(spec.max_tokens.as_ref().map(|m| m.value));
        Ok((temperature, max_tokens))
    }

    fn with_sampling(mut r: ChatRequest, (t, m): (Option<f32>, Option<u32>)) -> ChatRequest {
        if let Some(t) = t {
            r = r.temperature(t);
        }
        if let Some(m) = m {
            r = r.max_tokens(m);
        }
        r
    }

    /// The messages of a field (none when it is empty).
    fn messages_of(s: &DynState, field: &str) -> Result<Vec<Message>, String> {
        match s.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| format!("field `{field}` does not hold chat messages: {e}")),
        }
    }

    const MESSAGE_TYPES: &[JsonType] = &[JsonType::Messages, JsonType::List];

    /// `model`: one call of a declared model over a messages field; the answer is added to
    /// the field (and its text written to `output`).
    pub(crate) fn model(p: &NodeParams<'_>) -> Result<FileNode, String> {
        known_keys(
            p.with,
            "model",
            &[
                "model",
                "messages",
                "system",
                "temperature",
                "max_tokens",
                "output",
            ],
        )?;
        let chat = chat_model(p, p.with)?;
        let sampling = sampling(p, p.with)?;
        let (field, messages) = field_named(
            p.schema,
            p.with,
            "messages",
            Some("messages"),
            MESSAGE_TYPES,
        )?
        .expect("a default");
        let output =
            field_named(p.schema, p.with, "output", None, &[JsonType::String])?.map(|(_, n)| n);
        let system = opt_str(p.with, "system")?.map(str::to_owned);
        let adds = accumulates(p.schema, field);
        let node = async_node(move |s: Arc<DynState>, ctx: Context| {
            let (chat, messages, output, system) = (
                chat.clone(),
                messages.clone(),
                output.clone(),
                system.clone(),
            );
            async move {
                let history = messages_of(&s, &messages)?;
                let mut sent = Vec::with_capacity(history.len() + 1);
                sent.extend(system.map(Message::system));
                sent.extend(history.iter().cloned());
                let request = with_sampling(ChatRequest::new(sent), sampling);
                let stream = chat.stream(request).await?;
                let mut index = 0;
                let response = stream
                    .response_with(|chunk| {
                        if let Some(text) = chunk.text() {
                            ctx.emit_token(index, text);
                            index += 1;
                        }
                    })
                    .await?;
                let reply = response.message;
                let text = reply.content.to_text().into_owned();
                let written = if adds {
                    vec![reply]
                } else {
                    history.into_iter().chain([reply]).collect()
                };
                let mut update = s.update().set(&messages, serde_json::to_value(written)?)?;
                if let Some(field) = output {
                    update = update.set(&field, text)?;
                }
                Ok(update)
            }
        });
        Ok(Arc::new(node))
    }

    #[cfg(feature = "agent")]
    /// The id suffix that marks the last message of an agent's input.
    const INPUT_END: &str = "#file-input-end";

    #[cfg(feature = "agent")]
    /// The conversation given to a subgraph, its last message marked.
    fn marked_input(s: &DynState, field: &str) -> Vec<Message> {
        let mut history = messages_of(s, field).unwrap_or_default();
        if let Some(last) = history.last_mut() {
            last.id.push_str(INPUT_END);
        }
        history
    }

    #[cfg(feature = "agent")]
    /// The update a subgraph's final conversation makes: the new messages (or all of them,
    /// the marker taken off, when the field's reducer replaces).
    fn conversation_update(
        schema: &Arc<DynSchema>,
        field: &str,
        adds: bool,
        mut done: Vec<Message>,
    ) -> DynUpdate {
        let cut = done.iter().rposition(|m| m.id.ends_with(INPUT_END));
        let written: Vec<Message> = match cut {
            Some(i) if adds => done.split_off(i + 1),
            Some(i) => {
                let id = &mut done[i].id;
                id.truncate(id.len() - INPUT_END.len());
                done
            }
            None => done,
        };
        let value = serde_json::to_value(written).unwrap_or(Value::Array(Vec::new()));
        DynUpdate::of(schema)
            .set(field, value)
            .unwrap_or_else(|_| DynUpdate::of(schema))
    }

    #[cfg(feature = "agent")]
    /// An agent from parameters (`model`, `system`, `tools`, `allow`, `deny`, `max_turns`,
    /// `max_tool_calls`, `temperature`, `max_tokens`).
    fn agent_from(
        p: &NodeParams<'_>,
        with: &Value,
    ) -> Result<agentgraph_nodes::agent::Agent, String> {
        use agentgraph_nodes::tool::{ToolOptions, ToolSet};
        let chat = chat_model(p, with)?;
        let sampling = sampling(p, with)?;
        let mut tools = ToolSet::new();
        for tool in super::tools::tool_list(p, with)? {
            tools.insert(tool, ToolOptions::new());
        }
        for pattern in str_list(with, "allow")? {
            tools = tools
                .allow_pattern(&pattern)
                .map_err(|e| format!("`allow`: {e}"))?;
        }
        for pattern in str_list(with, "deny")? {
            tools = tools
                .deny_pattern(&pattern)
                .map_err(|e| format!("`deny`: {e}"))?;
        }
        let mut agent = agentgraph_nodes::agent::Agent::new(chat)
            .tools(tools)
            .request_with(move |r| with_sampling(r, sampling));
        if let Some(system) = opt_str(with, "system")? {
            agent = agent.system_prompt(system);
        }
        if let Some(n) = opt_u32(with, "max_turns")? {
            agent = agent.max_turns(n);
        }
        if let Some(n) = opt_u32(with, "max_tool_calls")? {
            agent = agent.max_tool_calls(n);
        }
        Ok(agent)
    }

    #[cfg(feature = "agent")]
    const AGENT_KEYS: &[&str] = &[
        "model",
        "system",
        "tools",
        "allow",
        "deny",
        "max_turns",
        "max_tool_calls",
        "temperature",
        "max_tokens",
    ];

    /// `agent`: the tool-calling agent over a messages field, run as a subgraph.
    #[cfg(feature = "agent")]
    pub(crate) fn agent(p: &NodeParams<'_>) -> Result<FileSubgraph, String> {
        use agentgraph_nodes::agent::AgentState;
        let mut keys = AGENT_KEYS.to_vec();
        keys.push("messages");
        known_keys(p.with, "agent", &keys)?;
        let agent = agent_from(p, p.with)?;
        let (field, messages) = field_named(
            p.schema,
            p.with,
            "messages",
            Some("messages"),
            MESSAGE_TYPES,
        )?
        .expect("a default");
        let adds = accumulates(p.schema, field);
        let graph = agent.compile().map_err(|e| e.to_string())?;
        let schema = p.schema.clone();
        let input_field = messages.clone();
        Ok(FileSubgraph::new(
            graph,
            move |s: &DynState| AgentState::from_messages(marked_input(s, &input_field)),
            move |done: AgentState| conversation_update(&schema, &messages, adds, done.messages),
        ))
    }

    /// `pattern`: a supervisor routing to worker agents, or a group chat of agents taking
    /// turns, over a messages field, run as a subgraph.
    #[cfg(feature = "patterns")]
    pub(crate) fn pattern(p: &NodeParams<'_>) -> Result<FileSubgraph, String> {
        use agentgraph_nodes::patterns::group_chat::{
            ChatAgent, GroupChat, GroupChatState, Selector, Stop,
        };
        use agentgraph_nodes::patterns::{Member, Supervisor, TeamState};
        known_keys(
            p.with,
            "pattern",
            &[
                "pattern",
                "model",
                "messages",
                "system",
                "agents",
                "max_rounds",
                "selector",
                "stop_keyword",
            ],
        )?;
        let (field, messages) = field_named(
            p.schema,
            p.with,
            "messages",
            Some("messages"),
            MESSAGE_TYPES,
        )?
        .expect("a default");
        let adds = accumulates(p.schema, field);
        let agents = match p.param("agents") {
            Some(Value::Array(list)) if !list.is_empty() => list,
            _ => return Err("`agents` (a list of agents) is required".to_owned()),
        };
        let mut members = Vec::new();
        for a in agents {
            let mut keys = AGENT_KEYS.to_vec();
            keys.extend(["name", "description"]);
            known_keys(a, "agents", &keys)?;
            let name = req_str(a, "name").map_err(|e| format!("`agents`: {e}"))?;
            let agent = agent_from(p, a).map_err(|e| format!("`agents`: `{name}`: {e}"))?;
            members.push((name.to_owned(), opt_str(a, "description")?, agent));
        }
        let max_rounds = opt_u32(p.with, "max_rounds")?;
        let schema = p.schema.clone();
        let input_field = messages.clone();
        let which = req_str(p.with, "pattern")?;
        match which {
            "supervisor" => {
                known_keys(
                    p.with,
                    "pattern: supervisor",
                    &[
                        "pattern",
                        "model",
                        "messages",
                        "system",
                        "agents",
                        "max_rounds",
                    ],
                )?;
                let mut sup = Supervisor::model(chat_model(p, p.with)?);
                for (name, description, agent) in members {
                    let mut member = Member::new(name, agent);
                    if let Some(d) = description {
                        member = member.description(d);
                    }
                    sup = sup.worker(member);
                }
                if let Some(n) = max_rounds {
                    sup = sup.max_rounds(n);
                }
                if let Some(s) = opt_str(p.with, "system")? {
                    sup = sup.system_prompt(s);
                }
                let graph = sup.compile().map_err(|e| e.to_string())?;
                Ok(FileSubgraph::new(
                    graph,
                    move |s: &DynState| TeamState::from_messages(marked_input(s, &input_field)),
                    move |done: TeamState| {
                        conversation_update(&schema, &messages, adds, done.messages)
                    },
                ))
            }
            "group_chat" => {
                known_keys(
                    p.with,
                    "pattern: group_chat",
                    &[
                        "pattern",
                        "model",
                        "messages",
                        "agents",
                        "max_rounds",
                        "selector",
                        "stop_keyword",
                    ],
                )?;
                let mut chat = GroupChat::new();
                for (name, description, agent) in members {
                    let mut member = ChatAgent::model(name, agent);
                    if let Some(d) = description {
                        member = member.description(d);
                    }
                    chat = chat.agent(member);
                }
                chat = match opt_str(p.with, "selector")?.unwrap_or("round_robin") {
                    "round_robin" => chat.selector(Selector::round_robin()),
                    "model" => chat.selector(Selector::model(chat_model(p, p.with)?)),
                    other => {
                        let hint = did_you_mean(other, ["round_robin", "model"])
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        return Err(format!("`selector`: unknown selector `{other}`{hint}"));
                    }
                };
                let mut stop = Stop::max_rounds(max_rounds.unwrap_or(10));
                if let Some(k) = opt_str(p.with, "stop_keyword")? {
                    stop = stop.or(Stop::keyword(k));
                }
                chat = chat.stop_when(stop);
                let graph = chat.compile().map_err(|e| e.to_string())?;
                Ok(FileSubgraph::new(
                    graph,
                    move |s: &DynState| {
                        GroupChatState::from_messages(marked_input(s, &input_field))
                    },
                    move |done: GroupChatState| {
                        conversation_update(&schema, &messages, adds, done.messages)
                    },
                ))
            }
            other => {
                let hint = did_you_mean(other, ["supervisor", "group_chat"])
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                Err(format!("`pattern`: unknown pattern `{other}`{hint}"))
            }
        }
    }
}

#[cfg(feature = "http")]
pub(crate) mod http {
    use super::*;
    use std::time::Duration;

    use agentgraph_engine::BoxError;
    use agentgraph_nodes::http::HttpNode;
    use agentgraph_nodes::tool::{Tool, ToolContext, ToolError, ToolFuture, ToolOutput};

    use crate::registry::FileNode;

    /// Headers from parameters: `headers` (fixed values) and `headers_env` (each header's
    /// value read from an environment variable when the request is sent).
    /// Headers by name: their values (fixed), or the environment variables holding them.
    type Headers = Vec<(String, String)>;

    fn headers(with: &Value) -> Result<(Headers, Headers), String> {
        let pairs = |key: &str| -> Result<Vec<(String, String)>, String> {
            match with.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(v) => Ok((k.clone(), v.clone())),
                        _ => Err(format!("`{key}`: the value of `{k}` is a string")),
                    })
                    .collect(),
                Some(_) => Err(format!("`{key}` is an object of headers")),
            }
        };
        let fixed = pairs("headers")?;
        for (name, _) in &fixed {
            if name.eq_ignore_ascii_case("authorization") {
                return Err(
                    "`headers`: a secret is not written in the file: name its environment \
                     variable in `headers_env`"
                        .to_owned(),
                );
            }
        }
        Ok((fixed, pairs("headers_env")?))
    }

    fn method(with: &Value) -> Result<reqwest::Method, String> {
        let m = opt_str(with, "method")?
            .unwrap_or("GET")
            .to_ascii_uppercase();
        reqwest::Method::from_bytes(m.as_bytes())
            .map_err(|_| format!("`method`: `{m}` is not a method"))
    }

    /// `http`: the HTTP request node. The URL template's variables are the state's fields;
    /// `body` names a field sent as JSON; the answer (JSON, else text) goes to `output`.
    pub(crate) fn http(p: &NodeParams<'_>) -> Result<FileNode, String> {
        known_keys(
            p.with,
            "http",
            &[
                "method",
                "url",
                "headers",
                "headers_env",
                "body",
                "output",
                "timeout_ms",
                "retries",
            ],
        )?;
        let url = req_str(p.with, "url")?;
        let (fixed, env) = headers(p.with)?;
        let mut node =
            HttpNode::<DynState>::new(method(p.with)?, url).map_err(|e| e.to_string())?;
        for (name, value) in fixed {
            node = node.header(name, value);
        }
        for (name, var) in env {
            node = node.header_env(name, "", var);
        }
        node = node.vars(|s: &DynState| {
            s.schema()
                .fields()
                .iter()
                .zip(s.values())
                .filter_map(|(f, v)| match v {
                    Value::String(t) => Some((f.name.to_owned(), t.clone())),
                    Value::Number(n) => Some((f.name.to_owned(), n.to_string())),
                    Value::Bool(b) => Some((f.name.to_owned(), b.to_string())),
                    _ => None,
                })
                .collect()
        });
        if let Some((_, body)) = field_named(p.schema, p.with, "body", None, &[])? {
            node = node.json_body(move |s: &DynState| s.get(&body).cloned().unwrap_or(Value::Null));
        }
        if let Some(ms) = p.param("timeout_ms").and_then(Value::as_u64) {
            node = node.timeout(Duration::from_millis(ms));
        }
        if let Some(n) = opt_u32(p.with, "retries")? {
            node = node.retries(n, Duration::from_millis(200));
        }
        if let Some((_, output)) = field_named(p.schema, p.with, "output", None, &[])? {
            node = node.response(move |s: &DynState, r| {
                let value = r
                    .json::<Value>()
                    .unwrap_or_else(|_| Value::String(r.text().into_owned()));
                Ok::<_, BoxError>(s.update().set(&output, value)?)
            });
        }
        Ok(Arc::new(agentgraph_engine::async_node(node.into_node())))
    }

    /// A tool that sends its arguments to a URL: as the JSON body (POST, the default) or as
    /// the query (GET).
    pub(crate) struct HttpTool {
        name: String,
        description: String,
        parameters: Value,
        method: reqwest::Method,
        url: String,
        fixed: Headers,
        env: Headers,
        client: reqwest::Client,
    }

    impl HttpTool {
        /// From `{ name, description, url, method, parameters, headers, headers_env,
        /// timeout_ms }`.
        pub(crate) fn from_param(with: &Value) -> Result<Self, String> {
            known_keys(
                with,
                "http tool",
                &[
                    "name",
                    "description",
                    "url",
                    "method",
                    "parameters",
                    "headers",
                    "headers_env",
                    "timeout_ms",
                ],
            )?;
            let (fixed, env) = headers(with)?;
            let method = match opt_str(with, "method")? {
                None => reqwest::Method::POST,
                Some(_) => method(with)?,
            };
            let timeout = Duration::from_millis(
                with.get("timeout_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(30_000),
            );
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| e.to_string())?;
            Ok(HttpTool {
                name: req_str(with, "name")?.to_owned(),
                description: opt_str(with, "description")?.unwrap_or_default().to_owned(),
                parameters: with
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({ "type": "object" })),
                method,
                url: req_str(with, "url")?.to_owned(),
                fixed,
                env,
                client,
            })
        }
    }

    impl Tool for HttpTool {
        fn name(&self) -> &str {
            &self.name
        }

        fn description(&self) -> &str {
            &self.description
        }

        fn parameters(&self) -> &Value {
            &self.parameters
        }

        fn call(&self, args: Value, ctx: ToolContext) -> ToolFuture<'_> {
            Box::pin(async move {
                let failed = |e: BoxError| ToolError::failed(self.name.clone(), e);
                let mut url = reqwest::Url::parse(&self.url).map_err(|e| failed(Box::new(e)))?;
                let get = self.method == reqwest::Method::GET;
                if get && let Value::Object(args) = &args {
                    let mut query = url.query_pairs_mut();
                    for (k, v) in args {
                        match v {
                            Value::String(s) => query.append_pair(k, s),
                            other => query.append_pair(k, &other.to_string()),
                        };
                    }
                }
                let mut request = self.client.request(self.method.clone(), url);
                if !get {
                    request = request.json(&args);
                }
                for (name, value) in &self.fixed {
                    request = request.header(name, value);
                }
                for (name, var) in &self.env {
                    let value = std::env::var(var).map_err(|_| {
                        failed(format!("the environment variable `{var}` is not set").into())
                    })?;
                    let mut value = reqwest::header::HeaderValue::from_str(&value)
                        .map_err(|_| failed(format!("`{var}` is not a header value").into()))?;
                    value.set_sensitive(true);
                    request = request.header(name, value);
                }
                request = request.header("idempotency-key", ctx.idempotency_key());
                let response = request.send().await.map_err(|e| failed(Box::new(e)))?;
                let status = response.status();
                let text = response.text().await.map_err(|e| failed(Box::new(e)))?;
                if !status.is_success() {
                    return Err(failed(format!("HTTP {status}: {text}").into()));
                }
                Ok(match serde_json::from_str::<Value>(&text) {
                    Ok(v) => ToolOutput::json(v),
                    Err(_) => ToolOutput::text(text),
                })
            })
        }
    }
}

#[cfg(feature = "mcp")]
mod mcp {
    use super::*;
    use agentgraph_engine::{BoxError, Context, async_node};
    use agentgraph_mcp::McpClient;
    use agentgraph_nodes::tool::{Tool, ToolContext};
    use tokio::sync::OnceCell;

    use crate::registry::FileNode;

    /// Where an MCP server is: a program started with its arguments and environment, or a
    /// URL.
    enum Server {
        Command(PathBuf, Vec<String>, Vec<(String, String)>),
        Url(String),
    }

    impl Server {
        async fn connect(&self) -> Result<McpClient, agentgraph_mcp::McpError> {
            match self {
                Server::Command(program, a, env) => {
                    let mut cmd = std::process::Command::new(program);
                    cmd.args(a).envs(env.iter().map(|(k, v)| (k, v)));
                    McpClient::spawn(cmd).await
                }
                Server::Url(url) => McpClient::connect_http(url.clone()).await,
            }
        }
    }

    /// The server `command` (with `env`) or `url` name.
    fn server(p: &NodeParams<'_>, with: &Value) -> Result<Server, String> {
        Ok(match (with.get("command"), opt_str(with, "url")?) {
            (Some(_), Some(_)) => return Err("a `command` or a `url`, not both".to_owned()),
            (Some(_), None) => {
                let mut parts = str_list(with, "command")?.into_iter();
                let program = parts
                    .next()
                    .ok_or_else(|| "`command` is a program and its arguments".to_owned())?;
                let env: Vec<(String, String)> = match with.get("env") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Object(m)) => m
                        .iter()
                        .map(|(k, v)| {
                            v.as_str()
                                .map(|v| (k.clone(), v.to_owned()))
                                .ok_or_else(|| format!("`env`: the value of `{k}` is a string"))
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err("`env` is an object".to_owned()),
                };
                Server::Command(relative(p, &program), parts.collect(), env)
            }
            (None, Some(url)) => Server::Url(url.to_owned()),
            (None, None) => return Err("`command` (stdio) or `url` is required".to_owned()),
        })
    }

    /// `mcp`: calls the tool `tool` of an MCP server, started by `command` (stdio) or reached
    /// at `url`, and writes what it returns to `output`. The server is started at the first
    /// call and kept for the graph's life.
    pub(crate) fn mcp(p: &NodeParams<'_>) -> Result<FileNode, String> {
        known_keys(
            p.with,
            "mcp",
            &[
                "command",
                "url",
                "env",
                "tool",
                "args",
                "args_from",
                "output",
            ],
        )?;
        let server = server(p, p.with)?;
        let tool = req_str(p.with, "tool")?.to_owned();
        let args = Arc::new(call_args(p)?);
        let output = field_named(p.schema, p.with, "output", None, &[])?.map(|(_, n)| n);
        let server = Arc::new(server);
        let client: Arc<OnceCell<McpClient>> = Arc::new(OnceCell::new());
        let node = async_node(move |s: Arc<DynState>, ctx: Context| {
            let (server, client, tool, args, output) = (
                server.clone(),
                client.clone(),
                tool.clone(),
                args.clone(),
                output.clone(),
            );
            async move {
                let client = client.get_or_try_init(|| server.connect()).await?;
                let tools = client.tools();
                let Some(found) = tools.iter().find(|t| t.name() == tool) else {
                    let names = tools.iter().map(|t| t.name());
                    let hint = did_you_mean(&tool, names)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(format!("the MCP server has no tool `{tool}`{hint}").into());
                };
                let out = found
                    .call(args(&s), ToolContext::from_context(&ctx))
                    .await?;
                Ok::<_, BoxError>(match output {
                    Some(field) => s.update().set(&field, output_value(&out.content))?,
                    None => s.update(),
                })
            }
        });
        Ok(Arc::new(node))
    }

    /// The tools of the MCP server `with` names (`command` and `env`, or `url`), offered
    /// to an agent (its `allow` and `deny` lists apply). The server is started now, to list
    /// its tools, on a runtime of its own that lives as long as the tools.
    pub(crate) fn server_tools(
        p: &NodeParams<'_>,
        with: &Value,
    ) -> Result<Vec<Arc<dyn Tool>>, String> {
        known_keys(with, "mcp", &["command", "url", "env"])?;
        let server = server(p, with)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("agentgraph-mcp")
            .enable_all()
            .build()
            .map_err(|e| format!("`mcp`: {e}"))?;
        // Not `block_on` on this thread: it may be a runtime's already.
        let handle = runtime.handle().clone();
        let client = std::thread::scope(|scope| {
            scope
                .spawn(|| handle.block_on(server.connect()))
                .join()
                .map_err(|_| "`mcp`: connecting panicked".to_owned())
        })?
        .map_err(|e| format!("`mcp`: {e}"))?;
        let kept = Arc::new(Kept(Some(runtime)));
        Ok(client
            .tools()
            .into_iter()
            .map(|tool| {
                let tool: Arc<dyn Tool> = Arc::new(KeptTool {
                    name: tool.name().to_owned(),
                    tool: Some(tool),
                    runtime: kept.clone(),
                });
                tool
            })
            .collect())
    }

    /// The runtime an MCP client was made on (its connection's tasks run there), shut down
    /// when the last of its tools goes.
    struct Kept(Option<tokio::runtime::Runtime>);

    impl Drop for Kept {
        fn drop(&mut self) {
            if let Some(rt) = self.0.take() {
                rt.shutdown_background();
            }
        }
    }

    /// An MCP tool with the runtime its connection runs on (`tool` is always there until it
    /// is dropped, inside that runtime: the connection's cleanup spawns a task).
    struct KeptTool {
        name: String,
        tool: Option<agentgraph_mcp::McpTool>,
        runtime: Arc<Kept>,
    }

    impl Drop for KeptTool {
        fn drop(&mut self) {
            let _inside = self.runtime.0.as_ref().map(|rt| rt.enter());
            self.tool.take();
        }
    }

    impl KeptTool {
        fn tool(&self) -> &agentgraph_mcp::McpTool {
            self.tool.as_ref().expect("taken only when dropped")
        }
    }

    impl Tool for KeptTool {
        fn name(&self) -> &str {
            &self.name
        }

        fn description(&self) -> &str {
            self.tool().description()
        }

        fn parameters(&self) -> &Value {
            self.tool().parameters()
        }

        fn call(&self, args: Value, ctx: ToolContext) -> agentgraph_nodes::tool::ToolFuture<'_> {
            self.tool().call(args, ctx)
        }
    }
}
