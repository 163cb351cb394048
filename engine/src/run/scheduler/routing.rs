//! Routing after a step: edges, go-tos, packets, joins (all, quorum, timeout) and deferred
//! nodes.

use super::*;

impl<S: State> Scheduler<S> {
    /// Schedules what follows a finished task (or `START`): its go-to if it returned one,
    /// else each of its edges.
    pub(super) fn route(
        &mut self,
        from: usize,
        key: u64,
        step: u64,
        goto: Option<Route>,
        state: &S,
    ) -> Result<()> {
        let plan = self.plan.clone();
        if let Some(route) = goto {
            if route.caught {
                return self.route_caught(from, route);
            }
            let node = &plan.nodes[from - 1];
            let Some(declared) = &node.goto else {
                return Err(Error::GotoNotDeclared(node.name.to_string()));
            };
            self.follow(route, declared, "go-to", from)?;
            // A go-to replaces the node's routing edges, not its arrival at joins: it finished.
            for edge in plan.out(from) {
                if let PlanEdge::Join { join, pos } = edge {
                    self.arrive(*join, *pos, step);
                }
            }
            return Ok(());
        }
        for (e, edge) in plan.out(from).iter().enumerate() {
            match edge {
                PlanEdge::Static(Target::Node(n)) => self.frontier.schedule(*n),
                PlanEdge::Static(Target::End) => {}
                PlanEdge::Conditional { targets, router } => {
                    let route = std::panic::catch_unwind(AssertUnwindSafe(|| router(state)))
                        .map_err(|panic| Error::Panicked {
                            what: format!(
                                "the router of the conditional edge from `{}`",
                                plan.source_name(from)
                            ),
                            message: panic_message(panic),
                        })?;
                    self.follow(route, targets, "conditional", from)?;
                }
                PlanEdge::Weighted { targets, dist } => {
                    let mut rng = ChaCha8Rng::seed_from_u64(draw_seed(self.config().seed, key, e));
                    let (target, weight) = targets[dist.sample(&mut rng)];
                    self.shared.events.emit(|| EventKind::WeightedChoice {
                        step,
                        from: plan.source_name(from),
                        to: plan.target_name(target),
                        weight,
                    });
                    if let Target::Node(n) = target {
                        self.frontier.schedule(n);
                    }
                }
                PlanEdge::Join { join, pos } => self.arrive(*join, *pos, step),
            }
        }
        Ok(())
    }

    /// Schedules a route's targets and packets, each of which must be declared.
    pub(super) fn follow(
        &mut self,
        route: Route,
        declared: &[(Arc<str>, Target)],
        kind: &'static str,
        from: usize,
    ) -> Result<()> {
        check_route(&route, declared, kind, || {
            self.plan.source_name(from).to_string()
        })?;
        for name in &route.targets {
            if let Some(Target::Node(n)) = find_target(declared, name) {
                self.frontier.schedule(n);
            }
        }
        for packet in route.packets {
            if let (Some(Target::Node(n)), Ok(input)) =
                (find_target(declared, &packet.node), packet.input)
            {
                self.frontier.send(n, input);
            }
        }
        Ok(())
    }

    /// A predecessor arrives at a join in `step`. After the join fired early, a predecessor
    /// that already arrived in the pass begins a new one.
    pub(super) fn arrive(&mut self, join: u32, pos: u32, step: u64) {
        let pass = &mut self.joins[join as usize];
        if pass.fired && pass.arrived[pos as usize] {
            pass.reset();
        }
        if !pass.active {
            pass.active = true;
            pass.began = step;
        }
        pass.arrived[pos as usize] = true;
    }

    /// After routing `step`: fires every join whose predecessors have all finished or can no
    /// longer arrive in this pass (if at least one finished), or that reached its quorum or
    /// its timeout; ends the passes of joins that fired early once nothing more can arrive;
    /// and, when nothing else is left to run, releases the deferred nodes.
    ///
    /// A predecessor can still arrive while a node that leads to it is scheduled or held, or
    /// while another join that has begun its pass (and so will fire) targets such a node:
    /// nested joins fire inner first, whatever order they were declared. When nothing is
    /// scheduled, joins that wait only on one another are released first (the first in plan
    /// order), then the deferred nodes.
    pub(super) fn resolve_joins(&mut self, step: u64) {
        let plan = self.plan.clone();
        loop {
            let mut fired = false;
            for (j, spec) in plan.joins.iter().enumerate() {
                let pass = &self.joins[j];
                if !pass.active {
                    continue;
                }
                let waiting = self.waiting(j, |reach| self.frontier.meets(reach), true);
                let pass = &self.joins[j];
                if pass.fired {
                    if !waiting {
                        // The pass ends: its late predecessors were ignored.
                        self.joins[j].reset();
                    }
                    continue;
                }
                let arrived = pass.arrived.iter().filter(|a| **a).count();
                let timed_out = spec
                    .timeout
                    .is_some_and(|t| step >= pass.began.saturating_add(u64::from(t)));
                if !waiting {
                    self.fire(j);
                    fired = true;
                } else if arrived >= spec.quorum || timed_out {
                    self.frontier.schedule(spec.target);
                    self.joins[j].fired = true;
                    fired = true;
                }
            }
            if fired {
                continue;
            }
            if !self.frontier.is_empty() {
                return;
            }
            // Nothing is scheduled. Joins that wait only on one another would wait forever:
            // release the first; then the deferred nodes.
            let free = (0..plan.joins.len()).find(|&j| {
                self.joins[j].active
                    && !self.waiting(j, |reach| self.frontier.holds_in(reach), false)
            });
            match free {
                Some(j) if self.joins[j].fired => self.joins[j].reset(),
                Some(j) => self.fire(j),
                None if self.frontier.holds() => self.frontier.release(),
                None => return,
            }
        }
    }

    /// Whether join `j` waits for a predecessor that has not arrived and that `pending` says
    /// can still arrive, or (with `joins`) that another join yet to fire leads to.
    fn waiting(&self, j: usize, pending: impl Fn(&FixedBitSet) -> bool, joins: bool) -> bool {
        let joins_ahead =
            |reach: &FixedBitSet| {
                joins
                    && self.plan.joins.iter().zip(&self.joins).enumerate().any(
                        |(k, (other, pass))| {
                            k != j
                                && pass.active
                                && !pass.fired
                                && reach.contains(other.target as usize)
                        },
                    )
            };
        self.plan.joins[j]
            .reach
            .iter()
            .zip(&self.joins[j].arrived)
            .any(|(reach, arrived)| !arrived && (pending(reach) || joins_ahead(reach)))
    }

    /// Fires join `j` at the end of its pass.
    pub(super) fn fire(&mut self, j: usize) {
        self.joins[j].reset();
        self.frontier.schedule(self.plan.joins[j].target);
    }
}

/// Checks a node's go-to against its declared go-to edges.
pub(super) fn check_goto<S: State>(plan: &Plan<S>, node: NodeId, route: &Route) -> Result<()> {
    let spec = &plan.nodes[node as usize];
    let Some(declared) = &spec.goto else {
        return Err(Error::GotoNotDeclared(spec.name.to_string()));
    };
    check_route(route, declared, "go-to", || spec.name.to_string())
}

fn find_target(declared: &[(Arc<str>, Target)], name: &str) -> Option<Target> {
    declared.iter().find(|(n, _)| &**n == name).map(|(_, t)| *t)
}

/// Checks that every target and packet of `route` is declared and every packet encoded.
fn check_route(
    route: &Route,
    declared: &[(Arc<str>, Target)],
    kind: &'static str,
    from: impl Fn() -> String,
) -> Result<()> {
    let undeclared = |target: &str| Error::UndeclaredTarget {
        kind,
        from: from(),
        target: target.to_owned(),
        declared: declared
            .iter()
            .map(|(n, _)| &**n)
            .collect::<Vec<_>>()
            .join(", "),
    };
    if let Some(message) = &route.failed {
        return Err(Error::RouteFailed {
            from: from(),
            message: message.to_string(),
        });
    }
    for name in &route.targets {
        if find_target(declared, name).is_none() {
            return Err(undeclared(name));
        }
    }
    for packet in &route.packets {
        if !matches!(find_target(declared, &packet.node), Some(Target::Node(_))) {
            return Err(undeclared(&packet.node));
        }
        if let Err(message) = &packet.input {
            return Err(Error::PacketEncode {
                from: from(),
                node: packet.node.to_string(),
                message: message.to_string(),
            });
        }
    }
    Ok(())
}
