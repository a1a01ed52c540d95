//! Scheduler throughput through Raft: three managers in this process (the same assembly as
//! `wharf`), 1,000 nodes whose fake agents reported ready engines, and 100 services of 1,000
//! replicas each created through the Docker-compatible control call. Measured: from the first
//! create to the moment the leader's replica holds all 100,000 tasks assigned, every decision
//! committed through Raft on the three managers; and, as the bound, the pure scheduler placing
//! the same 100,000 tasks on the same nodes in memory.
//!
//!     cargo bench -p wharf-node --bench scheduler
//!     WHARF_BENCH_TASKS=20000 cargo bench -p wharf-node --bench scheduler   # a quicker run

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::{Manager, three_managers_beating};
use wharf_api::docker::{ContainerSpec, Replicated, ServiceMode, ServiceSpec, TaskSpec};
use wharf_store::{ClusterCommand, NodeDescription, OrchestrationCommand, Origin, ProposerExt, TaskState};

const NODES: u64 = 1_000;
const SERVICES: u64 = 100;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let tasks: u64 = std::env::var("WHARF_BENCH_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(tasks));
}

async fn run(tasks: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The fake agents send no heartbeats: the managers' period is long enough that no node is
    // marked down during the run (the scheduler's cost is measured, not the heartbeats').
    let (managers, leader_id) = three_managers_beating(tmp.path(), Duration::from_secs(3600)).await;
    let leader = managers.iter().find(|m| m.id == leader_id).expect("the leader");
    register_nodes(leader).await;

    let per_service = tasks / SERVICES;
    let caller = wharf_manager::Caller { name: "admin".into(), admin: true, origin: Origin::system() };
    let start = Instant::now();
    for n in 0..SERVICES {
        let spec = ServiceSpec {
            name: format!("bench{n}"),
            task_template: TaskSpec {
                container_spec: ContainerSpec { image: "127.0.0.1:5000/bench/app:1".into(), ..Default::default() },
                ..Default::default()
            },
            mode: ServiceMode { replicated: Some(Replicated { replicas: Some(per_service) }), ..Default::default() },
            ..Default::default()
        };
        leader.node().manager.create_service(&caller, spec, None).await.expect("create a service");
    }
    let total = per_service * SERVICES;
    let mut assigned = 0;
    while assigned < total {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let all = leader.store().tasks().expect("read the tasks");
        assigned = all.iter().filter(|(_, t)| t.status.state == TaskState::Assigned && t.node.is_some()).count() as u64;
        assert!(start.elapsed() < Duration::from_secs(600), "only {assigned} of {total} tasks placed in 10 minutes");
    }
    let through_raft = start.elapsed();
    let bound = pure_scheduler(total);
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!();
    println!("{:<52} {:>10} {:>14}", "scheduler, 3 managers, 1,000 nodes", "seconds", "placements/s");
    println!(
        "{:<52} {:>10.2} {:>14.0}",
        format!("{total} tasks committed through Raft"),
        through_raft.as_secs_f64(),
        rate(through_raft)
    );
    println!(
        "{:<52} {:>10.2} {:>14.0}",
        "the same placements, pure scheduler in memory (bound)",
        bound.as_secs_f64(),
        rate(bound)
    );
    println!("{:<52} {:>10} {:>14}", "target (the issue); Nomad's C1M run", "", "10000; 3750");
    for mut m in managers {
        m.stop().await;
    }
}

/// 1,000 nodes as their agents would have reported them: ready, active, 2 CPUs and 4 GiB.
/// The three managers are recorded first, as nodes 1 to 3 (the Raft routes check that role).
async fn register_nodes(leader: &Manager) {
    let proposer = leader.proposer();
    for n in 1..=3 {
        let add = ClusterCommand::AddNode {
            role: "manager".into(),
            hostname: format!("manager{n}"),
            addr: "127.0.0.1:1".into(),
            at: 1,
        };
        proposer.propose(add).await.expect("record a manager");
    }
    for chunk in 0..NODES / 10 {
        let mut adds = Vec::new();
        for n in 0..10 {
            let hostname = format!("node{}", chunk * 10 + n);
            let add = ClusterCommand::AddNode { role: "worker".into(), hostname, addr: "127.0.0.1:1".into(), at: 1 };
            adds.push(proposer.propose(add));
        }
        futures::future::join_all(adds).await.into_iter().for_each(|r| {
            r.expect("add a node");
        });
    }
    let nodes: Vec<_> = leader.store().nodes().expect("nodes").into_iter().filter(|(id, _)| *id > 3).collect();
    for chunk in nodes.chunks(10) {
        describe(leader, chunk).await;
    }
}

/// Marks `nodes` ready with a described engine, ten proposals at a time.
async fn describe(leader: &Manager, nodes: &[(u64, wharf_store::NodeRecord)]) {
    let proposer = leader.proposer();
    let mut changes = Vec::new();
    for (id, record) in nodes.iter().cloned() {
        changes.push(proposer.propose(ClusterCommand::SetNodeState { id, state: "ready".into(), at: 1 }));
        let description = NodeDescription {
            hostname: record.hostname,
            os: "linux".into(),
            architecture: "x86_64".into(),
            nano_cpus: 2_000_000_000,
            memory_bytes: 4 << 30,
            engine_version: "20.10".into(),
            engine_labels: BTreeMap::new(),
        };
        changes.push(proposer.propose(OrchestrationCommand::SetNodeDescription { id, description }));
    }
    futures::future::join_all(changes).await.into_iter().for_each(|r| {
        r.expect("describe a node");
    });
}

/// The time the scheduler alone takes to place `total` tasks of 100 services on 1,000 nodes.
fn pure_scheduler(total: u64) -> Duration {
    let nodes: Vec<wharf_scheduler::Node> = (1..=NODES)
        .map(|id| wharf_scheduler::Node {
            id,
            hostname: format!("node{id}"),
            role: wharf_scheduler::Role::Worker,
            ready: true,
            availability: wharf_scheduler::Availability::Active,
            labels: BTreeMap::new(),
            engine_labels: BTreeMap::new(),
            platform: wharf_scheduler::Platform { os: "linux".into(), architecture: "x86_64".into() },
            resources: wharf_scheduler::Resources { nano_cpus: 2_000_000_000, memory_bytes: 4 << 30 },
            reserved: Default::default(),
            host_ports: Default::default(),
            tasks_by_service: BTreeMap::new(),
            total_tasks: 0,
            collection: "/Shared".into(),
        })
        .collect();
    let tasks: Vec<wharf_scheduler::Task> = (0..total)
        .map(|n| wharf_scheduler::Task {
            id: format!("t{n}"),
            service_id: format!("s{}", n % SERVICES),
            spec_version: 1,
            constraints: vec![],
            preferences: vec![],
            platforms: vec![],
            reservations: Default::default(),
            host_ports: vec![],
            node: None,
            collection: None,
        })
        .collect();
    let start = Instant::now();
    let decisions = wharf_scheduler::schedule(&nodes, &tasks);
    let elapsed = start.elapsed();
    assert_eq!(decisions.len() as u64, total);
    elapsed
}
