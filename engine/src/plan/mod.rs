//! The compiled plan: dense node ids, edges in flat vectors, every check done once; the
//! [`CompiledGraph`](crate::CompiledGraph) that holds it, its description as data and its
//! fingerprint.

pub(crate) mod compiled;
pub(crate) mod describe;
mod targets;

pub(crate) use targets::{Declared, RouterFn, Target};

use std::sync::Arc;
use std::time::Duration;

use fixedbitset::FixedBitSet;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, NodeFiltered, Reversed, Walker};
use rand::distr::weighted::WeightedIndex;
use xxhash_rust::xxh3::Xxh3;

use crate::define::builder::{EdgeDef, GraphBuilder};
use crate::define::node::{NodeFn, NodeKind};
use crate::define::retry::RetryPolicy;
use crate::define::route::{END, START};
use crate::define::state::{Field, State};
use crate::error::GraphError;
use crate::ids::{Fingerprint, NodeId, write_str};
use crate::plan::describe::{
    EdgeDescription, EdgeKind, FieldDescription, GraphDescription, JoinDescription, NodeDescription,
};

pub(crate) struct PlanNode<S: State> {
    pub(crate) name: Arc<str>,
    pub(crate) func: NodeFn<S>,
    /// The declared go-to targets, if the node may return a go-to.
    pub(crate) goto: Option<Declared>,
    pub(crate) retry: Option<Arc<RetryPolicy>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) interrupt_before: bool,
    pub(crate) interrupt_after: bool,
    /// Once triggered, the node waits until no other task is left (`GraphBuilder::defer`).
    pub(crate) deferred: bool,
    /// The node its final failure routes to (`GraphBuilder::on_error`).
    pub(crate) on_error: Option<NodeId>,
    /// The node that undoes its work when the run fails (`GraphBuilder::compensate`).
    pub(crate) compensation: Option<NodeId>,
}

pub(crate) enum PlanEdge<S: State> {
    Static(Target),
    Conditional {
        targets: Declared,
        router: RouterFn<S>,
    },
    Weighted {
        targets: Vec<(Target, f64)>,
        dist: WeightedIndex<f64>,
    },
    /// The source is predecessor number `pos` of join number `join`.
    Join {
        join: u32,
        pos: u32,
    },
}

pub(crate) struct PlanJoin {
    pub(crate) preds: Vec<NodeId>,
    pub(crate) target: NodeId,
    /// For each predecessor: the nodes from which it can still be reached without passing
    /// through the join's target. While the next step schedules one of them, the join waits.
    pub(crate) reach: Vec<FixedBitSet>,
    /// How many predecessors fire the join early (`preds.len()` for an ordinary join).
    pub(crate) quorum: usize,
    /// The steps after its pass began at the end of which the join fires at the latest.
    pub(crate) timeout: Option<u32>,
}

/// An immutable, validated plan. Slot 0 is `START`; slot `i + 1` is node `i`.
pub(crate) struct Plan<S: State> {
    pub(crate) nodes: Vec<PlanNode<S>>,
    offsets: Vec<u32>,
    edges: Vec<PlanEdge<S>>,
    pub(crate) joins: Vec<PlanJoin>,
    /// The deferred nodes (empty when there are none).
    pub(crate) deferred: FixedBitSet,
    pub(crate) fingerprint: Fingerprint,
    /// The graph's name (`GraphBuilder::named`); not part of the fingerprint.
    pub(crate) name: Option<Arc<str>>,
    /// Whether any field is overwrite-reduced (otherwise conflicts cannot happen).
    pub(crate) has_exclusive: bool,
    /// Whether any node has a compensation (otherwise a step records no completions).
    pub(crate) has_compensations: bool,
    /// The graph's structure: index 0 is START, `i + 1` node `i`, the last one END.
    pub(crate) structure: DiGraph<(), EdgeLabel>,
    /// What describes the state's fields.
    pub(crate) schema: S::Schema,
    /// What else the fingerprint covers (`GraphBuilder::source_digest`).
    source: Option<Arc<str>>,
    /// How states stored by older versions of the state type are upgraded.
    pub(crate) migrations: crate::define::migrate::Migrations<S>,
    /// What the graph's maker attached (`GraphBuilder::attach`); not part of the fingerprint.
    pub(crate) attachment: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// How an edge of the structure graph was declared (for DOT).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EdgeLabel {
    Static,
    Conditional,
    Weighted(f64),
    Join,
    Goto,
    /// An error edge (`GraphBuilder::on_error`).
    Error,
    /// From a node to its compensation (`GraphBuilder::compensate`): not a route, so it is
    /// added after the checks and join reaches.
    Compensate,
}

pub(crate) fn slot(source: Option<NodeId>) -> usize {
    source.map_or(0, |n| n as usize + 1)
}

impl<S: State> Plan<S> {
    /// The outgoing edges of a slot.
    #[inline]
    pub(crate) fn out(&self, slot: usize) -> &[PlanEdge<S>] {
        &self.edges[self.offsets[slot] as usize..self.offsets[slot + 1] as usize]
    }

    /// The name of a slot's source, for events and messages.
    pub(crate) fn source_name(&self, slot: usize) -> Arc<str> {
        match slot {
            0 => Arc::from(START),
            s => self.nodes[s - 1].name.clone(),
        }
    }

    pub(crate) fn target_name(&self, t: Target) -> Arc<str> {
        match t {
            Target::End => Arc::from(END),
            Target::Node(id) => self.nodes[id as usize].name.clone(),
        }
    }

    /// The state's fields.
    #[inline]
    pub(crate) fn fields(&self) -> &[Field] {
        S::fields(&self.schema)
    }

    pub(crate) fn compile(b: GraphBuilder<S>) -> Result<Self, GraphError> {
        let name = b.name.clone();
        let schema = b.schema.clone();
        let source = b.source.clone();
        let migrations = b.migrations.clone();
        let attachment = b.attachment.clone();
        let n = b.nodes.len();
        let end_ix = NodeIndex::new(n + 1);
        let ix = |t: Target| match t {
            Target::Node(id) => NodeIndex::new(id as usize + 1),
            Target::End => end_ix,
        };

        // Bucket the edges by source slot (stable: declaration order within a slot).
        let mut buckets: Vec<Vec<PlanEdge<S>>> = (0..n + 1).map(|_| Vec::new()).collect();
        let mut structure: DiGraph<(), EdgeLabel> = DiGraph::with_capacity(n + 2, b.edges.len());
        for _ in 0..n + 2 {
            structure.add_node(());
        }
        for edge in b.edges {
            match edge {
                EdgeDef::Static { from, to } => {
                    structure.add_edge(NodeIndex::new(slot(from)), ix(to), EdgeLabel::Static);
                    buckets[slot(from)].push(PlanEdge::Static(to));
                }
                EdgeDef::Conditional {
                    from,
                    targets,
                    router,
                } => {
                    for (_, t) in &targets {
                        structure.add_edge(
                            NodeIndex::new(slot(from)),
                            ix(*t),
                            EdgeLabel::Conditional,
                        );
                    }
                    buckets[slot(from)].push(PlanEdge::Conditional { targets, router });
                }
                EdgeDef::Weighted { from, targets } => {
                    for (t, w) in &targets {
                        structure.add_edge(
                            NodeIndex::new(slot(from)),
                            ix(*t),
                            EdgeLabel::Weighted(*w),
                        );
                    }
                    let dist = WeightedIndex::new(targets.iter().map(|(_, w)| *w))
                        .expect("weights were checked when the edge was added");
                    buckets[slot(from)].push(PlanEdge::Weighted { targets, dist });
                }
            }
        }
        for (j, join) in b.joins.iter().enumerate() {
            for (pos, p) in join.preds.iter().enumerate() {
                structure.add_edge(
                    ix(Target::Node(*p)),
                    ix(Target::Node(join.target)),
                    EdgeLabel::Join,
                );
                buckets[*p as usize + 1].push(PlanEdge::Join {
                    join: j as u32,
                    pos: pos as u32,
                });
            }
        }
        let mut gotos: Vec<Option<Declared>> = (0..n).map(|_| None).collect();
        for (from, targets) in b.gotos {
            for (_, t) in &targets {
                structure.add_edge(ix(Target::Node(from)), ix(*t), EdgeLabel::Goto);
            }
            gotos[from as usize] = Some(targets);
        }

        // Error edges route like edges; compensation edges do not (see `EdgeLabel`).
        let mut compensations = FixedBitSet::with_capacity(n);
        for (i, node) in b.nodes.iter().enumerate() {
            if let Some(handler) = node.settings.on_error {
                structure.add_edge(
                    ix(Target::Node(i as NodeId)),
                    ix(Target::Node(handler)),
                    EdgeLabel::Error,
                );
            }
            if let Some(c) = node.settings.compensation {
                compensations.insert(c as usize);
            }
        }

        if buckets[0].is_empty() {
            return Err(GraphError::NoEntry);
        }
        for (i, node) in b.nodes.iter().enumerate() {
            // A compensation needs no way out: its routes are not followed.
            if buckets[i + 1].is_empty() && gotos[i].is_none() && !compensations.contains(i) {
                return Err(GraphError::DeadEnd(node.name.to_string()));
            }
        }
        let mut reachable = reach_from(&structure, NodeIndex::new(0), None);
        // A compensation is reached when the node it compensates is.
        for (i, node) in b.nodes.iter().enumerate() {
            if let Some(c) = node.settings.compensation
                && reachable.contains(i + 1)
            {
                reachable.insert(c as usize + 1);
            }
        }
        if let Some(i) = (0..n).find(|i| !reachable.contains(i + 1)) {
            return Err(GraphError::Unreachable(b.nodes[i].name.to_string()));
        }

        let mut joins = Vec::with_capacity(b.joins.len());
        for join in &b.joins {
            let target = ix(Target::Node(join.target));
            let before = reach_from(&structure, NodeIndex::new(0), Some(target));
            let mut reach = Vec::with_capacity(join.preds.len());
            for p in &join.preds {
                let p_ix = ix(Target::Node(*p));
                if !before.contains(p_ix.index()) {
                    return Err(GraphError::JoinUnreachable {
                        target: b.nodes[join.target as usize].name.to_string(),
                        predecessor: b.nodes[*p as usize].name.to_string(),
                    });
                }
                let filtered = NodeFiltered::from_fn(&structure, |v: NodeIndex| v != target);
                let mut set = FixedBitSet::with_capacity(n);
                for v in Bfs::new(Reversed(&filtered), p_ix).iter(Reversed(&filtered)) {
                    if v.index() >= 1 && v.index() <= n {
                        set.insert(v.index() - 1);
                    }
                }
                reach.push(set);
            }
            joins.push(PlanJoin {
                preds: join.preds.clone(),
                target: join.target,
                reach,
                quorum: join.policy.quorum.unwrap_or(join.preds.len()),
                timeout: join.policy.timeout_steps,
            });
        }

        for (i, node) in b.nodes.iter().enumerate() {
            if let Some(c) = node.settings.compensation {
                structure.add_edge(
                    ix(Target::Node(i as NodeId)),
                    ix(Target::Node(c)),
                    EdgeLabel::Compensate,
                );
            }
        }

        let mut offsets = Vec::with_capacity(n + 2);
        let mut edges = Vec::with_capacity(buckets.iter().map(Vec::len).sum());
        offsets.push(0);
        for bucket in buckets {
            edges.extend(bucket);
            offsets.push(u32::try_from(edges.len()).expect("more than u32::MAX edges"));
        }
        let (default_retry, default_timeout) = (b.default_retry, b.default_timeout);
        let nodes: Vec<PlanNode<S>> = b
            .nodes
            .into_iter()
            .zip(gotos)
            .map(|(def, goto)| PlanNode {
                name: def.name,
                func: def.func,
                goto,
                retry: def.settings.retry.or_else(|| default_retry.clone()),
                timeout: def.settings.timeout.or(default_timeout),
                interrupt_before: def.settings.interrupt_before,
                interrupt_after: def.settings.interrupt_after,
                deferred: def.settings.deferred,
                on_error: def.settings.on_error,
                compensation: def.settings.compensation,
            })
            .collect();
        let mut deferred = FixedBitSet::new();
        if nodes.iter().any(|node| node.deferred) {
            deferred.grow(n);
            for (i, node) in nodes.iter().enumerate() {
                deferred.set(i, node.deferred);
            }
        }
        let mut plan = Plan {
            nodes,
            offsets,
            edges,
            joins,
            deferred,
            fingerprint: Fingerprint::from_u128(0),
            name,
            has_exclusive: S::fields(&schema).iter().any(|f| f.reducer.is_exclusive()),
            has_compensations: compensations.count_ones(..) > 0,
            structure,
            schema,
            source,
            migrations,
            attachment,
        };
        plan.fingerprint = plan.compute_fingerprint();
        Ok(plan)
    }

    fn compute_fingerprint(&self) -> Fingerprint {
        self.fingerprint_with(self.fields())
    }

    /// The fingerprint of this graph over a state with the fields `fields` (those of an older
    /// version of its state type, whose stored runs it resumes).
    pub(crate) fn fingerprint_with(&self, fields: &[Field]) -> Fingerprint {
        let mut h = Xxh3::new();
        write_str(&mut h, "agentgraph-plan-v1");
        let target = |h: &mut Xxh3, t: Target| write_str(h, &self.target_name(t));
        // Written only when set, so that graphs without one keep their fingerprints.
        if let Some(source) = &self.source {
            write_str(&mut h, "source");
            write_str(&mut h, source);
        }
        for f in fields {
            write_str(&mut h, f.name);
            write_str(&mut h, f.ty);
            write_str(&mut h, f.reducer.name());
        }
        h.update(&(self.nodes.len() as u64).to_le_bytes());
        for node in &self.nodes {
            write_str(&mut h, &node.name);
            write_str(&mut h, node.func.kind());
            if let NodeKind::Subgraph(child) = node.func.kind {
                h.update(&child.to_le_bytes());
            }
            // Written only when set, so that graphs without them keep their fingerprints.
            if node.deferred {
                write_str(&mut h, "deferred");
            }
            if let Some(handler) = node.on_error {
                write_str(&mut h, "on_error");
                target(&mut h, Target::Node(handler));
            }
            if let Some(c) = node.compensation {
                write_str(&mut h, "compensate");
                target(&mut h, Target::Node(c));
            }
            if let Some(goto) = &node.goto {
                write_str(&mut h, "goto");
                for (_, t) in goto {
                    target(&mut h, *t);
                }
            }
        }
        for slot in 0..=self.nodes.len() {
            write_str(&mut h, &self.source_name(slot));
            for edge in self.out(slot) {
                match edge {
                    PlanEdge::Static(t) => {
                        write_str(&mut h, "static");
                        target(&mut h, *t);
                    }
                    PlanEdge::Conditional { targets, .. } => {
                        write_str(&mut h, "conditional");
                        for (_, t) in targets {
                            target(&mut h, *t);
                        }
                    }
                    PlanEdge::Weighted { targets, .. } => {
                        write_str(&mut h, "weighted");
                        for (t, w) in targets {
                            target(&mut h, *t);
                            h.update(&w.to_bits().to_le_bytes());
                        }
                    }
                    PlanEdge::Join { join, pos } => {
                        write_str(&mut h, "join");
                        h.update(&join.to_le_bytes());
                        h.update(&pos.to_le_bytes());
                    }
                }
            }
        }
        for join in &self.joins {
            target(&mut h, Target::Node(join.target));
            if join.quorum != join.preds.len() {
                write_str(&mut h, "quorum");
                h.update(&(join.quorum as u64).to_le_bytes());
            }
            if let Some(steps) = join.timeout {
                write_str(&mut h, "timeout");
                h.update(&steps.to_le_bytes());
            }
        }
        Fingerprint::from_u128(h.digest128())
    }

    /// The graph as plain data.
    pub(crate) fn describe(&self) -> GraphDescription {
        let nodes = self
            .nodes
            .iter()
            .map(|node| NodeDescription {
                name: node.name.to_string(),
                kind: node.func.kind().to_owned(),
                interrupt_before: node.interrupt_before,
                interrupt_after: node.interrupt_after,
                deferred: node.deferred,
            })
            .collect();
        let n = self.nodes.len();
        let name = |ix: usize| -> String {
            match ix {
                0 => START.to_owned(),
                i if i == n + 1 => END.to_owned(),
                i => self.nodes[i - 1].name.to_string(),
            }
        };
        let edges = self
            .structure
            .raw_edges()
            .iter()
            .map(|e| {
                let (kind, weight) = match &e.weight {
                    EdgeLabel::Static => (EdgeKind::Static, None),
                    EdgeLabel::Conditional => (EdgeKind::Conditional, None),
                    EdgeLabel::Weighted(w) => (EdgeKind::Weighted, Some(*w)),
                    EdgeLabel::Join => (EdgeKind::Join, None),
                    EdgeLabel::Goto => (EdgeKind::Goto, None),
                    EdgeLabel::Error => (EdgeKind::Error, None),
                    EdgeLabel::Compensate => (EdgeKind::Compensate, None),
                };
                EdgeDescription {
                    from: name(e.source().index()),
                    to: name(e.target().index()),
                    kind,
                    weight,
                }
            })
            .collect();
        let fields = self
            .fields()
            .iter()
            .map(|f| FieldDescription {
                name: f.name.to_owned(),
                reducer: f.reducer.name().to_owned(),
                ty: f.ty.to_owned(),
            })
            .collect();
        let joins = self
            .joins
            .iter()
            .map(|j| JoinDescription {
                target: self.nodes[j.target as usize].name.to_string(),
                predecessors: j
                    .preds
                    .iter()
                    .map(|p| self.nodes[*p as usize].name.to_string())
                    .collect(),
                quorum: j.quorum,
                timeout_steps: j.timeout,
            })
            .collect();
        GraphDescription {
            fingerprint: self.fingerprint,
            nodes,
            edges,
            fields,
            joins,
        }
    }
}

/// The indexes reachable from `start`, never passing through `blocked`.
fn reach_from(
    g: &DiGraph<(), EdgeLabel>,
    start: NodeIndex,
    blocked: Option<NodeIndex>,
) -> FixedBitSet {
    let filtered = NodeFiltered::from_fn(g, |v: NodeIndex| Some(v) != blocked);
    let mut seen = FixedBitSet::with_capacity(g.node_count());
    for v in Bfs::new(&filtered, start).iter(&filtered) {
        seen.insert(v.index());
    }
    seen
}
