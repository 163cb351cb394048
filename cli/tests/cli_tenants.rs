//! `--tenant ID`: the command-line tool, run as a child process, reads and writes one
//! tenant's runs, events and memory; another tenant's run is not found, and nothing of it
//! changes.

mod common;

use std::sync::Arc;

use agentgraph::memory::{Item, Namespace};
use agentgraph::prelude::*;
use agentgraph::store::{TenantId, TenantStore, WriteBatch};
use common::{Work, agentgraph, graph};
use serde_json::json as j;

/// A store with acme's runs `a-done` and `a-asked` (waiting at an interrupt), globex's run
/// `g-asked`, a run of no tenant `plain`, and an item of each tenant under `users/ann`.
fn tenants_store(dir: &std::path::Path) {
    let store: Arc<dyn CheckpointStore> = Arc::new(SledStore::open(dir).unwrap());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for (run, topic, tenant) in [
            ("a-done", "rust", Some("acme")),
            ("a-asked", "ask", Some("acme")),
            ("g-asked", "ask", Some("globex")),
            ("plain", "rust", None),
        ] {
            let mut config = RunConfig::new()
                .store(store.clone())
                .run_id(run)
                .monitored();
            if let Some(t) = tenant {
                config = config.tenant(TenantId::new(t).unwrap());
            }
            let input = Work {
                topic: topic.to_owned(),
                ..Work::default()
            };
            let _ = graph().run_with(input, config).await;
        }
        for t in ["acme", "globex"] {
            let mut batch = WriteBatch::new();
            batch.put_item(Item::new(
                Namespace::new(["users", "ann"]),
                "secret",
                j!(format!("{t}-secret")),
            ));
            TenantStore::new(store.clone(), TenantId::new(t).unwrap())
                .commit(batch)
                .await
                .unwrap();
        }
        store.flush().await.unwrap();
    });
}

/// Runs `agentgraph --tenant tenant args...`; returns (exit code, stdout, stderr).
fn as_tenant(store: &std::path::Path, tenant: &str, args: &[&str]) -> (i32, String, String) {
    let output = agentgraph(store)
        .env_remove("AGENTGRAPH_TENANT")
        .args(["--tenant", tenant])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_tenant_reads_and_writes_its_own_runs_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    tenants_store(&path);

    // Lists: the tenant's runs, never another's.
    let (code, out, err) = as_tenant(&path, "acme", &["--json", "runs"]);
    assert_eq!(code, 0, "{err}");
    let runs = json_of(&out);
    let ids: Vec<&str> = runs
        .as_array()
        .or_else(|| runs["runs"].as_array())
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a-asked", "a-done"]);
    let (_, out, _) = as_tenant(&path, "globex", &["runs"]);
    assert!(out.contains("g-asked") && !out.contains("a-asked") && !out.contains("plain"));
    // The same list with the variable instead of the flag.
    let output = agentgraph(&path)
        .env("AGENTGRAPH_TENANT", "globex")
        .args(["runs"])
        .output()
        .unwrap();
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(out.contains("g-asked") && !out.contains("a-done"), "{out}");

    // Another tenant's run is not found, by every command that names a run.
    for args in [
        &["show", "g-asked"][..],
        &["history", "g-asked"],
        &["invocations", "g-asked"],
        &["state", "g-asked"],
        &["pending", "g-asked"],
        &["events", "g-asked"],
        &["prune", "g-asked", "--keep", "1"],
        &["delete", "g-asked"],
        &["show", "plain"],
    ] {
        let (code, out, err) = as_tenant(&path, "acme", args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains("no run"), "{args:?}: {err}");
        assert!(!err.contains("globex"), "{args:?}: {err}");
    }
    // Its own are found.
    let (code, out, err) = as_tenant(&path, "acme", &["show", "a-asked"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("a-asked"));
    let (code, _, err) = as_tenant(&path, "acme", &["events", "a-done"]);
    assert_eq!(code, 0, "{err}");

    // Memory: the tenant's items under the names it gave.
    let (code, out, err) = as_tenant(
        &path,
        "acme",
        &["--json", "memory", "get", "users/ann", "secret"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["value"], "acme-secret");
    let (_, out, _) = as_tenant(
        &path,
        "globex",
        &["--json", "memory", "get", "users/ann", "secret"],
    );
    assert_eq!(json_of(&out)["value"], "globex-secret");
    let (_, out, _) = as_tenant(&path, "acme", &["memory", "search", "--namespace", "users"]);
    assert!(
        out.contains("acme-secret") && !out.contains("globex-secret"),
        "{out}"
    );

    // A tenant deletes its own run; another tenant's is still there, untouched.
    let (code, _, err) = as_tenant(&path, "acme", &["delete", "a-done"]);
    assert_eq!(code, 0, "{err}");
    let all = String::from_utf8(
        agentgraph(&path)
            .env_remove("AGENTGRAPH_TENANT")
            .arg("runs")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!all.contains("a-done"), "{all}");
    assert!(
        all.contains("g-asked") && all.contains("a-asked") && all.contains("plain"),
        "{all}"
    );

    // A tenant id that is not one is refused before anything is read.
    let (code, _, err) = as_tenant(&path, "no spaces", &["runs"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tenant id"), "{err}");
}
