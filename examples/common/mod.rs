//! What the model examples share: the model the environment names, the check that it answers,
//! a search over this repository's documentation, and `main`'s exit code.

// Each example uses the part it needs.
#![allow(dead_code)]

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use agentgraph_nodes::model::openai::OpenAiModel;

/// Where a local model server listens when `OPENAI_BASE_URL` is not set.
pub(crate) const LOCAL: &str = "http://127.0.0.1:8080/v1";

/// The model the environment names (`OPENAI_BASE_URL`, `OPENAI_MODEL`, `OPENAI_API_KEY`), or
/// the local server's, and its base URL.
pub(crate) fn model() -> Result<(OpenAiModel, String), Box<dyn std::error::Error>> {
    let base = std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| LOCAL.to_owned());
    let name = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
    let mut builder = OpenAiModel::builder(name)
        .base_url(&base)
        .timeout(Duration::from_secs(120));
    if std::env::var_os("OPENAI_API_KEY").is_none() {
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
            "no model server answers at {base}: start one with `export OPENAI_BASE_URL=$(scripts/model-server start)`, or set OPENAI_BASE_URL and OPENAI_API_KEY"
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
