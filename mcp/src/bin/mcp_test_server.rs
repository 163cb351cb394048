//! The MCP server the tests of agentgraph-mcp run: tools `add {a, b}`, `echo {text}`,
//! `sleep {ms}`, `key {}` (the idempotency key in the call's `_meta`) and `fail {}` over stdio, built with rmcp's server side. With `--http` it
//! serves streamable HTTP on 127.0.0.1 (a free port) instead, and prints its URL on stdout.

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

    #[tool(description = "Always fails (a result marked isError).")]
    fn fail(&self, Parameters(FailArgs {}): Parameters<FailArgs>) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text("this tool always fails")])
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--http") {
        return serve_http().await;
    }
    let service = TestServer.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}

async fn serve_http() -> Result<(), Box<dyn std::error::Error>> {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mcp\n", listener.local_addr()?);
    let mut stdout = tokio::io::stdout();
    stdout.write_all(url.as_bytes()).await?;
    stdout.flush().await?;
    axum::serve(listener, router).await?;
    Ok(())
}
