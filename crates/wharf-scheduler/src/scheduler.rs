//! The scheduling pass: pre-assigned tasks first, then batches of identical tasks, each placed
//! on the node the spread preferences and the load point to.

use std::collections::HashMap;

use crate::filter::{FailureCounts, first_failure, first_load_failure, no_suitable_node};
use crate::load::NodeState;
use crate::model::{Decision, Node, NodeId, Task};
use crate::tree::{SpreadTree, node_key};

/// Decides where each task goes: one [`Decision`] per task, in the order of `tasks`.
///
/// Tasks pre-assigned to a node (global services) are handled first, as swarmkit does, so that
/// the tasks meant for one node hold their place there before the replicated tasks fill it.
/// The other tasks are batched by service, spec version and spec, batches in the order of
/// their first task. Every placement adds to the node's load, so later tasks see it.
pub fn schedule(nodes: &[Node], tasks: &[Task]) -> Vec<Decision> {
    let mut states: Vec<NodeState<'_>> = nodes.iter().map(NodeState::new).collect();
    let mut decisions: Vec<Option<Decision>> = vec![None; tasks.len()];

    let mut by_id: HashMap<NodeId, usize> = HashMap::with_capacity(nodes.len());
    for (index, node) in nodes.iter().enumerate() {
        by_id.entry(node.id).or_insert(index);
    }
    for (position, task) in tasks.iter().enumerate() {
        if let Some(node) = task.node {
            decisions[position] = Some(schedule_preassigned(&mut states, &by_id, task, node));
        }
    }
    for batch in batches(tasks) {
        schedule_batch(&mut states, tasks, &batch, &mut decisions);
    }

    // Every task has its decision by construction; the fallback only keeps the promise of one
    // decision per task, with a reason, should that ever stop being true.
    decisions
        .into_iter()
        .zip(tasks)
        .map(|(decision, task)| decision.unwrap_or_else(|| unplaceable(task, no_suitable_node(""))))
        .collect()
}

/// Places a task that may only go to `node`, or says which filter refused it there.
fn schedule_preassigned<'a>(
    states: &mut [NodeState<'a>],
    by_id: &HashMap<NodeId, usize>,
    task: &'a Task,
    node: NodeId,
) -> Decision {
    let Some(state) = by_id.get(&node).and_then(|&index| states.get_mut(index)) else {
        return unplaceable(task, no_suitable_node(&format!("assigned node {node} is not in the cluster")));
    };
    match first_failure(state, task) {
        Some(filter) => unplaceable(task, no_suitable_node(&filter.explain(1))),
        None => {
            state.place(task);
            Decision::Placed { task: task.id.clone(), node }
        }
    }
}

/// Places the tasks of one batch (positions into `tasks`, all with the spec of the first).
fn schedule_batch<'a>(
    states: &mut [NodeState<'a>],
    tasks: &'a [Task],
    batch: &[usize],
    decisions: &mut [Option<Decision>],
) {
    let Some(spec) = batch.first().and_then(|&first| tasks.get(first)) else { return };
    let mut failures = FailureCounts::default();
    let mut eligible = Vec::with_capacity(states.len());
    for (index, state) in states.iter().enumerate() {
        match first_failure(state, spec) {
            Some(filter) => failures.record(filter),
            None => eligible.push(index),
        }
    }
    let mut tree = SpreadTree::build(states, &eligible, spec);
    for &position in batch {
        let task = &tasks[position];
        let Some((leaf, key)) = tree.pick() else {
            decisions[position] = Some(unplaceable(task, failures.reason()));
            continue;
        };
        let state = &mut states[key.index];
        state.place(task);
        // The batch's tasks are identical, so a node that can no longer take this one can take
        // none of the rest: it leaves the tree, and the filter it now fails joins the reason.
        let after = match first_load_failure(state, spec) {
            Some(filter) => {
                failures.record(filter);
                None
            }
            None => Some(node_key(state, &spec.service_id, key.index)),
        };
        tree.record_placement(leaf, key, after);
        decisions[position] = Some(Decision::Placed { task: task.id.clone(), node: key.id });
    }
}

/// Groups the tasks without a pre-assigned node into batches of identical tasks.
///
/// The batch key is the service and spec version, but tasks are also compared field by field:
/// a caller that sends two different specs under one version gets two batches, never a
/// placement checked against the wrong spec.
fn batches(tasks: &[Task]) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut by_key: HashMap<(&str, u64), Vec<usize>> = HashMap::new();
    for (position, task) in tasks.iter().enumerate().filter(|(_, task)| task.node.is_none()) {
        let candidates = by_key.entry((task.service_id.as_str(), task.spec_version)).or_default();
        let existing = candidates
            .iter()
            .copied()
            .find(|&batch| batches[batch].first().is_some_and(|&first| same_spec(&tasks[first], task)));
        match existing {
            Some(batch) => batches[batch].push(position),
            None => {
                candidates.push(batches.len());
                batches.push(vec![position]);
            }
        }
    }
    batches
}

/// Whether two tasks ask for the same placement.
fn same_spec(a: &Task, b: &Task) -> bool {
    a.service_id == b.service_id
        && a.spec_version == b.spec_version
        && a.constraints == b.constraints
        && a.preferences == b.preferences
        && a.platforms == b.platforms
        && a.reservations == b.reservations
        && a.host_ports == b.host_ports
        && a.node == b.node
}

fn unplaceable(task: &Task, reason: String) -> Decision {
    Decision::Unplaceable { task: task.id.clone(), reason }
}

#[cfg(test)]
mod tests;
