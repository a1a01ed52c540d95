//! A cluster-sized call: 100,000 tasks of 100 services on 1,000 nodes must all be placed, one
//! task of each service per node. Timing belongs to a benchmark, not here; this only proves the
//! batch path completes at that size and stays even.

use std::collections::{BTreeMap, BTreeSet};

use wharf_scheduler::{Availability, Decision, Node, NodeId, Platform, Resources, Role, Task, schedule};

const NODES: u64 = 1_000;
const SERVICES: usize = 100;
const TASKS_PER_SERVICE: usize = 1_000;

fn node(id: NodeId) -> Node {
    Node {
        id,
        hostname: format!("node-{id}"),
        role: Role::Worker,
        ready: true,
        availability: Availability::Active,
        labels: BTreeMap::from([("zone".to_owned(), format!("z{}", id % 7))]),
        engine_labels: BTreeMap::new(),
        platform: Platform { os: "linux".into(), architecture: "x86_64".into() },
        resources: Resources { nano_cpus: 64_000_000_000, memory_bytes: 256 << 30 },
        reserved: Resources::default(),
        host_ports: BTreeSet::new(),
        tasks_by_service: BTreeMap::new(),
        total_tasks: 0,
        collection: "/Shared".to_owned(),
    }
}

fn task(service: usize, replica: usize) -> Task {
    Task {
        id: format!("s{service}.{replica}"),
        service_id: format!("s{service}"),
        spec_version: 1,
        constraints: Vec::new(),
        preferences: Vec::new(),
        platforms: vec![Platform { os: "linux".into(), architecture: "amd64".into() }],
        reservations: Resources { nano_cpus: 10_000_000, memory_bytes: 1 << 20 },
        host_ports: Vec::new(),
        node: None,
        collection: None,
    }
}

#[test]
fn a_hundred_thousand_tasks_fill_a_thousand_nodes_evenly() {
    let nodes: Vec<Node> = (1..=NODES).map(node).collect();
    let tasks: Vec<Task> =
        (0..SERVICES).flat_map(|service| (0..TASKS_PER_SERVICE).map(move |replica| task(service, replica))).collect();
    let decisions = schedule(&nodes, &tasks);
    assert_eq!(decisions.len(), tasks.len());

    let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut per_service_node: BTreeSet<(String, NodeId)> = BTreeSet::new();
    for (decision, task) in decisions.iter().zip(&tasks) {
        let Decision::Placed { node, .. } = decision else { panic!("refused: {decision}") };
        *per_node.entry(*node).or_insert(0) += 1;
        assert!(
            per_service_node.insert((task.service_id.clone(), *node)),
            "{} doubled up on node {node}",
            task.service_id
        );
    }
    assert_eq!(per_node.len() as u64, NODES);
    let (min, max) = (per_node.values().min(), per_node.values().max());
    assert_eq!((min, max), (Some(&SERVICES), Some(&SERVICES)));
}
