//! The JSON Schema of each built-in kind's `with` parameters, for the published schema: types
//! that only describe (the kinds read their parameters themselves, in `library.rs` and
//! `builtin.rs`; a test checks both name the same keys). [`per_kind`] adds them to a node's
//! schema as `if kind is K then with is K's parameters`, so that an editor flags a parameter
//! a kind does not take while kinds registered from Rust take anything.

// The fields are read by the schema derive only.
#![allow(dead_code)]

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// `model`: one call of a declared model over a messages field.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct ModelParams {
    /// The model, by its name in `models`.
    model: String,
    /// The messages field (`messages` when left out).
    messages: Option<String>,
    /// A system prompt sent first.
    system: Option<String>,
    /// The sampling temperature (the model's when left out).
    temperature: Option<f32>,
    /// The most tokens of the answer (the model's when left out).
    max_tokens: Option<u32>,
    /// A string field the answer's text is written to.
    output: Option<String>,
}

/// `agent`: the tool-calling agent over a messages field, run as a subgraph.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct AgentParams {
    /// The messages field (`messages` when left out).
    messages: Option<String>,
    #[serde(flatten)]
    agent: AgentCommon,
}

/// What every agent takes (an `agent` node, an agent of a pattern).
#[derive(JsonSchema)]
struct AgentCommon {
    /// The model, by its name in `models`.
    model: String,
    /// Its system prompt.
    system: Option<String>,
    /// Its tools, each with its options.
    tools: Option<Vec<ToolItem>>,
    /// Glob patterns of the tool names allowed (all when left out).
    allow: Option<Vec<String>>,
    /// Glob patterns of the tool names refused.
    deny: Option<Vec<String>>,
    /// At most this many model calls per invocation (25 when left out).
    max_turns: Option<u32>,
    /// At most this many model calls in the run (on a thread, across its invocations); an
    /// `agent` node's only (a pattern's agents see each other's answers: use `max_turns`).
    max_model_calls: Option<u32>,
    /// At most this many tool calls in the run.
    max_tool_calls: Option<u32>,
    /// A time limit on each attempt of a model call, in milliseconds (a call over it, or
    /// whose stream is cut, is made again, up to 3 attempts).
    #[schemars(range(min = 1))]
    model_timeout_ms: Option<u64>,
    /// The sampling temperature (the model's when left out).
    temperature: Option<f32>,
    /// The most tokens of an answer (the model's when left out).
    max_tokens: Option<u32>,
}

/// A tool of an agent: a registered tool's name, or an object naming the tool (`tool`,
/// `http` or `mcp`) with its options.
#[derive(JsonSchema)]
#[serde(untagged)]
enum ToolItem {
    /// A registered tool, without options.
    Name(String),
    /// A registered tool with its options.
    Registered(RegisteredTool),
    /// An HTTP tool declared in place, with its options.
    Http(HttpToolItem),
    /// The tools of an MCP server, each with these options.
    Mcp(McpToolItem),
}

/// A registered tool with its options.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct RegisteredTool {
    /// The registered tool's name.
    tool: String,
    #[serde(flatten)]
    options: ToolOptionsParams,
}

/// An HTTP tool with its options.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct HttpToolItem {
    /// The HTTP tool.
    http: HttpToolParams,
    #[serde(flatten)]
    options: ToolOptionsParams,
}

/// The tools of an MCP server with their options.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct McpToolItem {
    /// The server.
    mcp: McpServerParams,
    #[serde(flatten)]
    options: ToolOptionsParams,
}

/// The options of a tool (the node library's `ToolOptions`).
#[derive(JsonSchema)]
struct ToolOptionsParams {
    /// The longest an attempt may take, in milliseconds (no limit when left out).
    #[schemars(range(min = 1))]
    timeout_ms: Option<u64>,
    /// How many times a failed or timed-out call is tried again (0 when left out).
    retries: Option<u32>,
    /// The delay before the first retry, in milliseconds (100 when left out); it doubles for
    /// each next one, up to 10 s. Needs `retries`.
    retry_delay_ms: Option<u64>,
    /// At most this many calls of the tool in one run (an agent's tools only): a call beyond
    /// is answered to the model as an error.
    max_calls_per_run: Option<u32>,
    /// Whether a person approves each call before it runs: an interrupt with a
    /// `tool_approval` payload, answered `{"decision": "approve"}`, `{"decision": "reject",
    /// "reason": ".."}` or `{"decision": "edit", "arguments": {..}}`.
    needs_approval: Option<bool>,
}

/// `tool`: calls a registered tool (or an HTTP tool declared in place) and writes what it
/// returns to `output`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct ToolParams {
    /// The registered tool's name (or give `http`).
    tool: Option<String>,
    /// An HTTP tool declared in place (or give `tool`).
    http: Option<HttpToolParams>,
    /// The call's arguments.
    args: Option<Map<String, Value>>,
    /// An object field whose entries are added to `args`.
    args_from: Option<String>,
    /// The field the result is written to.
    output: Option<String>,
    /// The longest an attempt may take, in milliseconds (no limit when left out).
    #[schemars(range(min = 1))]
    timeout_ms: Option<u64>,
    /// How many times a failed or timed-out call is tried again (0 when left out).
    retries: Option<u32>,
    /// The delay before the first retry, in milliseconds (100 when left out); it doubles for
    /// each next one, up to 10 s. Needs `retries`.
    retry_delay_ms: Option<u64>,
    /// Whether a person approves the call before it runs (an interrupt; a rejection fails
    /// the node).
    needs_approval: Option<bool>,
}

/// An HTTP tool: its arguments sent as the JSON body (POST, the default) or as the query
/// (GET).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct HttpToolParams {
    /// The tool's name.
    name: String,
    /// What it does (for the model).
    description: Option<String>,
    /// The URL.
    url: String,
    /// The method (POST when left out).
    method: Option<String>,
    /// The JSON Schema of its arguments.
    parameters: Option<Map<String, Value>>,
    /// Headers with fixed values (never a secret).
    headers: Option<BTreeMap<String, String>>,
    /// Headers whose values are read from environment variables, by variable name.
    headers_env: Option<BTreeMap<String, String>>,
    /// The time a request may take, in milliseconds (30000 when left out).
    timeout_ms: Option<u64>,
}

/// `http`: an HTTP request; the URL template's variables are the state's fields.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct HttpParams {
    /// The method (GET when left out).
    method: Option<String>,
    /// The URL template (RFC 6570).
    url: String,
    /// Headers with fixed values (never a secret).
    headers: Option<BTreeMap<String, String>>,
    /// Headers whose values are read from environment variables, by variable name.
    headers_env: Option<BTreeMap<String, String>>,
    /// A field sent as the JSON body.
    body: Option<String>,
    /// The field the answer is written to (JSON, else text).
    output: Option<String>,
    /// The time a request may take, in milliseconds.
    timeout_ms: Option<u64>,
    /// Retries of a failed request.
    retries: Option<u32>,
}

/// An MCP server: started by `command` (stdio, with `env`) or reached at `url`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct McpServerParams {
    /// The program and its arguments (a path starting `./` or `../` is relative to the file).
    command: Option<Vec<String>>,
    /// The server's URL.
    url: Option<String>,
    /// The program's environment.
    env: Option<BTreeMap<String, String>>,
}

/// `mcp`: calls a tool of an MCP server and writes what it returns to `output`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct McpParams {
    /// The program and its arguments (a path starting `./` or `../` is relative to the file).
    command: Option<Vec<String>>,
    /// The server's URL.
    url: Option<String>,
    /// The program's environment.
    env: Option<BTreeMap<String, String>>,
    /// The server's tool.
    tool: String,
    /// The call's arguments.
    args: Option<Map<String, Value>>,
    /// An object field whose entries are added to `args`.
    args_from: Option<String>,
    /// The field the result is written to.
    output: Option<String>,
}

/// `subgraph`: another graph file, run as this node.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct SubgraphParams {
    /// The file, relative to this one.
    path: String,
    /// The fields given to it (all the fields both files have when left out).
    inputs: Option<Vec<String>>,
    /// The fields taken back from it (all the fields both files have when left out).
    outputs: Option<Vec<String>>,
}

/// `interrupt`: asks `question`, writes the answer to `field`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct InterruptParams {
    /// The field the answer is written to.
    field: String,
    /// What the interrupt shows (any JSON).
    question: Option<Value>,
}

/// `collect`: appends a packet's item to a list field.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct CollectParams {
    /// The list field.
    field: String,
}

/// What an agent of a pattern sees.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Sees {
    /// The user's messages and the agents' answers, then its task (the default).
    Transcript,
    /// Its task alone.
    Task,
    /// The team's messages as they are, then its task.
    Everything,
}

/// What an agent of a pattern adds to the conversation.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Reports {
    /// Its last text (the default).
    Answer,
    /// Every message of its run.
    Everything,
}

/// An agent of a pattern.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct Member {
    /// Its name (1 to 64 of `A-Z a-z 0-9 _ -`).
    name: String,
    /// What it does (for a supervisor's model and the handoff tools).
    description: Option<String>,
    /// What it sees of the team's conversation.
    sees: Option<Sees>,
    /// What it adds to the team's conversation.
    reports: Option<Reports>,
    #[serde(flatten)]
    agent: AgentCommon,
}

/// An agent of a group chat.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct ChatMember {
    /// Its name (1 to 64 of `A-Z a-z 0-9 _ -`).
    name: String,
    /// What it does (for a model selector).
    description: Option<String>,
    #[serde(flatten)]
    agent: AgentCommon,
}

/// How an ensemble or planning mode picks among answers.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Aggregate {
    /// The most frequent answer (the default).
    MajorityVote,
    /// All the answers.
    Concatenate,
    /// The pattern's `model` picks.
    Judge,
}

/// How a group chat picks the next speaker.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum SelectorName {
    /// In turn (the default).
    RoundRobin,
    /// The pattern's `model` picks.
    Model,
}

/// `pattern`: a multi-agent pattern over a messages field, run as a subgraph.
#[derive(JsonSchema)]
#[serde(tag = "pattern", rename_all = "snake_case", deny_unknown_fields)]
enum PatternParams {
    /// A supervisor model routing to worker agents.
    Supervisor {
        /// The supervisor's model.
        model: String,
        /// The messages field (`messages` when left out).
        messages: Option<String>,
        /// The supervisor's system prompt.
        system: Option<String>,
        /// The workers.
        agents: Vec<Member>,
        /// At most this many handoffs.
        max_rounds: Option<u32>,
    },
    /// Agents taking turns on one transcript.
    GroupChat {
        /// The selector's model (`selector: model`).
        model: Option<String>,
        /// The messages field (`messages` when left out).
        messages: Option<String>,
        /// The agents.
        agents: Vec<ChatMember>,
        /// At most this many rounds (10 when left out).
        max_rounds: Option<u32>,
        /// Who speaks next.
        selector: Option<SelectorName>,
        /// The chat stops when an answer says this.
        stop_keyword: Option<String>,
    },
    /// Agents handing the conversation to each other.
    Swarm {
        /// The messages field (`messages` when left out).
        messages: Option<String>,
        /// The agents (the first is the default one).
        agents: Vec<Member>,
        /// The agent the first message goes to.
        default_agent: Option<String>,
        /// Each agent's name: the agents it may hand over to (all the others when left out).
        handoffs: Option<BTreeMap<String, Vec<String>>>,
        /// At most this many handoffs per turn (8 when left out).
        max_handoffs: Option<u32>,
        /// A string field of the state that keeps the active agent (the one that spoke last)
        /// between invocations of a thread, so the next message goes to it; without one each
        /// invocation starts at the default agent.
        active_field: Option<String>,
    },
    /// Agents answering side by side, one answer picked.
    Ensemble {
        /// The judge's model (`aggregate: judge`).
        model: Option<String>,
        /// The messages field (`messages` when left out).
        messages: Option<String>,
        /// The agents.
        agents: Vec<Member>,
        /// How the answer is picked.
        aggregate: Option<Aggregate>,
    },
    /// Agents tried in turn until one answers.
    Fallback {
        /// The messages field (`messages` when left out).
        messages: Option<String>,
        /// The agents, in order.
        agents: Vec<Member>,
    },
    /// Agents one after the other.
    Pipeline {
        /// The messages field (`messages` when left out).
        messages: Option<String>,
        /// The agents, in order.
        agents: Vec<Member>,
    },
    /// Plan with read-only tools, a person approves, then execute.
    Planning {
        /// The judge's model (`aggregate: judge`).
        model: Option<String>,
        /// The messages field (`messages` when left out).
        messages: Option<String>,
        /// The planners (the plan's author carries it out).
        agents: Vec<Member>,
        /// Glob patterns of the tools allowed while planning (none when left out).
        read_only: Option<Vec<String>>,
        /// How the plan is picked among several planners'.
        aggregate: Option<Aggregate>,
        /// Whether a person reviews the plan (yes when left out).
        approval: Option<bool>,
    },
}

/// The built-in kinds with parameters: each kind, its parameters' schema, and whether `with`
/// is required.
fn kinds(generator: &mut SchemaGenerator) -> Vec<(&'static str, Schema, bool)> {
    vec![
        ("model", generator.subschema_for::<ModelParams>(), true),
        ("agent", generator.subschema_for::<AgentParams>(), true),
        ("tool", generator.subschema_for::<ToolParams>(), true),
        ("http", generator.subschema_for::<HttpParams>(), true),
        ("mcp", generator.subschema_for::<McpParams>(), true),
        (
            "subgraph",
            generator.subschema_for::<SubgraphParams>(),
            true,
        ),
        ("pattern", generator.subschema_for::<PatternParams>(), true),
        (
            "interrupt",
            generator.subschema_for::<InterruptParams>(),
            true,
        ),
        ("collect", generator.subschema_for::<CollectParams>(), true),
        (
            "set",
            Schema::try_from(json!({
                "type": ["object", "null"],
                "description": "`set`: the fields to write and their values."
            }))
            .expect("an object"),
            false,
        ),
    ]
}

/// The built-in kinds, for the schema's `examples` of `kind`.
pub(crate) const BUILTIN_KINDS: &[&str] = &[
    "set",
    "interrupt",
    "collect",
    "subgraph",
    "model",
    "agent",
    "tool",
    "http",
    "mcp",
    "pattern",
];

/// The schema of the file format, with each built-in kind's parameters described.
pub(crate) fn graph_schema() -> Value {
    let mut generator = SchemaGenerator::default();
    let kinds = kinds(&mut generator);
    let root = generator.into_root_schema_for::<crate::GraphSpec>();
    let mut root = serde_json::to_value(root).unwrap_or(Value::Null);
    let Some(node) = root
        .pointer_mut("/$defs/NodeSpec")
        .and_then(Value::as_object_mut)
    else {
        return root;
    };
    let all_of: Vec<Value> = kinds
        .into_iter()
        .map(|(kind, schema, required)| {
            let mut then = json!({ "properties": { "with": schema } });
            if required {
                then["required"] = json!(["with"]);
            }
            json!({
                "if": { "properties": { "kind": { "const": kind } }, "required": ["kind"] },
                "then": then,
            })
        })
        .collect();
    node.insert("allOf".to_owned(), Value::Array(all_of));
    if let Some(kind) = node
        .get_mut("properties")
        .and_then(|p| p.get_mut("kind"))
        .and_then(Value::as_object_mut)
    {
        kind.insert("examples".to_owned(), json!(BUILTIN_KINDS));
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::keys;

    /// The property names of a `$defs` entry (a flattened struct's included).
    fn properties(root: &Value, def: &str) -> Vec<String> {
        let mut names: Vec<String> = root["$defs"][def]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{def} has properties"))
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn the_schema_names_the_keys_the_kinds_read() {
        let root = graph_schema();
        let plus = |a: &[&str], b: &[&str]| -> Vec<String> {
            sorted(&a.iter().chain(b).copied().collect::<Vec<_>>())
        };
        assert_eq!(properties(&root, "ModelParams"), sorted(keys::MODEL));
        assert_eq!(
            properties(&root, "AgentParams"),
            plus(keys::AGENT, &["messages"])
        );
        assert_eq!(
            properties(&root, "ToolParams"),
            sorted(
                &keys::TOOL
                    .iter()
                    .chain(keys::TOOL_OPTIONS)
                    .copied()
                    .filter(|k| *k != "max_calls_per_run")
                    .collect::<Vec<_>>()
            )
        );
        assert_eq!(properties(&root, "HttpParams"), sorted(keys::HTTP));
        assert_eq!(properties(&root, "HttpToolParams"), sorted(keys::HTTP_TOOL));
        assert_eq!(properties(&root, "McpParams"), sorted(keys::MCP));
        assert_eq!(
            properties(&root, "McpServerParams"),
            sorted(keys::MCP_SERVER)
        );
        assert_eq!(properties(&root, "SubgraphParams"), sorted(keys::SUBGRAPH));
        assert_eq!(
            properties(&root, "InterruptParams"),
            sorted(keys::INTERRUPT)
        );
        assert_eq!(properties(&root, "CollectParams"), sorted(keys::COLLECT));
        assert_eq!(
            properties(&root, "RegisteredTool"),
            plus(&["tool"], keys::TOOL_OPTIONS)
        );
        assert_eq!(
            properties(&root, "HttpToolItem"),
            plus(&["http"], keys::TOOL_OPTIONS)
        );
        assert_eq!(
            properties(&root, "McpToolItem"),
            plus(&["mcp"], keys::TOOL_OPTIONS)
        );
        assert_eq!(properties(&root, "Member"), plus(keys::AGENT, keys::MEMBER));
        assert_eq!(
            properties(&root, "ChatMember"),
            plus(keys::AGENT, &keys::MEMBER[..2])
        );
        let variants = root["$defs"]["PatternParams"]["oneOf"].as_array().unwrap();
        assert_eq!(variants.len(), keys::PATTERNS.len());
        for (variant, (name, keys)) in variants.iter().zip(keys::PATTERNS) {
            assert_eq!(variant["properties"]["pattern"]["const"], *name);
            let mut names: Vec<String> = variant["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            names.sort();
            assert_eq!(names, sorted(keys), "{name}");
        }
    }
}
