use std::collections::BTreeMap;

use super::*;
use crate::model::{Availability, Protocol, Resources};
use crate::testutil::{CPU, constraints, labelled, node, spread, task, tasks};

/// How many tasks went to each node.
fn per_node(decisions: &[Decision]) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for decision in decisions {
        if let Decision::Placed { node, .. } = decision {
            *counts.entry(*node).or_insert(0) += 1;
        }
    }
    counts
}

fn reasons(decisions: &[Decision]) -> Vec<&str> {
    decisions
        .iter()
        .filter_map(|decision| match decision {
            Decision::Unplaceable { reason, .. } => Some(reason.as_str()),
            Decision::Placed { .. } => None,
        })
        .collect()
}

#[test]
fn no_nodes_means_no_suitable_node() {
    let decisions = schedule(&[], &[task("t1", "web")]);
    assert_eq!(decisions, vec![Decision::Unplaceable { task: "t1".into(), reason: "no suitable node".into() }]);
}

#[test]
fn no_tasks_means_no_decisions() {
    assert!(schedule(&[node(1)], &[]).is_empty());
}

#[test]
fn prefers_fewest_service_tasks_then_fewest_tasks_then_lowest_id() {
    let mut busy_with_web = node(1);
    busy_with_web.tasks_by_service.insert("web".into(), 2);
    busy_with_web.total_tasks = 2;
    let mut busy_with_db = node(2);
    busy_with_db.tasks_by_service.insert("db".into(), 5);
    busy_with_db.total_tasks = 5;
    let nodes = [busy_with_web, busy_with_db, node(4), node(3)];
    let decisions = schedule(&nodes, &tasks(4, &task("", "web")));
    let placed: Vec<NodeId> = decisions
        .iter()
        .filter_map(|decision| match decision {
            Decision::Placed { node, .. } => Some(*node),
            Decision::Unplaceable { .. } => None,
        })
        .collect();
    // Nodes 3 and 4 are empty; node 2 has no web task but five others; node 1 has two web tasks.
    assert_eq!(placed, vec![3, 4, 2, 3]);
}

#[test]
fn decisions_come_in_input_order() {
    let mut list = vec![task("a", "web"), task("b", "db"), task("c", "web")];
    list[1].node = Some(2);
    let decisions = schedule(&[node(1), node(2)], &list);
    let ids: Vec<&str> = decisions.iter().map(Decision::task).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn refusal_names_the_constraint_filter() {
    let mut wants = task("t1", "web");
    wants.constraints = constraints(&["node.labels.gpu==yes"]);
    let decisions = schedule(&[node(1), node(2), node(3)], &[wants]);
    assert_eq!(reasons(&decisions), ["no suitable node (scheduling constraints not satisfied on 3 nodes)"]);
}

#[test]
fn refusal_lists_every_filter_in_pipeline_order() {
    let mut down = node(1);
    down.ready = false;
    let mut drained = node(2);
    drained.availability = Availability::Drain;
    let mut small = node(3);
    small.resources.nano_cpus = CPU / 2;
    let mut taken = node(4);
    taken.host_ports.insert((Protocol::Tcp, 443));
    let unlabelled = node(5);
    let nodes = [down, drained, small, taken, unlabelled, labelled(6, "ssd", "no")];
    let mut wants = task("t1", "web");
    wants.reservations = Resources { nano_cpus: CPU, memory_bytes: 0 };
    wants.host_ports = vec![(Protocol::Tcp, 443)];
    wants.constraints = constraints(&["node.labels.ssd!=no", "node.hostname!=node-5"]);
    assert_eq!(
        reasons(&schedule(&nodes, &[wants])),
        ["no suitable node (2 nodes not available for new tasks; insufficient resources on 1 node; \
          scheduling constraints not satisfied on 2 nodes; host-mode port already in use on 1 node)"]
    );
}

#[test]
fn host_ports_never_collide_within_a_batch() {
    let mut template = task("", "web");
    template.host_ports = vec![(Protocol::Tcp, 80)];
    let decisions = schedule(&[node(1), node(2)], &tasks(3, &template));
    assert_eq!(per_node(&decisions), BTreeMap::from([(1, 1), (2, 1)]));
    assert_eq!(reasons(&decisions), ["no suitable node (host-mode port already in use on 2 nodes)"]);
}

#[test]
fn later_batches_see_earlier_placements() {
    let mut web = task("w", "web");
    web.host_ports = vec![(Protocol::Tcp, 80)];
    let mut proxy = task("p", "proxy");
    proxy.host_ports = vec![(Protocol::Tcp, 80)];
    let decisions = schedule(&[node(1)], &[web, proxy]);
    assert_eq!(decisions[0], Decision::Placed { task: "w".into(), node: 1 });
    assert_eq!(reasons(&decisions), ["no suitable node (host-mode port already in use on 1 node)"]);
}

#[test]
fn a_batch_stops_at_the_capacity_of_its_nodes() {
    let mut template = task("", "web");
    template.reservations = Resources { nano_cpus: CPU, memory_bytes: 0 };
    let mut half_full = node(2);
    half_full.reserved.nano_cpus = 2 * CPU;
    let decisions = schedule(&[node(1), half_full], &tasks(8, &template));
    assert_eq!(per_node(&decisions), BTreeMap::from([(1, 4), (2, 2)]));
    assert_eq!(reasons(&decisions), ["no suitable node (insufficient resources on 2 nodes)"; 2]);
}

#[test]
fn spread_groups_nodes_without_the_label_together() {
    let nodes = [labelled(1, "zone", "a"), labelled(2, "zone", "b"), labelled(3, "zone", "b"), node(4), node(5)];
    let mut template = task("", "web");
    template.preferences = vec![spread("node.labels.zone")];
    let decisions = schedule(&nodes, &tasks(6, &template));
    // Three groups (a, b, unlabelled) of two tasks each, however many nodes each group has.
    assert_eq!(per_node(&decisions), BTreeMap::from([(1, 2), (2, 1), (3, 1), (4, 1), (5, 1)]));
}

#[test]
fn spread_counts_the_tasks_already_running() {
    let mut loaded = labelled(1, "zone", "a");
    loaded.tasks_by_service.insert("web".into(), 3);
    loaded.total_tasks = 3;
    let nodes = [loaded, labelled(2, "zone", "a"), labelled(3, "zone", "b")];
    let mut template = task("", "web");
    template.preferences = vec![spread("node.labels.zone")];
    let decisions = schedule(&nodes, &tasks(3, &template));
    // Zone a holds three tasks already, so zone b gets all three new ones.
    assert_eq!(per_node(&decisions), BTreeMap::from([(3, 3)]));
}

#[test]
fn nested_spread_evens_each_level() {
    let rack = |id, zone: &str, rack: &str| {
        let mut node = labelled(id, "zone", zone);
        node.engine_labels.insert("rack".into(), rack.into());
        node
    };
    let nodes = [rack(1, "a", "r1"), rack(2, "a", "r1"), rack(3, "a", "r2"), rack(4, "b", "r3")];
    let mut template = task("", "web");
    template.preferences = vec![spread("node.labels.zone"), spread("engine.labels.rack")];
    let decisions = schedule(&nodes, &tasks(8, &template));
    // Four tasks per zone; in zone a two per rack, and rack r1's two split over its nodes.
    assert_eq!(per_node(&decisions), BTreeMap::from([(1, 1), (2, 1), (3, 2), (4, 4)]));
}

#[test]
fn spread_only_counts_eligible_nodes() {
    let mut drained = labelled(2, "zone", "b");
    drained.availability = Availability::Drain;
    let nodes = [labelled(1, "zone", "a"), drained];
    let mut template = task("", "web");
    template.preferences = vec![spread("node.labels.zone")];
    assert_eq!(per_node(&schedule(&nodes, &tasks(2, &template))), BTreeMap::from([(1, 2)]));
}

#[test]
fn preassigned_task_goes_to_its_node_only() {
    let mut global = task("g", "agent");
    global.node = Some(3);
    let decisions = schedule(&[node(1), node(2), node(3)], &[global]);
    assert_eq!(decisions, vec![Decision::Placed { task: "g".into(), node: 3 }]);
}

#[test]
fn preassigned_task_is_refused_with_the_failing_filter() {
    let mut paused = node(1);
    paused.availability = Availability::Pause;
    let mut to_paused = task("g1", "agent");
    to_paused.node = Some(1);
    let mut to_worker = task("g2", "agent");
    to_worker.node = Some(2);
    to_worker.constraints = constraints(&["node.role==manager"]);
    let mut to_nowhere = task("g3", "agent");
    to_nowhere.node = Some(9);
    let decisions = schedule(&[paused, node(2)], &[to_paused, to_worker, to_nowhere]);
    assert_eq!(
        reasons(&decisions),
        [
            "no suitable node (1 node not available for new tasks)",
            "no suitable node (scheduling constraints not satisfied on 1 node)",
            "no suitable node (assigned node 9 is not in the cluster)",
        ]
    );
}

#[test]
fn preassigned_tasks_are_placed_before_batches() {
    let mut replica = task("r", "web");
    replica.reservations.nano_cpus = 3 * CPU;
    let mut global = task("g", "agent");
    global.node = Some(1);
    global.reservations.nano_cpus = 2 * CPU;
    // The replica comes first in the input, yet the global task keeps its node.
    let decisions = schedule(&[node(1)], &[replica, global]);
    assert_eq!(decisions[1], Decision::Placed { task: "g".into(), node: 1 });
    assert_eq!(reasons(&decisions), ["no suitable node (insufficient resources on 1 node)"]);
}

#[test]
fn different_specs_under_one_version_are_separate_batches() {
    let mut on_one = task("a", "web");
    on_one.constraints = constraints(&["node.id==1"]);
    let mut on_two = task("b", "web");
    on_two.constraints = constraints(&["node.id==2"]);
    let decisions = schedule(&[node(1), node(2)], &[on_one, on_two]);
    assert_eq!(
        decisions,
        vec![Decision::Placed { task: "a".into(), node: 1 }, Decision::Placed { task: "b".into(), node: 2 }]
    );
}

#[test]
fn a_batch_without_eligible_nodes_gives_every_task_the_reason() {
    let mut drained = node(1);
    drained.availability = Availability::Drain;
    let decisions = schedule(&[drained], &tasks(3, &task("", "web")));
    assert_eq!(reasons(&decisions), ["no suitable node (1 node not available for new tasks)"; 3]);
}
