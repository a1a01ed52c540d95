use super::*;
use crate::model::{Node, Platform, Protocol, Resources, Role};
use crate::testutil::{CPU, GIB, constraints, node, task};

fn verdict(node: &Node, task: &Task) -> Option<Filter> {
    first_failure(&NodeState::new(node), task)
}

#[test]
fn ready_filter_wants_ready_and_active() {
    let plain = task("t", "s");
    assert_eq!(verdict(&node(1), &plain), None);
    let mut down = node(1);
    down.ready = false;
    assert_eq!(verdict(&down, &plain), Some(Filter::Ready));
    for availability in [Availability::Pause, Availability::Drain] {
        let mut paused = node(1);
        paused.availability = availability;
        assert_eq!(verdict(&paused, &plain), Some(Filter::Ready));
    }
}

#[test]
fn resources_filter_checks_cpu_and_memory_separately() {
    let mut busy = node(1);
    busy.reserved = Resources { nano_cpus: 3 * CPU, memory_bytes: 2 * GIB };
    let mut wants = task("t", "s");
    wants.reservations = Resources { nano_cpus: CPU, memory_bytes: 6 * GIB };
    assert_eq!(verdict(&busy, &wants), None, "exactly what is left fits");
    wants.reservations.nano_cpus = CPU + 1;
    assert_eq!(verdict(&busy, &wants), Some(Filter::Resources));
    wants.reservations = Resources { nano_cpus: 0, memory_bytes: 6 * GIB + 1 };
    assert_eq!(verdict(&busy, &wants), Some(Filter::Resources));
}

#[test]
fn resources_filter_survives_extreme_numbers() {
    let mut odd = node(1);
    odd.resources = Resources { nano_cpus: i64::MIN, memory_bytes: i64::MAX };
    odd.reserved = Resources { nano_cpus: i64::MAX, memory_bytes: i64::MIN };
    let mut wants = task("t", "s");
    wants.reservations = Resources { nano_cpus: i64::MAX, memory_bytes: i64::MAX };
    assert_eq!(verdict(&odd, &wants), Some(Filter::Resources));
}

#[test]
fn platform_filter_matches_any_listed_platform() {
    let mut wants = task("t", "s");
    wants.platforms = vec![
        Platform { os: "windows".into(), architecture: "amd64".into() },
        Platform { os: "linux".into(), architecture: "amd64".into() },
    ];
    assert_eq!(verdict(&node(1), &wants), None);
    wants.platforms.remove(1);
    assert_eq!(verdict(&node(1), &wants), Some(Filter::Platform));
}

#[test]
fn constraint_filter_needs_every_constraint() {
    let mut manager = node(1);
    manager.role = Role::Manager;
    manager.labels.insert("zone".into(), "a".into());
    let mut wants = task("t", "s");
    wants.constraints = constraints(&["node.role==manager", "node.labels.zone==a"]);
    assert_eq!(verdict(&manager, &wants), None);
    wants.constraints = constraints(&["node.role==manager", "node.labels.zone==b"]);
    assert_eq!(verdict(&manager, &wants), Some(Filter::Constraints));
}

#[test]
fn host_port_filter_refuses_a_port_in_use() {
    let mut web = node(1);
    web.host_ports.insert((Protocol::Tcp, 80));
    let mut wants = task("t", "s");
    wants.host_ports = vec![(Protocol::Udp, 80)];
    assert_eq!(verdict(&web, &wants), None, "the protocol is part of the port");
    wants.host_ports.push((Protocol::Tcp, 80));
    assert_eq!(verdict(&web, &wants), Some(Filter::HostPorts));
}

#[test]
fn the_first_failing_filter_is_reported() {
    let mut bad = node(1);
    bad.ready = false;
    bad.host_ports.insert((Protocol::Tcp, 80));
    let mut wants = task("t", "s");
    wants.host_ports = vec![(Protocol::Tcp, 80)];
    wants.constraints = constraints(&["node.role==manager"]);
    assert_eq!(verdict(&bad, &wants), Some(Filter::Ready));
}

#[test]
fn explanations_count_nodes() {
    assert_eq!(Filter::Ready.explain(1), "1 node not available for new tasks");
    assert_eq!(Filter::Ready.explain(3), "3 nodes not available for new tasks");
    assert_eq!(Filter::Resources.explain(1), "insufficient resources on 1 node");
    assert_eq!(Filter::Resources.explain(2), "insufficient resources on 2 nodes");
    assert_eq!(Filter::Platform.explain(4), "unsupported platform on 4 nodes");
    assert_eq!(Filter::Constraints.explain(3), "scheduling constraints not satisfied on 3 nodes");
    assert_eq!(Filter::HostPorts.explain(1), "host-mode port already in use on 1 node");
}

#[test]
fn reasons_list_filters_in_pipeline_order() {
    let mut counts = FailureCounts::default();
    assert_eq!(counts.reason(), "no suitable node");
    counts.record(Filter::HostPorts);
    counts.record(Filter::Constraints);
    counts.record(Filter::Constraints);
    counts.record(Filter::Ready);
    assert_eq!(
        counts.reason(),
        "no suitable node (1 node not available for new tasks; scheduling constraints not satisfied on 2 nodes; \
         host-mode port already in use on 1 node)"
    );
}

#[test]
fn collection_filter_keeps_a_task_on_its_collections_path() {
    let mut task = task("t", "s");
    let mut node = node(1);
    node.collection = "/System".into();
    assert_eq!(verdict(&node, &task), None, "a task of no collection runs anywhere");
    task.collection = Some("/Shared/Private/alice".into());
    assert_eq!(verdict(&node, &task), Some(Filter::Collection));
    node.collection = "/Shared".into();
    assert_eq!(verdict(&node, &task), None, "an ancestor's node");
    task.collection = Some("/Shared/ops".into());
    node.collection = "/Shared/ops/db".into();
    assert_eq!(verdict(&node, &task), None, "a descendant's node");
    node.collection = "/Shared/opsx".into();
    assert_eq!(verdict(&node, &task), Some(Filter::Collection), "a name with the same prefix is no descendant");
    task.collection = Some("/".into());
    assert_eq!(verdict(&node, &task), None, "the root's tasks run anywhere");
    assert_eq!(Filter::Collection.explain(2), "2 nodes outside the service's collection");
}
