//! Builders for the unit tests: a plain ready worker and a plain task, changed field by field.

use std::collections::{BTreeMap, BTreeSet};

use crate::constraint::Constraint;
use crate::model::{Availability, Node, NodeId, Platform, Resources, Role, Task};
use crate::spread::Spread;

pub const GIB: i64 = 1 << 30;
pub const CPU: i64 = 1_000_000_000;

/// A ready, active Linux worker with 4 CPUs and 8 GiB and nothing on it.
pub fn node(id: NodeId) -> Node {
    Node {
        id,
        hostname: format!("node-{id}"),
        role: Role::Worker,
        ready: true,
        availability: Availability::Active,
        labels: BTreeMap::new(),
        engine_labels: BTreeMap::new(),
        platform: Platform { os: "linux".into(), architecture: "x86_64".into() },
        resources: Resources { nano_cpus: 4 * CPU, memory_bytes: 8 * GIB },
        reserved: Resources::default(),
        host_ports: BTreeSet::new(),
        tasks_by_service: BTreeMap::new(),
        total_tasks: 0,
        collection: "/Shared".to_owned(),
    }
}

/// `node(id)` with one operator label.
pub fn labelled(id: NodeId, label: &str, value: &str) -> Node {
    let mut node = node(id);
    node.labels.insert(label.to_owned(), value.to_owned());
    node
}

/// A task of `service` with no requirements at all.
pub fn task(id: &str, service: &str) -> Task {
    Task {
        id: id.to_owned(),
        service_id: service.to_owned(),
        spec_version: 1,
        constraints: Vec::new(),
        preferences: Vec::new(),
        platforms: Vec::new(),
        reservations: Resources::default(),
        host_ports: Vec::new(),
        node: None,
        collection: None,
    }
}

/// `count` identical tasks of `service`, made from `template`.
pub fn tasks(count: usize, template: &Task) -> Vec<Task> {
    (0..count).map(|n| Task { id: format!("{}-{n}", template.service_id), ..template.clone() }).collect()
}

pub fn constraints(exprs: &[&str]) -> Vec<Constraint> {
    exprs.iter().map(|expr| Constraint::parse(expr).expect("valid constraint in test")).collect()
}

pub fn spread(descriptor: &str) -> Spread {
    Spread::parse(descriptor).expect("valid descriptor in test")
}
