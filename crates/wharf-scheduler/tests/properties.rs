//! Properties of `schedule` over generated clusters and tasks: no placement breaks a filter,
//! every task gets one decision, a refused task really fits nowhere, spreading is even, and the
//! result depends on nothing but the input.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use proptest::sample::select;
use wharf_scheduler::{
    Availability, Constraint, Decision, Node, NodeId, Platform, Protocol, Resources, Role, Spread, Task, schedule,
};

const CPU: i64 = 1_000_000_000;
const GIB: i64 = 1 << 30;
const PORTS: [(Protocol, u16); 3] = [(Protocol::Tcp, 80), (Protocol::Tcp, 443), (Protocol::Udp, 53)];
const CONSTRAINTS: [&str; 8] = [
    "node.labels.zone==a",
    "node.labels.zone!=b",
    "engine.labels.disk==ssd",
    "node.role==manager",
    "node.role!=manager",
    "node.platform.arch==amd64",
    "node.hostname!=node-2",
    "node.id!=3",
];

fn platforms() -> Vec<Platform> {
    [("linux", "x86_64"), ("linux", "amd64"), ("linux", "arm64"), ("windows", "amd64")]
        .into_iter()
        .map(|(os, architecture)| Platform { os: os.into(), architecture: architecture.into() })
        .collect()
}

fn labels(key: &'static str, values: &'static [&'static str]) -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::option::weighted(0.7, select(values))
        .prop_map(move |value| value.map(|value| (key.to_owned(), value.to_owned())).into_iter().collect())
}

fn resources(max_cpus: i64, max_gib: i64) -> impl Strategy<Value = Resources> {
    (0..=max_cpus * 2, 0..=max_gib * 2)
        .prop_map(|(halves, half_gibs)| Resources { nano_cpus: halves * CPU / 2, memory_bytes: half_gibs * GIB / 2 })
}

fn ports() -> impl Strategy<Value = BTreeSet<(Protocol, u16)>> {
    proptest::collection::btree_set(select(PORTS.as_slice()), 0..=2)
}

/// A node whose id is filled in later, so that ids stay unique.
fn node() -> impl Strategy<Value = Node> {
    let description = (
        select(vec![Role::Manager, Role::Worker]),
        proptest::bool::weighted(0.85),
        select(vec![
            Availability::Active,
            Availability::Active,
            Availability::Active,
            Availability::Pause,
            Availability::Drain,
        ]),
        labels("zone", &["a", "b", "c"]),
        labels("disk", &["ssd", "hdd"]),
        select(platforms()),
    );
    let load = (resources(4, 4), resources(3, 3), ports(), 0..3u32, 0..3u32, select(NODE_COLLECTIONS.as_slice()));
    (description, load).prop_map(|((role, ready, availability, labels, engine_labels, platform), load)| {
        let (capacity, reserved, host_ports, s1_tasks, other_tasks, collection) = load;
        Node {
            id: 0,
            hostname: String::new(),
            role,
            ready,
            availability,
            labels,
            engine_labels,
            platform,
            resources: capacity,
            reserved,
            host_ports,
            tasks_by_service: BTreeMap::from([("s1".to_owned(), s1_tasks)]),
            total_tasks: s1_tasks + other_tasks,
            collection: collection.to_owned(),
        }
    })
}

fn nodes(max: usize) -> impl Strategy<Value = Vec<Node>> {
    proptest::collection::vec(node(), 0..=max).prop_map(|mut nodes| {
        for (index, node) in nodes.iter_mut().enumerate() {
            node.id = index as NodeId + 1;
            node.hostname = format!("node-{}", node.id);
        }
        nodes
    })
}

/// A task whose id is filled in later. Tasks of one service and version may differ in spec on
/// purpose: the scheduler must then not batch them together.
fn task() -> impl Strategy<Value = Task> {
    let spec = (
        select(vec!["s1", "s2", "s3"]),
        0..2u64,
        proptest::collection::vec(select(CONSTRAINTS.as_slice()), 0..=2),
        proptest::collection::vec(select(vec!["node.labels.zone", "engine.labels.disk"]), 0..=2),
        proptest::option::weighted(0.3, select(platforms())),
    );
    let needs = (
        resources(2, 2),
        ports(),
        proptest::option::weighted(0.2, 1..=9u64),
        proptest::option::weighted(0.5, select(TASK_COLLECTIONS.as_slice())),
    );
    (spec, needs).prop_map(|((service, version, constraints, preferences, platform), needs)| {
        let (reservations, ports, node, collection) = needs;
        let constraints = constraints.iter().map(|expr| Constraint::parse(expr)).collect::<Result<Vec<_>, _>>();
        let preferences = preferences.iter().map(|descriptor| Spread::parse(descriptor)).collect::<Result<Vec<_>, _>>();
        Task {
            id: String::new(),
            service_id: service.to_owned(),
            spec_version: version,
            constraints: constraints.unwrap_or_default(),
            preferences: preferences.unwrap_or_default(),
            platforms: platform.into_iter().collect(),
            reservations,
            host_ports: ports.into_iter().collect(),
            node,
            collection: collection.map(str::to_owned),
        }
    })
}

/// Tasks that come in runs of identical copies, as services do.
fn tasks(max_specs: usize) -> impl Strategy<Value = Vec<Task>> {
    proptest::collection::vec((task(), 1..=6usize), 0..=max_specs).prop_map(|specs| {
        let copies = specs.into_iter().flat_map(|(task, copies)| std::iter::repeat_n(task, copies));
        copies.enumerate().map(|(index, task)| Task { id: format!("t{index}"), ..task }).collect()
    })
}

/// A node's load as a checker rebuilds it from the decisions.
struct Load {
    cpus: i128,
    memory: i128,
    ports: BTreeSet<(Protocol, u16)>,
}

impl Load {
    fn of(node: &Node) -> Load {
        Load {
            cpus: i128::from(node.reserved.nano_cpus),
            memory: i128::from(node.reserved.memory_bytes),
            ports: node.host_ports.clone(),
        }
    }

    fn fits(&self, node: &Node, task: &Task) -> bool {
        self.cpus + i128::from(task.reservations.nano_cpus) <= i128::from(node.resources.nano_cpus)
            && self.memory + i128::from(task.reservations.memory_bytes) <= i128::from(node.resources.memory_bytes)
    }
}

/// The filters that do not depend on load, written out again as the oracle.
fn accepts(node: &Node, task: &Task) -> bool {
    node.ready
        && node.availability == Availability::Active
        && (task.platforms.is_empty() || task.platforms.iter().any(|platform| platform.supports(&node.platform)))
        && task.constraints.iter().all(|constraint| constraint.matches(node))
        && task.collection.as_deref().is_none_or(|c| {
            // Written out: the node's collection is on the task's path from the root, or
            // beneath the task's collection.
            let ancestors: Vec<String> = (1..=c.split('/').count())
                .map(|n| c.split('/').take(n).collect::<Vec<_>>().join("/"))
                .map(|p| if p.is_empty() { "/".to_owned() } else { p })
                .collect();
            ancestors.contains(&node.collection) || node.collection.starts_with(&format!("{c}/")) || c == "/"
        })
}

const NODE_COLLECTIONS: [&str; 5] = ["/System", "/Shared", "/Shared/ops", "/Shared/ops/db", "/"];
const TASK_COLLECTIONS: [&str; 5] = ["/", "/Shared/Private/alice", "/Shared/ops", "/System", "/Shared/opsx"];

/// Checks every placement against the node and the load before it; returns the final loads.
fn check_placements(nodes: &[Node], tasks: &[Task], decisions: &[Decision]) -> Result<Vec<Load>, TestCaseError> {
    let index: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(index, node)| (node.id, index)).collect();
    let mut loads: Vec<Load> = nodes.iter().map(Load::of).collect();
    let mut placed_on = vec![false; nodes.len()];
    for (task, decision) in tasks.iter().zip(decisions) {
        let Decision::Placed { node: id, .. } = decision else { continue };
        let Some(&at) = index.get(id) else { return Err(TestCaseError::fail(format!("unknown node {id}"))) };
        let (node, load) = (&nodes[at], &mut loads[at]);
        prop_assert!(accepts(node, task), "{} breaks a static filter on node {id}", task.id);
        prop_assert!(task.node.is_none_or(|wanted| wanted == *id), "{} ignored its pre-assigned node", task.id);
        for port in &task.host_ports {
            prop_assert!(load.ports.insert(*port), "{} reuses port {port:?} on node {id}", task.id);
        }
        load.cpus += i128::from(task.reservations.nano_cpus);
        load.memory += i128::from(task.reservations.memory_bytes);
        placed_on[at] = true;
    }
    // Reservations are never negative, so the final sum bounds every intermediate one.
    for ((node, load), placed) in nodes.iter().zip(&loads).zip(placed_on) {
        prop_assert!(!placed || load.cpus <= i128::from(node.resources.nano_cpus), "cpu over capacity on {}", node.id);
        prop_assert!(
            !placed || load.memory <= i128::from(node.resources.memory_bytes),
            "memory over capacity on {}",
            node.id
        );
    }
    Ok(loads)
}

/// Loads only grow during a call, so a task refused then fits on no node at the end either.
fn check_refusals(nodes: &[Node], tasks: &[Task], decisions: &[Decision], loads: &[Load]) -> Result<(), TestCaseError> {
    for (task, decision) in tasks.iter().zip(decisions) {
        let Decision::Unplaceable { reason, .. } = decision else { continue };
        prop_assert!(reason.starts_with("no suitable node"), "odd reason {reason:?}");
        let fits_somewhere = nodes.iter().zip(loads).any(|(node, load)| {
            task.node.is_none_or(|wanted| wanted == node.id)
                && accepts(node, task)
                && load.fits(node, task)
                && task.host_ports.iter().all(|port| !load.ports.contains(port))
        });
        prop_assert!(!fits_somewhere, "{} was refused ({reason}) yet fits a node", task.id);
    }
    Ok(())
}

fn spread_evenly(counts: impl IntoIterator<Item = usize>) -> bool {
    let counts: Vec<usize> = counts.into_iter().collect();
    match (counts.iter().min(), counts.iter().max()) {
        (Some(min), Some(max)) => max - min <= 1,
        _ => true,
    }
}

fn plain_node(id: NodeId, zone: Option<u8>) -> Node {
    Node {
        id,
        hostname: format!("node-{id}"),
        role: Role::Worker,
        ready: true,
        availability: Availability::Active,
        labels: zone.map(|zone| ("zone".to_owned(), format!("z{zone}"))).into_iter().collect(),
        engine_labels: BTreeMap::new(),
        platform: Platform { os: "linux".into(), architecture: "amd64".into() },
        resources: Resources { nano_cpus: 4 * CPU, memory_bytes: 8 * GIB },
        reserved: Resources::default(),
        host_ports: BTreeSet::new(),
        tasks_by_service: BTreeMap::new(),
        total_tasks: 0,
        collection: "/Shared".to_owned(),
    }
}

fn plain_tasks(count: usize, preferences: Vec<Spread>) -> Vec<Task> {
    (0..count)
        .map(|index| Task {
            id: format!("t{index}"),
            service_id: "web".into(),
            spec_version: 1,
            constraints: Vec::new(),
            preferences: preferences.clone(),
            platforms: Vec::new(),
            reservations: Resources::default(),
            host_ports: Vec::new(),
            node: None,
            collection: None,
        })
        .collect()
}

fn placements(decisions: &[Decision]) -> Option<Vec<NodeId>> {
    decisions
        .iter()
        .map(|decision| match decision {
            Decision::Placed { node, .. } => Some(*node),
            Decision::Unplaceable { .. } => None,
        })
        .collect()
}

proptest! {
    #[test]
    fn placements_keep_every_filter(nodes in nodes(8), tasks in tasks(10)) {
        let decisions = schedule(&nodes, &tasks);
        prop_assert_eq!(decisions.len(), tasks.len());
        let loads = check_placements(&nodes, &tasks, &decisions)?;
        check_refusals(&nodes, &tasks, &decisions, &loads)?;
    }

    #[test]
    fn every_task_gets_exactly_one_decision(nodes in nodes(6), tasks in tasks(10)) {
        let decisions = schedule(&nodes, &tasks);
        let decided: Vec<&str> = decisions.iter().map(Decision::task).collect();
        let wanted: Vec<&str> = tasks.iter().map(|task| task.id.as_str()).collect();
        prop_assert_eq!(decided, wanted);
    }

    #[test]
    fn the_same_input_gives_the_same_output(nodes in nodes(8), tasks in tasks(10), seed in any::<u64>()) {
        let first = schedule(&nodes, &tasks);
        prop_assert_eq!(&first, &schedule(&nodes, &tasks));
        // Node ids and label values decide ties, never the order of the node list.
        let mut shuffled = nodes.clone();
        let len = shuffled.len();
        for index in 0..len {
            shuffled.swap(index, (seed.rotate_left(index as u32) as usize) % len);
        }
        prop_assert_eq!(&first, &schedule(&shuffled, &tasks));
    }

    #[test]
    fn replicas_spread_evenly_over_nodes(node_count in 1..20u64, task_count in 0..300usize) {
        let nodes: Vec<Node> = (1..=node_count).map(|id| plain_node(id, None)).collect();
        let decisions = schedule(&nodes, &plain_tasks(task_count, Vec::new()));
        let Some(placed) = placements(&decisions) else { return Err(TestCaseError::fail("a task was refused")) };
        let per_node = nodes.iter().map(|node| placed.iter().filter(|&&id| id == node.id).count());
        prop_assert!(spread_evenly(per_node));
    }

    #[test]
    fn replicas_spread_evenly_over_zones(zones in proptest::collection::vec(proptest::option::weighted(0.85, 0..4u8), 1..20), task_count in 0..300usize) {
        let nodes: Vec<Node> = zones.iter().enumerate().map(|(index, zone)| plain_node(index as NodeId + 1, *zone)).collect();
        let preference = Spread::parse("node.labels.zone").map_err(|error| TestCaseError::fail(error.to_string()))?;
        let decisions = schedule(&nodes, &plain_tasks(task_count, vec![preference]));
        let Some(placed) = placements(&decisions) else { return Err(TestCaseError::fail("a task was refused")) };
        let mut per_zone: BTreeMap<Option<u8>, BTreeMap<NodeId, usize>> = BTreeMap::new();
        for node in &nodes {
            per_zone.entry(zones[node.id as usize - 1]).or_default().insert(node.id, 0);
        }
        for id in placed {
            if let Some(count) = per_zone.get_mut(&zones[id as usize - 1]).and_then(|zone| zone.get_mut(&id)) {
                *count += 1;
            }
        }
        prop_assert!(spread_evenly(per_zone.values().map(|zone| zone.values().sum())), "zones uneven: {per_zone:?}");
        for zone in per_zone.values() {
            prop_assert!(spread_evenly(zone.values().copied()), "nodes of a zone uneven: {per_zone:?}");
        }
    }
}
