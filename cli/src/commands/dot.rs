//! `agentgraph dot FILE`: an exported graph description as Graphviz DOT.

use std::io::{Read, Write};
use std::path::Path;

use agentgraph_engine::GraphDescription;
use anyhow::{Context as _, Result};
use serde::Serialize;

use super::Ctx;
use crate::output;

/// What `dot --json` prints.
#[derive(Debug, Serialize)]
struct DotJson {
    fingerprint: String,
    dot: String,
}

pub(crate) fn run(ctx: &mut Ctx, file: &Path) -> Result<()> {
    let (name, text) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the graph description from stdin")?;
        ("stdin".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        (file.display().to_string(), text)
    };
    let graph: GraphDescription = serde_json::from_str(&text).with_context(|| {
        format!(
            "{name} is not a graph description: export one from the program with \
             `serde_json::to_string(&graph.describe())`"
        )
    })?;
    let dot = graph.to_dot();
    if ctx.json {
        let json = DotJson {
            fingerprint: graph.fingerprint.to_string(),
            dot,
        };
        return Ok(output::json(&mut ctx.out, &json)?);
    }
    ctx.out.write_all(dot.as_bytes())?;
    Ok(())
}
