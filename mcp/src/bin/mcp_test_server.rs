//! The MCP server the tests of agentgraph-mcp run: tools `add {a, b}`, `echo {text}`,
//! `sleep {ms}`, `key {}` (the idempotency key in the call's `_meta`), `pid {}` (its process
//! id, to tell which server answered) and `fail {}` over stdio, built with rmcp's server side.
//! With `--http` it serves streamable HTTP on 127.0.0.1 instead, on a free port or the one
//! given with `--port N` (to start a server again where the last one was), and prints its
//! URL on stdout.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, RequestMetaObject};
use rmcp::{ServiceExt, schemars, tool, tool_router};
use serde::Deserialize;

#[derive(Debug, Clone, Default)]
struct TestServer;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// The first number.
    a: i64,
    /// The second number.
    b: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SleepArgs {
    /// How long to sleep, in milliseconds.
    ms: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct FailArgs {}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct KeyArgs {}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct PidArgs {}

#[tool_router(server_handler)]
impl TestServer {
    #[tool(description = "Adds two integers.")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Sends the text back.")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Sleeps, then answers `slept`.")]
    async fn sleep(&self, Parameters(SleepArgs { ms }): Parameters<SleepArgs>) -> String {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        "slept".to_owned()
    }

    #[tool(description = "Answers the idempotency key the call carries in its `_meta`.")]
    fn key(&self, meta: RequestMetaObject, Parameters(KeyArgs {}): Parameters<KeyArgs>) -> String {
        meta.get("agentgraph/idempotencyKey")
            .and_then(|k| k.as_str())
            .unwrap_or("none")
            .to_owned()
    }

    #[tool(description = "Answers the server's process id.")]
    fn pid(&self, Parameters(PidArgs {}): Parameters<PidArgs>) -> String {
        std::process::id().to_string()
    }

    #[tool(description = "Always fails (a result marked isError).")]
    fn fail(&self, Parameters(FailArgs {}): Parameters<FailArgs>) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text("this tool always fails")])
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--http") {
        return serve_http(port(&args)?).await;
    }
    let service = TestServer.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}

/// The port given with `--port N`, else 0 (a free port).
fn port(args: &[String]) -> Result<u16, Box<dyn std::error::Error>> {
    match args.iter().position(|a| a == "--port") {
        None => Ok(0),
        Some(i) => {
            let value = args.get(i + 1).ok_or("`--port` needs a port number")?;
            Ok(value
                .parse()
                .map_err(|e| format!("`--port {value}`: not a port number: {e}"))?)
        }
    }
}

async fn serve_http(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    use tokio::io::AsyncWriteExt;

    let service: StreamableHttpService<TestServer, LocalSessionManager> =
        StreamableHttpService::new(
            || Ok(TestServer),
            Default::default(),
            StreamableHttpServerConfig::default().with_sse_keep_alive(None),
        );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let url = format!("http://{}/mcp\n", listener.local_addr()?);
    let mut stdout = tokio::io::stdout();
    stdout.write_all(url.as_bytes()).await?;
    stdout.flush().await?;
    axum::serve(listener, router).await?;
    Ok(())
}
