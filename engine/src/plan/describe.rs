//! [`GraphDescription`]: a compiled graph as plain data (nodes, edges, state fields), for
//! monitors, the command-line tool and DOT.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::define::route::{END, START};
use crate::ids::Fingerprint;

/// A compiled graph as plain data: what a monitor draws and the command-line tool reads.
/// Made by [`CompiledGraph::describe`](crate::CompiledGraph::describe); serializes to JSON
/// with serde, and renders as Graphviz DOT with [`to_dot`](GraphDescription::to_dot).
///
/// Runs with [`RunConfig::state_views`](crate::RunConfig::state_views) also store it in their
/// event log ([`EventKind::Graph`](crate::EventKind::Graph)), so a store can be inspected
/// without the program that made it.
///
/// # Examples
///
/// ```
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct S { n: u32 }
/// let mut b = GraphBuilder::<S>::new();
/// b.add_node("a", |_, _| async { Ok(SUpdate::new().n(1)) })
///     .add_edge(START, "a")
///     .add_edge("a", END);
/// let graph = b.compile()?;
///
/// let description = graph.describe();
/// assert_eq!(description.nodes[0].name, "a");
/// assert_eq!(description.fields[0].name, "n");
///
/// // Export it for `agentgraph dot graph.json`, and read it back.
/// let json = serde_json::to_string(&description)?;
/// let back: GraphDescription = serde_json::from_str(&json)?;
/// assert_eq!(back, description);
/// assert!(back.to_dot().contains("\"a\""));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GraphDescription {
    /// The graph's fingerprint.
    pub fingerprint: Fingerprint,
    /// The nodes, in plan order (`START` and `END` are not listed).
    pub nodes: Vec<NodeDescription>,
    /// The edges, by node name; `START` and `END` appear as [`START`] and [`END`].
    pub edges: Vec<EdgeDescription>,
    /// The state's fields, in declaration order.
    pub fields: Vec<FieldDescription>,
    /// The joins, in declaration order (their edges are also in `edges`, as
    /// [`EdgeKind::Join`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<JoinDescription>,
}

/// A node of a [`GraphDescription`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeDescription {
    /// The node's name.
    pub name: String,
    /// How it runs: `async`, `cpu`, `node` (a [`Node`](crate::Node) value) or `subgraph`.
    pub kind: String,
    /// Whether the run stops before it (`interrupt_before`).
    pub interrupt_before: bool,
    /// Whether the run stops after it (`interrupt_after`).
    pub interrupt_after: bool,
    /// Whether it is deferred ([`GraphBuilder::defer`](crate::GraphBuilder::defer)).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
}

/// A join of a [`GraphDescription`]: its predecessors, its target and when it fires
/// ([`JoinPolicy`](crate::JoinPolicy)).
///
/// # Examples
///
/// ```
/// # use agentgraph_engine::*;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, agentgraph_macros::State)]
/// # #[state(crate = agentgraph_engine)]
/// # struct S { n: u32 }
/// let mut b = GraphBuilder::<S>::new();
/// for name in ["a", "b", "c", "d"] {
///     b.add_node(name, |_, _| async { Ok(SUpdate::new()) });
/// }
/// b.add_edges(START, ["a", "b", "c"])
///     .add_join_with(["a", "b", "c"], "d", JoinPolicy::quorum(2).timeout_steps(3))
///     .add_edge("d", END)
///     .defer("d");
/// let description = b.compile()?.describe();
/// let join = &description.joins[0];
/// assert_eq!((join.target.as_str(), join.quorum, join.timeout_steps), ("d", 2, Some(3)));
/// assert_eq!(join.predecessors, ["a", "b", "c"]);
/// assert!(description.nodes[3].deferred);
/// let dot = description.to_dot();
/// assert!(dot.contains("join 2 of 3, timeout 3 steps"));
/// assert!(dot.contains("xlabel=\"deferred\""));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JoinDescription {
    /// The node the join fires.
    pub target: String,
    /// Its predecessors, in the order given.
    pub predecessors: Vec<String>,
    /// How many predecessors fire it early (all of them for an ordinary join).
    pub quorum: usize,
    /// The steps after its first predecessor at the end of which it fires at the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_steps: Option<u32>,
}

impl JoinDescription {
    /// The label of the join's edges in DOT: `join`, `join 2 of 3`, `join, timeout 3 steps`.
    fn label(&self) -> String {
        let mut label = String::from("join");
        if self.quorum != self.predecessors.len() {
            let _ = write!(label, " {} of {}", self.quorum, self.predecessors.len());
        }
        if let Some(t) = self.timeout_steps {
            let _ = write!(label, ", timeout {t} step{}", if t == 1 { "" } else { "s" });
        }
        label
    }
}

/// How an edge was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EdgeKind {
    /// `add_edge`.
    Static,
    /// One target of `add_conditional_edges`.
    Conditional,
    /// One target of `add_weighted_edges`.
    Weighted,
    /// From a predecessor of a join to its target.
    Join,
    /// A declared go-to target of a node.
    Goto,
    /// From a node to the handler of its final failure
    /// ([`GraphBuilder::on_error`](crate::GraphBuilder::on_error)).
    Error,
    /// From a node to its compensation
    /// ([`GraphBuilder::compensate`](crate::GraphBuilder::compensate)).
    Compensate,
}

/// An edge of a [`GraphDescription`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EdgeDescription {
    /// The source node (or [`START`]).
    pub from: String,
    /// The target node (or [`END`]).
    pub to: String,
    /// How it was declared.
    pub kind: EdgeKind,
    /// The weight of a weighted edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// A state field of a [`GraphDescription`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FieldDescription {
    /// The field's name.
    pub name: String,
    /// Its reducer: `overwrite`, `append`, `add`, `min`, `max`, `merge`, `union`, or the path
    /// of a custom function.
    pub reducer: String,
    /// Its type as written in the struct (empty when unknown).
    pub ty: String,
}

impl GraphDescription {
    /// The graph in Graphviz DOT: solid static edges, dashed conditional and weighted edges
    /// (with their weights), bold joins (labelled with their quorum and timeout), dotted go-to
    /// edges, red dashed error edges labelled `on error`, grey dotted compensation edges
    /// labelled `compensate`; CPU-bound nodes drawn as 3-D boxes, subgraphs as components, deferred nodes
    /// dashed with the outside label `deferred`.
    ///
    /// # Examples
    ///
    /// See [`GraphDescription`].
    pub fn to_dot(&self) -> String {
        let n = self.nodes.len();
        let id = |name: &str| -> usize {
            match name {
                START => 0,
                END => n + 1,
                _ => self
                    .nodes
                    .iter()
                    .position(|node| node.name == name)
                    .map_or(n + 2, |i| i + 1),
            }
        };
        let mut out = String::from("digraph agentgraph {\n    rankdir=TB;\n");
        let _ = writeln!(out, "    0 [label=\"START\", shape=circle];");
        for (i, node) in self.nodes.iter().enumerate() {
            let shape = match node.kind.as_str() {
                "subgraph" => "component",
                "cpu" => "box3d",
                _ => "box",
            };
            let deferred = if node.deferred {
                ", style=dashed, xlabel=\"deferred\""
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {} [label={}, shape={shape}{deferred}];",
                i + 1,
                dot_quote(&node.name)
            );
        }
        let _ = writeln!(out, "    {} [label=\"END\", shape=doublecircle];", n + 1);
        for e in &self.edges {
            let style = match (e.kind, e.weight) {
                (EdgeKind::Static, _) => String::new(),
                (EdgeKind::Weighted, Some(w)) => format!(" [style=dashed, label=\"{w}\"]"),
                (EdgeKind::Conditional | EdgeKind::Weighted, _) => " [style=dashed]".into(),
                (EdgeKind::Join, _) => {
                    let label = self
                        .joins
                        .iter()
                        .find(|j| j.target == e.to && j.predecessors.contains(&e.from))
                        .map_or_else(|| "join".to_owned(), JoinDescription::label);
                    format!(" [style=bold, label={}]", dot_quote(&label))
                }
                (EdgeKind::Goto, _) => " [style=dotted, label=\"go-to\"]".into(),
                (EdgeKind::Error, _) => {
                    " [style=dashed, color=red, fontcolor=red, label=\"on error\"]".into()
                }
                (EdgeKind::Compensate, _) => {
                    " [style=dotted, color=gray40, fontcolor=gray40, label=\"compensate\", constraint=false]"
                        .into()
                }
            };
            let _ = writeln!(out, "    {} -> {}{style};", id(&e.from), id(&e.to));
        }
        out.push_str("}\n");
        out
    }
}

/// Quotes a string for DOT, escaping what would end or break the quoted string.
fn dot_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::dot_quote;

    #[test]
    fn dot_quotes_escape() {
        assert_eq!(dot_quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
