//! What the model examples share: the model the environment names, the check that it answers,
//! a search over this repository's documentation, and `main`'s exit code.

// Each example uses the part it needs.
#![allow(dead_code)]

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use agentgraph_nodes::model::openai::OpenAiModel;

/// Where a local model server listens when `OPENAI_BASE_URL` is not set and
/// `scripts/model-server` started none: llama.cpp's `llama-server` default.
pub(crate) const LOCAL: &str = "http://127.0.0.1:8080/v1";

/// The name `scripts/model-server` serves SmolLM2 under (its `--model_alias`).
const LOCAL_MODEL: &str = "smollm2";

/// The base URL of the server `scripts/model-server start` started, if it runs: the script
/// writes it next to its default pid file, `$TMPDIR/agentgraph-model-server.pid.url`.
fn started_server() -> Option<String> {
    let file = std::env::temp_dir().join("agentgraph-model-server.pid.url");
    let url = std::fs::read_to_string(file).ok()?;
    Some(url.trim().to_owned()).filter(|u| !u.is_empty())
}

/// A variable of the environment, unless unset or empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The model the environment names (`OPENAI_BASE_URL`, `OPENAI_MODEL`, `OPENAI_API_KEY`), or
/// else the one `scripts/model-server start` serves (SmolLM2), or else a server on
/// [`LOCAL`]; and its base URL.
pub(crate) fn model() -> Result<(OpenAiModel, String), Box<dyn std::error::Error>> {
    let (base, default_name) = match var("OPENAI_BASE_URL") {
        Some(base) => (base, "gpt-4o-mini"),
        None => match started_server() {
            Some(base) => (base, LOCAL_MODEL),
            None => (LOCAL.to_owned(), LOCAL_MODEL),
        },
    };
    let name = var("OPENAI_MODEL").unwrap_or_else(|| default_name.to_owned());
    let mut builder = OpenAiModel::builder(name)
        .base_url(&base)
        .timeout(Duration::from_secs(120));
    if var("OPENAI_API_KEY").is_none() {
        builder = builder.no_api_key();
    }
    Ok((builder.build()?, base))
}

/// Says in one line how to get a model when none answers at `base`, before anything is
/// stored.
pub(crate) async fn ensure_reachable(base: &str) -> Result<(), Box<dyn std::error::Error>> {
    let reachable = reqwest::Client::new()
        .get(format!("{}/models", base.trim_end_matches('/')))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok();
    if reachable {
        Ok(())
    } else {
        Err(format!(
            "no model server answers at {base}: start one with `scripts/model-server start` (SmolLM2 on llama.cpp; installed the first time), or set OPENAI_BASE_URL and OPENAI_API_KEY"
        )
        .into())
    }
}

/// Up to 5 lines of `files` (paths under `root`) that contain `query` (case-insensitive), as
/// `file:line: text`.
pub(crate) fn search_docs(root: &Path, files: &[&str], query: &str) -> String {
    let query = query.to_lowercase();
    let mut hits = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if line.to_lowercase().contains(&query) && hits.len() < 5 {
                hits.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    if hits.is_empty() {
        format!("nothing in the docs mentions {query:?}")
    } else {
        hits.join("\n")
    }
}

/// `main`'s exit code: the error printed in one line.
pub(crate) fn exit(result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
