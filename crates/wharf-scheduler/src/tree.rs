//! The placement tree of one batch: the eligible nodes grouped by the values of each spread
//! descriptor in turn, with ordered sets at every level so that the next node is found, and the
//! tree brought up to date after a placement, in logarithmic time.
//!
//! Without preferences the tree is a single leaf holding every eligible node, which gives the
//! plain least-loaded choice.

use std::collections::{BTreeMap, BTreeSet};

use crate::load::NodeState;
use crate::model::{NodeId, Task};
use crate::spread::Spread;

/// A node's place in its leaf. The field order is the order of preference: fewest tasks of
/// the service, then fewest tasks in all, then the lowest id, so that the choice never depends
/// on the order of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NodeKey {
    pub service_tasks: u64,
    pub total_tasks: u64,
    pub id: NodeId,
    /// Index of the node in the scheduler's node list.
    pub index: usize,
}

/// One group of nodes sharing the values of the descriptors above it.
struct Branch {
    parent: Option<usize>,
    /// Tasks of the service on every node of the group, eligible at build time; a node that
    /// fills up later keeps counting, since its tasks are still in that group.
    service_tasks: u64,
    /// For inner branches: the children, ordered by their task count and then by label value
    /// (children are created in value order, so their index follows it).
    children: BTreeSet<(u64, usize)>,
    /// For leaves: the nodes that can still take a task of the batch.
    nodes: BTreeSet<NodeKey>,
    leaf: bool,
}

impl Branch {
    fn new(parent: Option<usize>, leaf: bool) -> Branch {
        Branch { parent, service_tasks: 0, children: BTreeSet::new(), nodes: BTreeSet::new(), leaf }
    }

    fn is_empty(&self) -> bool {
        if self.leaf { self.nodes.is_empty() } else { self.children.is_empty() }
    }
}

/// The placement tree of one batch; branch 0 is the root.
pub(crate) struct SpreadTree {
    branches: Vec<Branch>,
}

impl SpreadTree {
    /// Builds the tree over the `eligible` nodes (indices into `states`) for tasks like `task`.
    pub fn build(states: &[NodeState<'_>], eligible: &[usize], task: &Task) -> SpreadTree {
        let mut tree = SpreadTree { branches: Vec::new() };
        let level = Level { states, preferences: &task.preferences, service: &task.service_id };
        tree.build_branch(&level, None, eligible, 0);
        tree
    }

    /// Adds the branch for `members` at `depth` and returns its index.
    fn build_branch(&mut self, level: &Level<'_, '_>, parent: Option<usize>, members: &[usize], depth: usize) -> usize {
        let index = self.branches.len();
        let Some(descriptor) = level.preferences.get(depth) else {
            self.branches.push(leaf(level, parent, members));
            return index;
        };
        self.branches.push(Branch::new(parent, false));
        let mut by_value: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for &member in members {
            by_value.entry(descriptor.value_of(level.states[member].node)).or_default().push(member);
        }
        let mut total = 0u64;
        for group in by_value.values() {
            let child = self.build_branch(level, Some(index), group, depth + 1);
            let count = self.branches[child].service_tasks;
            total = total.saturating_add(count);
            self.branches[index].children.insert((count, child));
        }
        self.branches[index].service_tasks = total;
        index
    }

    /// The node the next task goes to: down the least-loaded branch at every level, then the
    /// first node of that leaf. Returns the leaf's index with the node's key.
    pub fn pick(&self) -> Option<(usize, NodeKey)> {
        let mut current = 0;
        loop {
            let branch = self.branches.get(current)?;
            if branch.leaf {
                return branch.nodes.first().map(|key| (current, *key));
            }
            current = branch.children.first()?.1;
        }
    }

    /// Records one more task on the node `placed` of leaf `leaf`. `after` is the node's new key,
    /// or `None` when the node can take no more tasks of the batch; branches left without nodes
    /// are dropped from their parents so that `pick` never walks into them.
    pub fn record_placement(&mut self, leaf: usize, placed: NodeKey, after: Option<NodeKey>) {
        let Some(branch) = self.branches.get_mut(leaf) else { return };
        branch.nodes.remove(&placed);
        if let Some(key) = after {
            branch.nodes.insert(key);
        }
        let mut current = leaf;
        loop {
            let branch = &mut self.branches[current];
            let before = branch.service_tasks;
            branch.service_tasks = before.saturating_add(1);
            let (after_count, empty, parent) = (branch.service_tasks, branch.is_empty(), branch.parent);
            let Some(parent) = parent else { return };
            let siblings = &mut self.branches[parent].children;
            siblings.remove(&(before, current));
            if !empty {
                siblings.insert((after_count, current));
            }
            current = parent;
        }
    }
}

/// What every level of the build needs.
struct Level<'s, 'a> {
    states: &'s [NodeState<'a>],
    preferences: &'s [Spread],
    service: &'s str,
}

/// A leaf holding `members`, keyed by their current load.
fn leaf(level: &Level<'_, '_>, parent: Option<usize>, members: &[usize]) -> Branch {
    let mut branch = Branch::new(parent, true);
    for &index in members {
        let key = node_key(&level.states[index], level.service, index);
        branch.service_tasks = branch.service_tasks.saturating_add(key.service_tasks);
        branch.nodes.insert(key);
    }
    branch
}

/// The key of the node at `index` for tasks of `service`, from its current load.
pub(crate) fn node_key(state: &NodeState<'_>, service: &str, index: usize) -> NodeKey {
    NodeKey {
        service_tasks: u64::from(state.service_tasks(service)),
        total_tasks: u64::from(state.total_tasks),
        id: state.node.id,
        index,
    }
}
