//! The load of each node as it grows during one [`crate::schedule`] call, so that every
//! placement sees the tasks placed before it.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Node, Protocol, Resources, Task};

/// A node together with what it carries so far in this call.
pub(crate) struct NodeState<'a> {
    pub node: &'a Node,
    pub reserved: Resources,
    pub host_ports: BTreeSet<(Protocol, u16)>,
    /// Tasks placed in this call, per service; the node's own counts come on top.
    placed_by_service: BTreeMap<&'a str, u32>,
    pub total_tasks: u32,
}

impl<'a> NodeState<'a> {
    pub fn new(node: &'a Node) -> NodeState<'a> {
        NodeState {
            node,
            reserved: node.reserved,
            host_ports: node.host_ports.clone(),
            placed_by_service: BTreeMap::new(),
            total_tasks: node.total_tasks,
        }
    }

    /// Tasks of `service` on the node: those it already had and those placed in this call.
    pub fn service_tasks(&self, service: &str) -> u32 {
        let before = self.node.tasks_by_service.get(service).copied().unwrap_or(0);
        let placed = self.placed_by_service.get(service).copied().unwrap_or(0);
        before.saturating_add(placed)
    }

    /// Whether `request` fits in what the node has left, CPU and memory separately.
    pub fn fits(&self, request: Resources) -> bool {
        let fits_one = |request: i64, capacity: i64, reserved: i64| {
            i128::from(request.max(0)) <= i128::from(capacity) - i128::from(reserved)
        };
        fits_one(request.nano_cpus, self.node.resources.nano_cpus, self.reserved.nano_cpus)
            && fits_one(request.memory_bytes, self.node.resources.memory_bytes, self.reserved.memory_bytes)
    }

    /// Whether none of `ports` is already published on the node.
    pub fn ports_free(&self, ports: &[(Protocol, u16)]) -> bool {
        ports.iter().all(|port| !self.host_ports.contains(port))
    }

    /// Records `task` on the node.
    pub fn place(&mut self, task: &'a Task) {
        // A negative reservation is counted as none, so that it can never free capacity that
        // other tasks hold.
        self.reserved.nano_cpus = self.reserved.nano_cpus.saturating_add(task.reservations.nano_cpus.max(0));
        self.reserved.memory_bytes = self.reserved.memory_bytes.saturating_add(task.reservations.memory_bytes.max(0));
        self.host_ports.extend(task.host_ports.iter().copied());
        let placed = self.placed_by_service.entry(task.service_id.as_str()).or_insert(0);
        *placed = placed.saturating_add(1);
        self.total_tasks = self.total_tasks.saturating_add(1);
    }
}
