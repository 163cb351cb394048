//! `agentgraph memory`: the store's long-term memory items (`Context::memory`).

use std::io::Write;

use agentgraph_engine::items::{Filter, ItemQuery, Namespace};
use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::Ctx;
use crate::cli::{MemoryArgs, MemoryCommand};
use crate::output::{self, Table};

/// What `memory list --json` prints.
#[derive(Debug, Serialize)]
struct NamespacesJson {
    namespaces: Vec<Namespace>,
}

pub(crate) async fn run(ctx: &mut Ctx, args: MemoryArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let store = store.inspector.store();
    if !store.supports_items() {
        bail!("this store keeps no memory items");
    }
    let now = output::now_ms();
    match args.command {
        MemoryCommand::List { namespace } => {
            let namespaces = store
                .list_namespaces(&Namespace::parse(&namespace), now)
                .await?;
            if ctx.json {
                return Ok(output::json(&mut ctx.out, &NamespacesJson { namespaces })?);
            }
            if namespaces.is_empty() {
                writeln!(ctx.out, "no memory under `{namespace}`")?;
            }
            for ns in namespaces {
                writeln!(ctx.out, "{ns}")?;
            }
        }
        MemoryCommand::Get { namespace, key } => {
            let ns = Namespace::parse(&namespace);
            let Some(item) = store.get_item(&ns, &key, now).await? else {
                bail!("no item `{key}` in namespace `{namespace}`");
            };
            if ctx.json {
                return Ok(output::json(&mut ctx.out, &item)?);
            }
            writeln!(ctx.out, "{}", serde_json::to_string_pretty(&item.value)?)?;
        }
        MemoryCommand::Search {
            namespace,
            filter,
            limit,
            offset,
        } => {
            let mut query = ItemQuery::new(Namespace::parse(&namespace))
                .limit(limit)
                .offset(offset)
                .at(now);
            if let Some(filter) = filter {
                let filter: Filter = serde_json::from_str(&filter).with_context(|| {
                    format!("--filter `{filter}` is not a filter, such as {{\"eq\": [\"team\", \"red\"]}}")
                })?;
                query = query.filter(filter);
            }
            let hits = store.search_items(&query).await?;
            if ctx.json {
                return Ok(output::json(&mut ctx.out, &hits)?);
            }
            if hits.is_empty() {
                writeln!(ctx.out, "no item found")?;
                return Ok(());
            }
            let mut table = Table::new(vec!["NAMESPACE", "KEY", "WRITTEN", "EXPIRES", "VALUE"]);
            for hit in hits {
                let item = hit.item;
                table.row(vec![
                    item.namespace.to_string(),
                    item.key,
                    output::ago(item.updated_at_ms, now),
                    item.expires_at_ms
                        .map_or_else(String::new, |at| output::until(at, now)),
                    output::summary(&item.value.to_string(), 60),
                ]);
            }
            table.print(&mut ctx.out)?;
        }
    }
    Ok(())
}
