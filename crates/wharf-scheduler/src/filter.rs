//! The filter pipeline: which nodes may take a task, and for those that may not, the words
//! that explain it.

use crate::constraint::all_match;
use crate::load::NodeState;
use crate::model::{Availability, Task};

/// One filter of the pipeline. The order of [`Filter::PIPELINE`] is the order of evaluation and
/// of the explanations in a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    Ready,
    Resources,
    Platform,
    Collection,
    Constraints,
    HostPorts,
}

impl Filter {
    pub const PIPELINE: [Filter; 6] = [
        Filter::Ready,
        Filter::Resources,
        Filter::Platform,
        Filter::Collection,
        Filter::Constraints,
        Filter::HostPorts,
    ];

    /// The filters whose verdict can change when a task is placed on the node; the others
    /// depend only on the node's description and the task's spec.
    pub const LOAD_DEPENDENT: [Filter; 2] = [Filter::Resources, Filter::HostPorts];

    /// Whether the node passes this filter for `task`.
    pub fn passes(self, state: &NodeState<'_>, task: &Task) -> bool {
        let node = state.node;
        match self {
            Filter::Ready => node.ready && node.availability == Availability::Active,
            Filter::Resources => state.fits(task.reservations),
            Filter::Platform => {
                task.platforms.is_empty() || task.platforms.iter().any(|wanted| wanted.supports(&node.platform))
            }
            Filter::Collection => task.collection.as_deref().is_none_or(|c| related(c, &node.collection)),
            Filter::Constraints => all_match(&task.constraints, node),
            Filter::HostPorts => state.ports_free(&task.host_ports),
        }
    }

    /// The explanation of this filter having removed `nodes` nodes.
    pub fn explain(self, nodes: u32) -> String {
        let noun = if nodes == 1 { "node" } else { "nodes" };
        match self {
            Filter::Ready => format!("{nodes} {noun} not available for new tasks"),
            Filter::Resources => format!("insufficient resources on {nodes} {noun}"),
            Filter::Platform => format!("unsupported platform on {nodes} {noun}"),
            Filter::Collection => format!("{nodes} {noun} outside the service's collection"),
            Filter::Constraints => format!("scheduling constraints not satisfied on {nodes} {noun}"),
            Filter::HostPorts => format!("host-mode port already in use on {nodes} {noun}"),
        }
    }

    fn index(self) -> usize {
        match self {
            Filter::Ready => 0,
            Filter::Resources => 1,
            Filter::Platform => 2,
            Filter::Collection => 3,
            Filter::Constraints => 4,
            Filter::HostPorts => 5,
        }
    }
}

/// Whether a node of collection `node` may run a task of collection `task`: one is the other
/// or beneath it (a task of `/Shared/Private/alice` runs on the nodes of `/Shared`; a task of
/// `/Shared/ops` on those of `/Shared` and `/Shared/ops/...`, never on `/System`'s).
pub(crate) fn related(task: &str, node: &str) -> bool {
    let beneath = |path: &str, ancestor: &str| {
        ancestor == "/" || path == ancestor || path.strip_prefix(ancestor).is_some_and(|rest| rest.starts_with('/'))
    };
    beneath(task, node) || beneath(node, task)
}

/// The first filter of the pipeline that `state` fails for `task`, if any.
pub(crate) fn first_failure(state: &NodeState<'_>, task: &Task) -> Option<Filter> {
    Filter::PIPELINE.into_iter().find(|filter| !filter.passes(state, task))
}

/// The first load-dependent filter `state` fails for `task`: used after a placement, when the
/// other filters are known to pass still.
pub(crate) fn first_load_failure(state: &NodeState<'_>, task: &Task) -> Option<Filter> {
    Filter::LOAD_DEPENDENT.into_iter().find(|filter| !filter.passes(state, task))
}

/// How many nodes each filter removed; each node counts once, for the first filter it failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FailureCounts {
    removed: [u32; 6],
}

impl FailureCounts {
    pub fn record(&mut self, filter: Filter) {
        let count = &mut self.removed[filter.index()];
        *count = count.saturating_add(1);
    }

    /// Every filter that removed nodes, in pipeline order, joined by `; `.
    pub fn explain(&self) -> String {
        let parts: Vec<String> = Filter::PIPELINE
            .into_iter()
            .filter_map(|filter| {
                let removed = self.removed[filter.index()];
                (removed > 0).then(|| filter.explain(removed))
            })
            .collect();
        parts.join("; ")
    }

    /// The reason given for a task that no node can take.
    pub fn reason(&self) -> String {
        no_suitable_node(&self.explain())
    }
}

/// `no suitable node (<explanation>)`, or plain `no suitable node` when nothing explains it
/// (a cluster without nodes).
pub(crate) fn no_suitable_node(explanation: &str) -> String {
    if explanation.is_empty() { "no suitable node".to_owned() } else { format!("no suitable node ({explanation})") }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
