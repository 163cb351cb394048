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

/// The parameters each kind reads (the published schema describes the same: a test in
/// `kind_schema.rs` compares them).
pub(crate) mod keys {
    /// `subgraph`.
    pub(crate) const SUBGRAPH: &[&str] = &["path", "inputs", "outputs"];
    /// `interrupt`.
    pub(crate) const INTERRUPT: &[&str] = &["field", "question"];
    /// `collect`.
    pub(crate) const COLLECT: &[&str] = &["field"];
    /// `model`.
    pub(crate) const MODEL: &[&str] = &[
        "model",
        "messages",
        "system",
        "temperature",
        "max_tokens",
        "output",
    ];
    /// An agent (an `agent` node takes `messages` too; an agent of a pattern, [`MEMBER`]).
    pub(crate) const AGENT: &[&str] = &[
        "model",
        "system",
        "tools",
        "allow",
        "deny",
        "max_turns",
        "max_model_calls",
        "max_tool_calls",
        "model_timeout_ms",
        "temperature",
        "max_tokens",
    ];
    /// The options of one tool, beside the tool in an agent's `tools` list or in a `tool`
    /// node's parameters: the node library's `ToolOptions`, one to one.
    pub(crate) const TOOL_OPTIONS: &[&str] = &[
        "timeout_ms",
        "retries",
        "retry_delay_ms",
        "max_calls_per_run",
        "needs_approval",
    ];
    /// `tool` (besides [`TOOL_OPTIONS`], but `max_calls_per_run`).
    pub(crate) const TOOL: &[&str] = &["tool", "http", "args", "args_from", "output"];
    /// What an item of an agent's `tools` list given as an object names: a registered tool
    /// (`tool`), an HTTP tool (`http`) or an MCP server's tools (`mcp`), with its options
    /// ([`TOOL_OPTIONS`]).
    pub(crate) const TOOL_ITEM: &[&str] = &["tool", "http", "mcp"];
    /// `http`.
    pub(crate) const HTTP: &[&str] = &[
        "method",
        "url",
        "headers",
        "headers_env",
        "body",
        "output",
        "timeout_ms",
        "retries",
    ];
    /// An HTTP tool.
    pub(crate) const HTTP_TOOL: &[&str] = &[
        "name",
        "description",
        "url",
        "method",
        "parameters",
        "headers",
        "headers_env",
        "timeout_ms",
    ];
    /// `mcp`.
    pub(crate) const MCP: &[&str] = &[
        "command",
        "url",
        "env",
        "tool",
        "args",
        "args_from",
        "output",
    ];
    /// An MCP server of an agent's tools.
    pub(crate) const MCP_SERVER: &[&str] = &["command", "url", "env"];
    /// The patterns of the `pattern` kind, each with the parameters it takes.
    pub(crate) const PATTERNS: &[(&str, &[&str])] = &[
        (
            "supervisor",
            &[
                "pattern",
                "model",
                "messages",
                "system",
                "agents",
                "max_rounds",
            ],
        ),
        (
            "group_chat",
            &[
                "pattern",
                "model",
                "messages",
                "agents",
                "max_rounds",
                "selector",
                "stop_keyword",
            ],
        ),
        (
            "swarm",
            &[
                "pattern",
                "messages",
                "agents",
                "default_agent",
                "handoffs",
                "max_handoffs",
                "active_field",
            ],
        ),
        (
            "ensemble",
            &["pattern", "model", "messages", "agents", "aggregate"],
        ),
        ("fallback", &["pattern", "messages", "agents"]),
        ("pipeline", &["pattern", "messages", "agents"]),
        (
            "planning",
            &[
                "pattern",
                "model",
                "messages",
                "agents",
                "read_only",
                "aggregate",
                "approval",
            ],
        ),
    ];
    /// An agent of a pattern (besides [`AGENT`]); a group chat's agents take the first two
    /// only.
    pub(crate) const MEMBER: &[&str] = &["name", "description", "sees", "reports"];
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

/// The whole-number parameter `key` (64 bits), if given.
pub(crate) fn opt_u64(with: &Value, key: &str) -> Result<Option<u64>, String> {
    match with.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` is a whole number")),
    }
}

/// The boolean parameter `key`, if given.
pub(crate) fn opt_bool(with: &Value, key: &str) -> Result<Option<bool>, String> {
    match with.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("`{key}` is `true` or `false`")),
    }
}

/// The duration parameter `key`, in milliseconds (at least 1), if given.
pub(crate) fn opt_timeout(with: &Value, key: &str) -> Result<Option<std::time::Duration>, String> {
    match opt_u64(with, key)? {
        Some(0) => Err(format!("`{key}` is at least 1")),
        ms => Ok(ms.map(std::time::Duration::from_millis)),
    }
}

/// The options `keys::TOOL_OPTIONS` name, from an object holding them (among other keys).
#[cfg(feature = "tools")]
pub(crate) fn tool_options(with: &Value) -> Result<agentgraph_nodes::tool::ToolOptions, String> {
    use std::time::Duration;
    let mut options = agentgraph_nodes::tool::ToolOptions::new();
    if let Some(timeout) = opt_timeout(with, "timeout_ms")? {
        options = options.timeout(timeout);
    }
    if let Some(n) = opt_u32(with, "retries")? {
        options = options.retries(n);
    }
    if let Some(ms) = opt_u64(with, "retry_delay_ms")? {
        if with.get("retries").is_none() {
            return Err(
                "`retry_delay_ms` is the delay between `retries`: set `retries`".to_owned(),
            );
        }
        options = options.retry_delay(Duration::from_millis(ms));
    }
    if let Some(n) = opt_u32(with, "max_calls_per_run")? {
        options = options.max_calls_per_run(n);
    }
    if let Some(b) = opt_bool(with, "needs_approval")? {
        options = options.needs_approval(b);
    }
    Ok(options)
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
    known_keys(p.with, "subgraph", keys::SUBGRAPH)?;
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
    use agentgraph_nodes::tool::{Tool, ToolContext, ToolOptions, ToolSet};

    use crate::registry::FileNode;

    /// The answer to a `tool` node's approval interrupt: the JSON of the agent's `Approval`
    /// (`{"decision": "approve"}`, `{"decision": "reject", "reason": ".."}`,
    /// `{"decision": "edit", "arguments": {..}}`).
    #[derive(serde::Deserialize)]
    #[serde(tag = "decision", rename_all = "snake_case")]
    enum Approval {
        Approve,
        Reject {
            #[serde(default)]
            reason: String,
        },
        Edit {
            arguments: Value,
        },
    }

    /// `tool`: calls a registered tool (or an HTTP tool declared in place) and writes what it
    /// returns to `output`, under the tool's options: `timeout_ms`, `retries` and
    /// `retry_delay_ms` (as `ToolSet::call` runs them), and `needs_approval` (an interrupt
    /// before the call, answered like an agent's: approve, reject, which fails the node, or
    /// edited arguments). `max_calls_per_run` is an agent's limit and is refused here.
    pub(crate) fn tool(p: &NodeParams<'_>) -> Result<FileNode, String> {
        let mut taken = keys::TOOL.to_vec();
        taken.extend(keys::TOOL_OPTIONS);
        known_keys(p.with, "tool", &taken)?;
        if p.param("max_calls_per_run").is_some() {
            return Err(
                "`max_calls_per_run` limits an agent's calls: a `tool` node calls its tool once \
                 each time it runs"
                    .to_owned(),
            );
        }
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
        let options = tool_options(p.with)?;
        let approval = options.needs_approval;
        let name = tool.name().to_owned();
        let mut set = ToolSet::new();
        set.insert(tool, options);
        let set = Arc::new(set);
        let args = Arc::new(call_args(p)?);
        let output = field_named(p.schema, p.with, "output", None, &[])?.map(|(_, n)| n);
        let node_name = p.node.to_owned();
        let node = async_node(move |s: Arc<DynState>, ctx: Context| {
            let (set, args, output, name, node_name) = (
                set.clone(),
                args.clone(),
                output.clone(),
                name.clone(),
                node_name.clone(),
            );
            async move {
                let mut args = args(&s);
                if approval {
                    let request = serde_json::json!({
                        "kind": "tool_approval",
                        "tool": name,
                        "call_id": node_name,
                        "arguments": args,
                    });
                    match ctx.interrupt::<_, Approval>(&request)? {
                        Approval::Approve => {}
                        Approval::Edit { arguments } => args = arguments,
                        Approval::Reject { reason } => {
                            let mut text = format!("the call of tool `{name}` was rejected");
                            if !reason.is_empty() {
                                text.push_str(": ");
                                text.push_str(&reason);
                            }
                            return Err(text.into());
                        }
                    }
                }
                ctx.record_tool_calls(1);
                let out = set
                    .call(&name, args, ToolContext::from_context(&ctx))
                    .await?;
                Ok::<_, agentgraph_engine::BoxError>(match output {
                    Some(field) => s.update().set(&field, output_value(&out.content))?,
                    None => s.update(),
                })
            }
        });
        Ok(Arc::new(node))
    }

    /// A tool of an agent with its options.
    pub(crate) type ToolWithOptions = (Arc<dyn Tool>, ToolOptions);

    /// The tools an agent's `tools` list names, each with its options: registered ones by
    /// name (`add`, or `{ tool: add, ..options }`), HTTP tools in place (`{ http: {..},
    /// ..options }`), the tools of an MCP server (`{ mcp: {..}, ..options }`, the options
    /// applying to each of them).
    pub(crate) fn tool_list(
        p: &NodeParams<'_>,
        with: &Value,
    ) -> Result<Vec<ToolWithOptions>, String> {
        let list = match with.get("tools") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(list)) => list,
            Some(_) => return Err("`tools` is a list".to_owned()),
        };
        let mut taken = keys::TOOL_ITEM.to_vec();
        taken.extend(keys::TOOL_OPTIONS);
        let mut all = Vec::new();
        for item in list {
            let (tools, options) = match item {
                Value::String(name) => {
                    (vec![p.registry.get_tool(name)?.clone()], ToolOptions::new())
                }
                Value::Object(o) => {
                    let given: Vec<&str> = keys::TOOL_ITEM
                        .iter()
                        .copied()
                        .filter(|k| o.contains_key(*k))
                        .collect();
                    let label = match (o.get("tool"), o.get("http").and_then(|h| h.get("name"))) {
                        (Some(Value::String(n)), _) | (None, Some(Value::String(n))) => {
                            format!("`tools`: `{n}`")
                        }
                        _ => "`tools`".to_owned(),
                    };
                    if let Some(key) = o.keys().find(|k| !taken.contains(&k.as_str())) {
                        let hint = did_you_mean(key, taken.iter().copied())
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        return Err(format!("{label}: no tool option `{key}`{hint}"));
                    }
                    let what = match given[..] {
                        [one] => one,
                        [] => {
                            return Err(
                                "`tools`: an item is a registered tool's name, `{ tool: NAME }`, \
                                 `{ http: {...} }` or `{ mcp: {...} }`, with its options"
                                    .to_owned(),
                            );
                        }
                        _ => {
                            return Err(format!(
                                "`tools`: one of `tool`, `http` or `mcp` per item, not `{}`",
                                given.join("` and `")
                            ));
                        }
                    };
                    let options = tool_options(item).map_err(|e| format!("{label}: {e}"))?;
                    let tools = match what {
                        "tool" => match &o["tool"] {
                            Value::String(name) => vec![p.registry.get_tool(name)?.clone()],
                            _ => {
                                return Err(format!("{label}: `tool` is a registered tool's name"));
                            }
                        },
                        "http" => {
                            #[cfg(feature = "http")]
                            {
                                let tool: Arc<dyn Tool> =
                                    Arc::new(super::http::HttpTool::from_param(&o["http"])?);
                                vec![tool]
                            }
                            #[cfg(not(feature = "http"))]
                            {
                                return Err("HTTP tools need the feature `http`".to_owned());
                            }
                        }
                        _ => {
                            #[cfg(feature = "mcp")]
                            {
                                super::mcp::server_tools(p, &o["mcp"])?
                            }
                            #[cfg(not(feature = "mcp"))]
                            {
                                return Err("MCP tools need the feature `mcp`".to_owned());
                            }
                        }
                    };
                    (tools, options)
                }
                _ => {
                    return Err(
                        "`tools`: each is a registered tool's name, `{ tool: NAME }`, \
                         `{ http: {...} }` or `{ mcp: {...} }`"
                            .to_owned(),
                    );
                }
            };
            all.extend(tools.into_iter().map(|t| (t, options.clone())));
        }
        Ok(all)
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
        known_keys(p.with, "model", keys::MODEL)?;
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
    /// `max_model_calls`, `max_tool_calls`, `model_timeout_ms`, `temperature`, `max_tokens`).
    fn agent_from(
        p: &NodeParams<'_>,
        with: &Value,
    ) -> Result<agentgraph_nodes::agent::Agent, String> {
        use agentgraph_nodes::tool::ToolSet;
        let chat = chat_model(p, with)?;
        let sampling = sampling(p, with)?;
        let mut tools = ToolSet::new();
        for (tool, options) in super::tools::tool_list(p, with)? {
            tools.insert(tool, options);
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
        if let Some(n) = opt_u32(with, "max_model_calls")? {
            agent = agent.max_model_calls(n);
        }
        if let Some(n) = opt_u32(with, "max_tool_calls")? {
            agent = agent.max_tool_calls(n);
        }
        if let Some(timeout) = opt_timeout(with, "model_timeout_ms")? {
            agent = agent.model_timeout(timeout);
        }
        Ok(agent)
    }

    /// `agent`: the tool-calling agent over a messages field, run as a subgraph.
    #[cfg(feature = "agent")]
    pub(crate) fn agent(p: &NodeParams<'_>) -> Result<FileSubgraph, String> {
        use agentgraph_nodes::agent::AgentState;
        let mut taken = keys::AGENT.to_vec();
        taken.push("messages");
        known_keys(p.with, "agent", &taken)?;
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

    /// How an ensemble or planning mode picks among answers: `aggregate` (a majority vote
    /// when left out; `judge` asks the pattern's `model`).
    #[cfg(feature = "patterns")]
    fn aggregate(p: &NodeParams<'_>) -> Result<agentgraph_nodes::patterns::Aggregate, String> {
        use agentgraph_nodes::patterns::Aggregate;
        const NAMES: [&str; 3] = ["majority_vote", "concatenate", "judge"];
        Ok(
            match opt_str(p.with, "aggregate")?.unwrap_or("majority_vote") {
                "majority_vote" => Aggregate::MajorityVote,
                "concatenate" => Aggregate::Concatenate,
                "judge" => {
                    if p.param("model").is_none() {
                        return Err("`aggregate: judge` needs the judge's `model`".to_owned());
                    }
                    Aggregate::judge(chat_model(p, p.with)?)
                }
                other => {
                    let hint = did_you_mean(other, NAMES)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(format!("`aggregate`: unknown aggregate `{other}`{hint}"));
                }
            },
        )
    }

    /// A member's `sees` and `reports`.
    #[cfg(feature = "patterns")]
    fn member(
        name: &str,
        a: &Value,
        agent: agentgraph_nodes::agent::Agent,
        description: Option<&str>,
    ) -> Result<agentgraph_nodes::patterns::Member, String> {
        use agentgraph_nodes::patterns::{Member, Report, View};
        let mut member = Member::new(name, agent);
        if let Some(d) = description {
            member = member.description(d);
        }
        let pick = |key: &str, names: &[&str]| -> Result<Option<usize>, String> {
            let Some(v) = opt_str(a, key)? else {
                return Ok(None);
            };
            match names.iter().position(|n| *n == v) {
                Some(i) => Ok(Some(i)),
                None => {
                    let hint = did_you_mean(v, names.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    Err(format!("`{key}`: unknown value `{v}`{hint}"))
                }
            }
        };
        if let Some(i) = pick("sees", &["transcript", "task", "everything"])? {
            member = member.sees([View::Transcript, View::Task, View::Everything][i]);
        }
        if let Some(i) = pick("reports", &["answer", "everything"])? {
            member = member.reports([Report::Answer, Report::Everything][i]);
        }
        Ok(member)
    }

    /// `pattern`: a multi-agent pattern of the node library over a messages field, run as a
    /// subgraph: `supervisor`, `group_chat`, `swarm`, `ensemble`, `fallback`, `pipeline` or
    /// `planning`.
    #[cfg(feature = "patterns")]
    pub(crate) fn pattern(p: &NodeParams<'_>) -> Result<FileSubgraph, String> {
        use agentgraph_nodes::patterns::group_chat::{
            ChatAgent, GroupChat, GroupChatState, Selector, Stop,
        };
        use agentgraph_nodes::patterns::{
            Ensemble, Fallback, Pipeline, Planning, Supervisor, Swarm, TeamState,
        };
        let mut all: Vec<&str> = keys::PATTERNS
            .iter()
            .flat_map(|(_, k)| k.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        known_keys(p.with, "pattern", &all)?;
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
        let which = req_str(p.with, "pattern")?;
        let Some((_, pattern_keys)) = keys::PATTERNS.iter().find(|(n, _)| *n == which) else {
            let hint = did_you_mean(which, keys::PATTERNS.iter().map(|(n, _)| *n))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(format!("`pattern`: unknown pattern `{which}`{hint}"));
        };
        let group_chat = which == "group_chat";
        let mut members = Vec::new();
        for a in agents {
            let mut taken = keys::AGENT.to_vec();
            taken.extend(if group_chat {
                &keys::MEMBER[..2]
            } else {
                keys::MEMBER
            });
            if a.get("max_model_calls").is_some() {
                return Err("`agents`: `max_model_calls` limits a single agent's run: in a pattern, an agent sees the others' answers too; use `max_turns`".to_owned());
            }
            known_keys(a, "agents", &taken)?;
            let name = req_str(a, "name").map_err(|e| format!("`agents`: {e}"))?;
            let agent = agent_from(p, a).map_err(|e| format!("`agents`: `{name}`: {e}"))?;
            members.push((name.to_owned(), opt_str(a, "description")?, agent, a));
        }
        known_keys(p.with, &format!("pattern: {which}"), pattern_keys)?;
        let max_rounds = opt_u32(p.with, "max_rounds")?;
        let schema = p.schema.clone();
        let input_field = messages.clone();
        let (t_schema, t_messages, t_input) =
            (schema.clone(), messages.clone(), input_field.clone());
        // `active`: a state field that keeps a swarm's active agent between invocations (the
        // agent that spoke last gets the next message).
        let team = move |graph: agentgraph_engine::CompiledGraph<TeamState>,
                         active: Option<String>| {
            let read = active.clone();
            FileSubgraph::new(
                graph,
                move |s: &DynState| {
                    let mut team = TeamState::from_messages(marked_input(s, &t_input));
                    if let Some(field) = &read {
                        team.active = s
                            .get(field)
                            .and_then(Value::as_str)
                            .filter(|name| !name.is_empty())
                            .map(str::to_owned);
                    }
                    team
                },
                move |done: TeamState| {
                    let update = conversation_update(&t_schema, &t_messages, adds, done.messages);
                    match (&active, done.active) {
                        (Some(field), Some(name)) => update
                            .set(field, Value::String(name))
                            .expect("checked when the node was made: a string field"),
                        _ => update,
                    }
                },
            )
        };
        let mut team_members = Vec::new();
        if !group_chat {
            for (name, description, agent, a) in members.iter() {
                let m = member(name, a, agent.clone(), *description)
                    .map_err(|e| format!("`agents`: `{name}`: {e}"))?;
                team_members.push(m);
            }
        }
        let compiled =
            |r: Result<_, agentgraph_nodes::patterns::PatternError>| r.map_err(|e| e.to_string());
        match which {
            "supervisor" => {
                let mut sup = Supervisor::model(chat_model(p, p.with)?);
                for m in team_members {
                    sup = sup.worker(m);
                }
                if let Some(n) = max_rounds {
                    sup = sup.max_rounds(n);
                }
                if let Some(s) = opt_str(p.with, "system")? {
                    sup = sup.system_prompt(s);
                }
                Ok(team(sup.compile().map_err(|e| e.to_string())?, None))
            }
            "swarm" => {
                let mut swarm = Swarm::new();
                for m in team_members {
                    swarm = swarm.agent(m);
                }
                let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
                let known = |key: &str, name: &str| -> Result<(), String> {
                    if names.contains(&name) {
                        return Ok(());
                    }
                    let hint = did_you_mean(name, names.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    Err(format!("`{key}`: no agent `{name}`{hint}"))
                };
                if let Some(d) = opt_str(p.with, "default_agent")? {
                    known("default_agent", d)?;
                    swarm = swarm.default_agent(d);
                }
                match p.param("handoffs") {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(map)) => {
                        for (from, to) in map {
                            known("handoffs", from)?;
                            let to = str_list(&serde_json::json!({ "to": to }), "to")
                                .map_err(|_| format!("`handoffs`: `{from}` lists agents' names"))?;
                            for t in &to {
                                known("handoffs", t)?;
                            }
                            swarm = swarm.handoffs(from.clone(), to);
                        }
                    }
                    Some(_) => {
                        return Err(
                            "`handoffs` is an object: each agent's name, the agents it may hand over to"
                                .to_owned(),
                        );
                    }
                }
                if let Some(n) = opt_u32(p.with, "max_handoffs")? {
                    swarm = swarm.max_handoffs(n);
                }
                let active =
                    field_named(p.schema, p.with, "active_field", None, &[JsonType::String])?
                        .map(|(_, name)| name);
                Ok(team(compiled(swarm.compile())?, active))
            }
            "ensemble" => {
                let mut ensemble = Ensemble::new(aggregate(p)?);
                for m in team_members {
                    ensemble = ensemble.agent(m);
                }
                Ok(team(compiled(ensemble.compile())?, None))
            }
            "fallback" => {
                let mut chain = Fallback::new();
                for m in team_members {
                    chain = chain.agent(m);
                }
                Ok(team(compiled(chain.compile())?, None))
            }
            "pipeline" => {
                let mut line = Pipeline::new();
                for m in team_members {
                    line = line.agent(m);
                }
                Ok(team(compiled(line.compile())?, None))
            }
            "planning" => {
                let mut planners = team_members.into_iter();
                let first = planners.next().expect("at least one agent");
                let mut planning = Planning::new(first);
                for m in planners {
                    planning = planning.planner(m);
                }
                let read_only = str_list(p.with, "read_only")?;
                if !read_only.is_empty() {
                    let mut filter = agentgraph_nodes::tool::ToolFilter::new();
                    for pattern in &read_only {
                        filter = filter
                            .allow_pattern(pattern)
                            .map_err(|e| format!("`read_only`: {e}"))?;
                    }
                    planning = planning.read_only(filter);
                }
                if p.param("aggregate").is_some() {
                    planning = planning.pick(aggregate(p)?);
                } else if p.param("model").is_some() {
                    return Err("`model` is the judge of `aggregate: judge`".to_owned());
                }
                if let Some(b) = opt_bool(p.with, "approval")? {
                    planning = planning.approval(b);
                }
                Ok(team(compiled(planning.compile())?, None))
            }
            _ => {
                let mut chat = GroupChat::new();
                for (name, description, agent, _) in members {
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
        known_keys(p.with, "http", keys::HTTP)?;
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
            known_keys(with, "http tool", keys::HTTP_TOOL)?;
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
        known_keys(p.with, "mcp", keys::MCP)?;
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
        known_keys(with, "mcp", keys::MCP_SERVER)?;
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
