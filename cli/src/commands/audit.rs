//! `agentgraph audit`: the runs' audit trails, listed and verified.

use std::io::Write;

use agentgraph_checkpoint::audit::{self, AuditEntry, BrokenLink, ChainHead, hex};
use anyhow::{Result, bail};
use serde::Serialize;

use super::Ctx;
use crate::cli::{AuditArgs, AuditCommand};
use crate::output::{self, Table};

/// A broken audit chain, reported already: the tool exits with code 3.
#[derive(Debug)]
pub(crate) struct Tampered {
    /// How many chains are broken.
    broken: usize,
}

impl std::fmt::Display for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.broken {
            1 => f.write_str("an audit chain is broken"),
            n => write!(f, "{n} audit chains are broken"),
        }
    }
}

impl std::error::Error for Tampered {}

/// What `audit list --json` prints without a run.
#[derive(Debug, Serialize)]
struct RunsJson {
    runs: Vec<String>,
}

/// What `audit list RUN --json` prints.
#[derive(Debug, Serialize)]
struct EntriesJson {
    run_id: String,
    entries: Vec<AuditEntry>,
}

/// One chain as `audit verify --json` prints it.
#[derive(Debug, Serialize)]
struct ChainJson {
    run_id: String,
    /// Whether the chain is intact.
    intact: bool,
    /// The intact chain's entries and head.
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<ChainHead>,
    /// The first broken link.
    #[serde(skip_serializing_if = "Option::is_none")]
    broken: Option<BrokenLink>,
}

/// What `audit verify --json` prints.
#[derive(Debug, Serialize)]
struct VerifyJson {
    chains: Vec<ChainJson>,
    broken: usize,
}

pub(crate) async fn run(ctx: &mut Ctx, args: AuditArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let store = store.inspector.store().clone();
    if !store.supports_audit() {
        bail!("this store keeps no audit trails");
    }
    match args.command {
        AuditCommand::List { run: None } => {
            let runs = store.audited_runs().await?;
            if ctx.json {
                return Ok(output::json(&mut ctx.out, &RunsJson { runs })?);
            }
            if runs.is_empty() {
                writeln!(ctx.out, "no audit trails")?;
            }
            for run in runs {
                writeln!(ctx.out, "{run}")?;
            }
        }
        AuditCommand::List { run: Some(run) } => {
            let entries = store.audit(&run).await?;
            if ctx.json {
                let json = EntriesJson {
                    run_id: run,
                    entries,
                };
                return Ok(output::json(&mut ctx.out, &json)?);
            }
            if entries.is_empty() {
                writeln!(ctx.out, "run `{run}` has no audit trail")?;
                return Ok(());
            }
            let mut table = Table::new(vec!["SEQ", "TIME", "CALLER", "ACTION", "DETAILS"]);
            for e in &entries {
                let details = match &e.record.details {
                    serde_json::Value::Null => String::new(),
                    d => output::summary(&d.to_string(), 100),
                };
                table.row(vec![
                    e.seq.to_string(),
                    output::timestamp(e.record.at_ms),
                    e.record.caller.clone(),
                    e.record.action.to_string(),
                    details,
                ]);
            }
            table.print(&mut ctx.out)?;
        }
        AuditCommand::Verify { run, head } => {
            let runs = match run {
                Some(run) => vec![run],
                None => store.audited_runs().await?,
            };
            let expected_head = head.as_deref().map(parse_head).transpose()?;
            let mut chains = Vec::with_capacity(runs.len());
            for run in runs {
                let mut verdict = audit::verify(&*store, &run).await?;
                if let (Ok(intact), Some(expected)) = (&verdict, expected_head) {
                    let entries = store.get_audit(&run, None, usize::MAX).await?;
                    if !entries
                        .iter()
                        .any(|(_, b)| b.get(32..64) == Some(&expected[..]))
                    {
                        bail!(
                            "the entry with head hash {} is not in run `{run}`'s chain ({} entries, head {}): its newest entries were removed, or the chain was rewritten",
                            hex(&expected),
                            intact.entries,
                            hex(&intact.head)
                        );
                    }
                    verdict = Ok(*intact);
                }
                chains.push(match verdict {
                    Ok(head) => ChainJson {
                        run_id: run,
                        intact: true,
                        head: Some(head),
                        broken: None,
                    },
                    Err(broken) => ChainJson {
                        run_id: run,
                        intact: false,
                        head: None,
                        broken: Some(broken),
                    },
                });
            }
            let broken = chains.iter().filter(|c| !c.intact).count();
            if ctx.json {
                output::json(&mut ctx.out, &VerifyJson { chains, broken })?;
            } else {
                if chains.is_empty() {
                    writeln!(ctx.out, "no audit trails")?;
                }
                for c in &chains {
                    match (&c.head, &c.broken) {
                        (Some(head), _) => writeln!(
                            ctx.out,
                            "{}: intact, {} {}, head {}",
                            c.run_id,
                            head.entries,
                            if head.entries == 1 {
                                "entry"
                            } else {
                                "entries"
                            },
                            hex(&head.head)
                        )?,
                        (_, Some(broken)) => writeln!(
                            ctx.out,
                            "{}: BROKEN at entry {} (position {}): {}",
                            c.run_id, broken.seq, broken.position, broken.kind
                        )?,
                        _ => {}
                    }
                }
            }
            if broken > 0 {
                return Err(Tampered { broken }.into());
            }
        }
    }
    Ok(())
}

/// A head hash given on the command line: 64 hex digits.
fn parse_head(text: &str) -> Result<audit::Digest> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`--head {text}` is not a hash of 64 hex digits");
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}
