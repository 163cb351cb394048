//! MCP tools for agentgraph: the tools of a [Model Context Protocol](https://modelcontextprotocol.io)
//! server as [`Tool`]s of the node library, through the official Rust SDK (`rmcp`).
//!
//! [`McpClient::spawn`] starts a server as a child process (the stdio transport),
//! [`McpClient::connect_http`] reaches one over streamable HTTP; either lists its tools and
//! hands each out as an [`McpTool`]: its name, description and argument schema are
//! the server's; a call sends `tools/call`. Put them in a [`ToolSet`](agentgraph_nodes::tool::ToolSet)
//! like any tool: its allow and deny lists, timeouts and retries apply to them.
//!
//! The connection is shared by all the client's tools and kept open. When the server process
//! has died, the next call starts it again (once) and sends the call there; a call that was in
//! flight when it died fails with [`McpError::ServerDied`] (it is not sent again by the
//! client: the server may have done part of it; a tool set's retries decide).
//!
//! # Examples
//!
//! ```no_run
//! use agentgraph_mcp::McpClient;
//! use agentgraph_nodes::tool::{ToolContext, ToolSet};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = McpClient::spawn(std::process::Command::new("my-mcp-server")).await?;
//! let mut tools = ToolSet::new().deny("delete_file");
//! for tool in client.tools() {
//!     tools = tools.with(tool);
//! }
//! let out = tools.call("read_file", serde_json::json!({ "path": "README.md" }), ToolContext::new("k")).await?;
//! println!("{}", out.content.to_text());
//! # Ok(())
//! # }
//! ```

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agentgraph_nodes::tool::{
    ArgumentsValidator, Tool, ToolContext, ToolError, ToolFuture, ToolOutput,
};
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, RequestMetaObject};
use rmcp::service::{Peer, RunningService, ServiceError};
use rmcp::transport::common::client_side_sse::ExponentialBackoff;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::sync::Mutex;

/// Why an MCP call or connection failed. A failed tool call carries it as the source of
/// [`ToolError::Failed`].
///
/// # Examples
///
/// ```
/// use agentgraph_mcp::McpError;
/// let e = McpError::ToolFailed { tool: "fail".into(), message: "no".into() };
/// assert_eq!(e.to_string(), "MCP tool `fail` returned an error: no");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The server process could not be started.
    #[error("cannot start the MCP server `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server started (or its URL was reached) but the MCP handshake or the listing of
    /// its tools failed, or nothing answers at the URL.
    #[error("MCP server `{program}` did not initialize: {reason}")]
    Initialize {
        /// The program or URL.
        program: String,
        /// What failed.
        reason: String,
    },
    /// The server process died (or closed its stdio, or the HTTP connection was lost) while a
    /// call was in flight. The next call starts it (or connects) again.
    #[error("MCP server `{program}` died during a call to `{tool}`")]
    ServerDied {
        /// The program or URL.
        program: String,
        /// The tool being called.
        tool: String,
    },
    /// The server answered the call with a protocol error (unknown tool, invalid
    /// parameters...), or the transport failed.
    #[error("MCP call to `{tool}` failed: {source}")]
    Protocol {
        /// The tool.
        tool: String,
        /// The SDK's error.
        source: ServiceError,
    },
    /// The tool ran and returned a result marked `isError`: its text is the message.
    #[error("MCP tool `{tool}` returned an error: {message}")]
    ToolFailed {
        /// The tool.
        tool: String,
        /// The result's text.
        message: String,
    },
}

/// Where the server is: a child process, or a URL.
#[derive(Debug, Clone)]
enum Endpoint {
    Child(Launch),
    Http(String),
}

impl Endpoint {
    fn name(&self) -> String {
        match self {
            Endpoint::Child(launch) => launch.name(),
            Endpoint::Http(url) => url.clone(),
        }
    }
}

/// How to start the server again: the parts of the `Command` given to `spawn`.
#[derive(Debug, Clone)]
struct Launch {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
}

impl Launch {
    fn from_command(command: &Command) -> Self {
        Launch {
            program: command.get_program().to_owned(),
            args: command.get_args().map(|a| a.to_owned()).collect(),
            envs: command
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
                .collect(),
            dir: command.get_current_dir().map(|d| d.to_owned()),
        }
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args);
        // A safety net under rmcp's own cleanup (a task it spawns when the transport drops):
        // the server never outlives its connection.
        cmd.kill_on_drop(true);
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    fn name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }
}

/// How a broken answer stream (or the server's standing event stream) is resumed over streamable
/// HTTP: [`HTTP_STREAM_RECONNECTS`] failed reconnects at most, after 250 ms, 500 ms and 1 s, or
/// after the server's own interval when it announced a longer one (the `retry` field of its SSE
/// stream, which rmcp honours as SEP-1699 asks; a stream that ended cleanly is first resumed after
/// that interval). rmcp's default tries again forever with doubling delays, so a call whose server
/// went away after the answer's first event would never end without a timeout.
fn stream_reconnects() -> ExponentialBackoff {
    let mut policy = ExponentialBackoff::default();
    policy.max_times = Some(HTTP_STREAM_RECONNECTS);
    policy.base_duration = Duration::from_millis(250);
    policy.max_delay = Some(Duration::from_secs(1));
    policy
}

/// How many failed reconnects of a broken answer stream over streamable HTTP (resumed with
/// the event id it had reached, after 250 ms, 500 ms, 1 s, or the longer `retry` interval
/// the server announced) end the call with a typed error; the next call connects again.
///
/// A server restarted under the same URL no longer knows the client's session: rmcp answers
/// its 404 by opening a new session and sending the request again
/// (`reinit_on_expired_session`, which the client sets), and if that fails the client drops
/// the connection and the next call connects again.
///
/// A reconnect that succeeds resets rmcp's count: a server that answers every resume with a
/// stream that ends empty keeps the call waiting (rmcp's client, rust-sdk issue 958), so give
/// MCP tools over HTTP a timeout (`ToolOptions::timeout`).
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_mcp::HTTP_STREAM_RECONNECTS, 3);
/// ```
pub const HTTP_STREAM_RECONNECTS: usize = 3;

/// A running server: its service and process id.
struct Connection {
    service: RunningService<RoleClient, ()>,
    pid: Option<u32>,
    generation: u64,
}

struct Inner {
    endpoint: Endpoint,
    conn: Mutex<Option<Connection>>,
    generation: std::sync::atomic::AtomicU64,
}

impl Inner {
    async fn start(&self) -> Result<Connection, McpError> {
        let initialize = |e: rmcp::service::ClientInitializeError| McpError::Initialize {
            program: self.endpoint.name(),
            reason: e.to_string(),
        };
        let (service, pid) = match &self.endpoint {
            Endpoint::Child(launch) => {
                let transport =
                    TokioChildProcess::new(launch.command()).map_err(|source| McpError::Spawn {
                        program: launch.name(),
                        source,
                    })?;
                let pid = transport.id();
                (().serve(transport).await.map_err(initialize)?, pid)
            }
            Endpoint::Http(url) => {
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                config.retry_config = Arc::new(stream_reconnects());
                // A restarted server's 404 for the old session: a new session, the request
                // sent again (rmcp's default today; set so that it stays so if that changes).
                config.reinit_on_expired_session = true;
                let transport = StreamableHttpClientTransport::from_config(config);
                (().serve(transport).await.map_err(initialize)?, None)
            }
        };
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        Ok(Connection {
            service,
            pid,
            generation,
        })
    }

    /// The open connection's peer, starting the server when there is none or it has closed.
    async fn peer(&self) -> Result<(Peer<RoleClient>, u64), McpError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref()
            && !c.service.is_closed()
            && !c.service.peer().is_transport_closed()
        {
            return Ok((c.service.peer().clone(), c.generation));
        }
        let c = self.start().await?;
        let out = (c.service.peer().clone(), c.generation);
        *conn = Some(c);
        Ok(out)
    }

    /// Drops the connection `generation` (the server died), unless another call has already
    /// replaced it.
    async fn forget(&self, generation: u64) {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(|c| c.generation == generation) {
            *conn = None;
        }
    }

    async fn call(&self, tool: &str, args: Value, key: &str) -> Result<CallToolResult, McpError> {
        let mut meta = RequestMetaObject::new();
        meta.insert(IDEMPOTENCY_META_KEY.into(), key.into());
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.meta = Some(meta);
        match args {
            Value::Object(map) => params = params.with_arguments(map),
            Value::Null => {}
            other => {
                let mut map = serde_json::Map::new();
                map.insert("value".into(), other);
                params = params.with_arguments(map);
            }
        }
        let (peer, generation) = self.peer().await?;
        match peer.call_tool(params.clone()).await {
            Ok(result) => Ok(result),
            // Not sent: the server was gone before the call reached it. Start it again once.
            Err(ServiceError::TransportSend(_)) => {
                self.forget(generation).await;
                let (peer, generation) = self.peer().await?;
                peer.call_tool(params)
                    .await
                    .map_err(|e| self.failure(tool, e, &peer, generation))
            }
            Err(e) => Err(self.failure(tool, e, &peer, generation)),
        }
    }

    fn failure(
        &self,
        tool: &str,
        e: ServiceError,
        peer: &Peer<RoleClient>,
        _generation: u64,
    ) -> McpError {
        if matches!(
            e,
            ServiceError::TransportClosed | ServiceError::TransportSend(_)
        ) || peer.is_transport_closed()
        {
            McpError::ServerDied {
                program: self.endpoint.name(),
                tool: tool.to_owned(),
            }
        } else {
            McpError::Protocol {
                tool: tool.to_owned(),
                source: e,
            }
        }
    }
}

/// A client of one MCP server, run as a child process (stdio) or reached over streamable
/// HTTP. Cheap to clone: clones and the
/// [`McpTool`]s it hands out share one connection.
///
/// # Examples
///
/// ```no_run
/// use agentgraph_mcp::McpClient;
/// # #[tokio::main]
/// # async fn main() -> Result<(), agentgraph_mcp::McpError> {
/// let mut cmd = std::process::Command::new("npx");
/// cmd.args(["-y", "@modelcontextprotocol/server-everything"]);
/// let client = McpClient::spawn(cmd).await?;
/// assert!(client.tools().iter().any(|t| agentgraph_nodes::tool::Tool::name(t) == "echo"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct McpClient {
    inner: Arc<Inner>,
    tools: Vec<McpTool>,
}

impl fmt::Debug for McpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClient")
            .field("server", &self.inner.endpoint.name())
            .field(
                "tools",
                &self.tools.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl McpClient {
    /// Starts `command` (its program, arguments, environment and directory; stdin and stdout
    /// are the transport, stderr is inherited), performs the MCP handshake and lists the
    /// server's tools. The same command starts the server again when it dies.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_mcp::{McpClient, McpError};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let e = McpClient::spawn(std::process::Command::new("/nonexistent/server")).await.unwrap_err();
    /// assert!(matches!(e, McpError::Spawn { .. }));
    /// # }
    /// ```
    pub async fn spawn(command: Command) -> Result<Self, McpError> {
        Self::start(Endpoint::Child(Launch::from_command(&command))).await
    }

    /// Connects to the MCP server at `url` over streamable HTTP (`http` or `https`),
    /// performs the handshake and lists its tools. When the connection is lost, the next call
    /// connects again (a new session).
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_mcp::{McpClient, McpError};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Nothing listens on port 9 of this machine.
    /// let e = McpClient::connect_http("http://127.0.0.1:9/mcp").await.unwrap_err();
    /// assert!(matches!(e, McpError::Initialize { .. }));
    /// # }
    /// ```
    pub async fn connect_http(url: impl Into<String>) -> Result<Self, McpError> {
        Self::start(Endpoint::Http(url.into())).await
    }

    async fn start(endpoint: Endpoint) -> Result<Self, McpError> {
        let inner = Arc::new(Inner {
            endpoint,
            conn: Mutex::new(None),
            generation: Default::default(),
        });
        let mut client = McpClient {
            inner,
            tools: Vec::new(),
        };
        client.refresh_tools().await?;
        Ok(client)
    }

    /// Lists the server's tools again (`tools/list`, every page).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(mut client: agentgraph_mcp::McpClient) -> Result<(), agentgraph_mcp::McpError> {
    /// client.refresh_tools().await?;
    /// assert!(!client.tools().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn refresh_tools(&mut self) -> Result<(), McpError> {
        let (peer, _) = self.inner.peer().await?;
        let listed = peer
            .list_all_tools()
            .await
            .map_err(|e| McpError::Initialize {
                program: self.inner.endpoint.name(),
                reason: e.to_string(),
            })?;
        self.tools = listed
            .into_iter()
            .map(|t| {
                let schema = Value::Object((*t.input_schema).clone());
                McpTool {
                    name: t.name.into_owned(),
                    description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
                    validator: Arc::new(ArgumentsValidator::new(&schema)),
                    schema,
                    client: self.inner.clone(),
                }
            })
            .collect();
        Ok(())
    }

    /// The server's tools, as listed by [`spawn`](Self::spawn) or the last
    /// [`refresh_tools`](Self::refresh_tools).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use agentgraph_nodes::tool::ToolSet;
    /// # fn f(client: agentgraph_mcp::McpClient) {
    /// let tools = client.tools().into_iter().fold(ToolSet::new(), ToolSet::with);
    /// assert_eq!(tools.len(), client.tools().len());
    /// # }
    /// ```
    pub fn tools(&self) -> Vec<McpTool> {
        self.tools.clone()
    }

    /// The process id of the running server, if one is running (never for a server reached
    /// over HTTP).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(client: agentgraph_mcp::McpClient) {
    /// assert!(client.server_pid().await.is_some());
    /// # }
    /// ```
    pub async fn server_pid(&self) -> Option<u32> {
        let conn = self.inner.conn.lock().await;
        conn.as_ref()
            .filter(|c| !c.service.is_closed())
            .and_then(|c| c.pid)
    }
}

/// The `_meta` key under which an [`McpTool`] call carries its task's idempotency key:
/// `agentgraph/idempotencyKey` (a prefixed key, as the MCP specification asks of keys that
/// are not its own).
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_mcp::IDEMPOTENCY_META_KEY, "agentgraph/idempotencyKey");
/// ```
pub const IDEMPOTENCY_META_KEY: &str = "agentgraph/idempotencyKey";

/// One tool of an MCP server, a [`Tool`]: its name, description and argument schema are the
/// server's. The arguments are checked against that schema first (a failure is
/// [`ToolError::InvalidArguments`], the server is not called). A call sends `tools/call` on
/// the client's connection, with the task's idempotency key
/// ([`ToolContext::idempotency_key`]) in the request's `_meta` as
/// [`IDEMPOTENCY_META_KEY`], the same on every attempt, so a server can answer a repeated
/// call (a retry, a resumed run) without doing its work twice; the result's text blocks
/// (joined by newlines) become a text output, its structured content a JSON output; a result
/// marked `isError` becomes [`ToolError::Failed`] with [`McpError::ToolFailed`] as source.
///
/// # Examples
///
/// ```no_run
/// use agentgraph_nodes::tool::{Tool, ToolContext};
/// # async fn f(client: agentgraph_mcp::McpClient) {
/// let add = client.tools().into_iter().find(|t| t.name() == "add").unwrap();
/// let out = add.call(serde_json::json!({ "a": 2, "b": 3 }), ToolContext::new("k")).await.unwrap();
/// assert_eq!(out.content.to_text(), "5");
/// # }
/// ```
#[derive(Clone)]
pub struct McpTool {
    name: String,
    description: String,
    schema: Value,
    validator: Arc<Result<ArgumentsValidator, String>>,
    client: Arc<Inner>,
}

impl fmt::Debug for McpTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpTool")
            .field("name", &self.name)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> &Value {
        &self.schema
    }

    fn call(&self, args: Value, ctx: ToolContext) -> ToolFuture<'_> {
        let checked = match &*self.validator {
            Ok(validator) => validator
                .check(&args)
                .map_err(|errors| ToolError::InvalidArguments {
                    tool: self.name.clone(),
                    errors,
                }),
            Err(reason) => Err(ToolError::InvalidSchema {
                tool: self.name.clone(),
                reason: reason.clone(),
            }),
        };
        Box::pin(async move {
            checked?;
            let failed = |source: McpError| ToolError::Failed {
                tool: self.name.clone(),
                source: Box::new(source),
            };
            let result = self
                .client
                .call(&self.name, args, ctx.idempotency_key())
                .await
                .map_err(failed)?;
            let text = texts(&result.content);
            if result.is_error == Some(true) {
                return Err(failed(McpError::ToolFailed {
                    tool: self.name.clone(),
                    message: text,
                }));
            }
            Ok(match result.structured_content {
                Some(value) => ToolOutput::json(value),
                None => ToolOutput::text(text),
            })
        })
    }
}

/// The text of the blocks joined by newlines; a block that is not text as its JSON.
fn texts(blocks: &[ContentBlock]) -> String {
    let mut out = String::new();
    for (i, block) in blocks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match block.as_text() {
            Some(t) => out.push_str(&t.text),
            None => out.push_str(&serde_json::to_string(block).unwrap_or_default()),
        }
    }
    out
}
