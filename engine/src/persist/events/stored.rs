//! The stored shape of events: the JSON shape of this version's public event types, as types
//! of its own.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::ids::{Fingerprint, TaskId};
use crate::persist::record::StoredInterruptKind;

/// A stored event.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredEvent {
    pub(super) seq: u64,
    pub(super) run_id: String,
    pub(super) kind: StoredKind,
}

/// A 128-bit id, as a hex string of 32 digits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hex(pub(super) u128);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:032x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(d)?;
        u128::from_str_radix(&text, 16)
            .map(Hex)
            .map_err(|e| serde::de::Error::custom(format_args!("invalid id `{text}`: {e}")))
    }
}

impl From<TaskId> for Hex {
    fn from(id: TaskId) -> Self {
        Hex(id.as_u128())
    }
}

impl From<Fingerprint> for Hex {
    fn from(id: Fingerprint) -> Self {
        Hex(id.as_u128())
    }
}

/// A duration, as `secs` and `nanos`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct StoredDuration {
    pub(super) secs: u64,
    pub(super) nanos: u32,
}

impl From<Duration> for StoredDuration {
    fn from(d: Duration) -> Self {
        StoredDuration {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

impl From<StoredDuration> for Duration {
    fn from(d: StoredDuration) -> Self {
        Duration::new(d.secs, d.nanos)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StoredMode {
    Sequential,
    Parallel,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredTask {
    pub(super) node: String,
    pub(super) task: Hex,
    pub(super) packet: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredInterrupt {
    pub(super) id: String,
    pub(super) kind: StoredInterruptKind,
    pub(super) node: String,
    pub(super) step: u64,
    pub(super) task: Hex,
    pub(super) payload: Value,
    pub(super) path: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredGraph {
    pub(super) fingerprint: Hex,
    pub(super) nodes: Vec<StoredNode>,
    pub(super) edges: Vec<StoredEdge>,
    pub(super) fields: Vec<StoredField>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) joins: Vec<StoredJoin>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredNode {
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) interrupt_before: bool,
    pub(super) interrupt_after: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) deferred: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredJoin {
    pub(super) target: String,
    pub(super) predecessors: Vec<String>,
    pub(super) quorum: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) timeout_steps: Option<u32>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StoredEdgeKind {
    Static,
    Conditional,
    Weighted,
    Join,
    Goto,
    Error,
    Compensate,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredEdge {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) kind: StoredEdgeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) weight: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredField {
    pub(super) name: String,
    pub(super) reducer: String,
    pub(super) ty: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredFieldView {
    pub(super) field: String,
    #[serde(flatten)]
    pub(super) change: StoredViewChange,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
pub(super) enum StoredViewChange {
    Set(Value),
    Extend(Value),
    Unavailable(String),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum StoredKind {
    RunStarted {
        mode: StoredMode,
        seed: u64,
        graph: Hex,
    },
    RunResumed {
        step: u64,
        restored: usize,
        graph: Hex,
    },
    StepStarted {
        step: u64,
        tasks: Vec<StoredTask>,
    },
    ThreadInvoked {
        invocation: u32,
        step: u64,
        fields: Vec<String>,
        graph: Hex,
    },
    NodeStarted {
        step: u64,
        node: String,
        task: Hex,
        attempt: u32,
    },
    NodeFinished {
        step: u64,
        node: String,
        task: Hex,
        duration: StoredDuration,
    },
    NodeFailed {
        step: u64,
        node: String,
        task: Hex,
        attempt: u32,
        error: String,
    },
    RetryScheduled {
        step: u64,
        node: String,
        task: Hex,
        attempt: u32,
        delay: StoredDuration,
    },
    NodeCancelled {
        step: u64,
        node: String,
        task: Hex,
    },
    Subgraph {
        step: u64,
        node: String,
        task: Hex,
        event: Box<StoredEvent>,
    },
    RunInterrupted {
        step: u64,
        interrupts: Vec<StoredInterrupt>,
    },
    Custom {
        step: u64,
        node: String,
        task: Hex,
        name: String,
        payload: Value,
    },
    WeightedChoice {
        step: u64,
        from: String,
        to: String,
        weight: f64,
    },
    StateUpdated {
        step: u64,
        fields: Vec<String>,
    },
    CheckpointSaved {
        step: u64,
        bytes: u64,
    },
    Graph {
        graph: StoredGraph,
    },
    StateView {
        step: u64,
        fields: Vec<StoredFieldView>,
    },
    RunFinished {
        steps: u64,
        duration: StoredDuration,
    },
    RunFailed {
        step: u64,
        error: String,
    },
    ErrorRouted {
        step: u64,
        node: String,
        task: Hex,
        handler: String,
        error: String,
    },
    CompensationStarted {
        step: u64,
        error: String,
        nodes: Vec<String>,
    },
    Token {
        step: u64,
        node: String,
        task: Hex,
        attempt: u32,
        index: u64,
        count: u32,
        text: String,
    },
    BudgetExceeded {
        step: u64,
        scope: String,
        budget: String,
        limit: u64,
        used: u64,
    },
}
