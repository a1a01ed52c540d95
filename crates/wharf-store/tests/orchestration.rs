//! Services and tasks: the rules Swarm's task model keeps, decided inside apply.

use std::collections::BTreeMap;

use wharf_store::{
    ClusterCommand, NetworkRecord, NewTask, NodeDescription, OrchestrationCommand as C, Refusal, SecretKind, Store,
    StoreError, TaskReport, TaskState, UpdateState,
};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.redb")).expect("open");
    (dir, store)
}

fn refusal(result: Result<wharf_store::Outcome, StoreError>) -> Refusal {
    match result {
        Err(StoreError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn create(id: &str, name: &str) -> C {
    C::CreateService {
        id: id.into(),
        name: name.into(),
        owner: "alice".into(),
        spec: "{}".into(),
        task_spec: "t".into(),
        at: 1,
    }
}

/// The creation of service `id` (named so too) with `spec`.
fn service_with(id: &str, spec: String) -> C {
    C::CreateService { id: id.into(), name: id.into(), owner: "alice".into(), spec, task_spec: "t".into(), at: 2 }
}

fn service(store: &Store, id: &str, name: &str) {
    store.apply(create(id, name)).expect("create service");
}

fn task(store: &Store, id: &str, service: &str, slot: u64) {
    let new =
        NewTask { id: id.into(), service_id: service.into(), slot, node: None, spec_version: 1, template: "{}".into() };
    store.apply(C::CreateTasks { tasks: vec![new], at: 2 }).expect("create task");
}

fn report(store: &Store, node: u64, id: &str, state: TaskState) {
    let report = TaskReport {
        id: id.into(),
        state,
        message: state.as_str().into(),
        err: String::new(),
        container_id: "c1".into(),
        exit_code: 0,
        ports: vec![],
    };
    store.apply(C::ReportTasks { node, reports: vec![report], at: 3 }).expect("report");
}

#[test]
fn a_name_is_taken_once_and_an_update_names_the_version_it_read() {
    let (_dir, store) = open();
    service(&store, "s1", "web");
    let again = store.apply(C::CreateService {
        id: "s2".into(),
        name: "web".into(),
        owner: "bob".into(),
        spec: "{}".into(),
        task_spec: "t".into(),
        at: 1,
    });
    assert_eq!(refusal(again), Refusal::ServiceNameTaken("web".into()));
    let version = store.service("s1").expect("read").expect("exists").version;
    let update = |version, task_spec: &str| C::UpdateService {
        id: "s1".into(),
        version,
        name: "web".into(),
        spec: "{\"a\":1}".into(),
        task_spec: task_spec.into(),
        at: 5,
    };
    // A new replica count: a new spec, the same tasks.
    store.apply(update(version, "t")).expect("update at the current version");
    let updated = store.service("s1").expect("read").expect("exists");
    assert!(updated.version > version && updated.spec_version == version);
    assert_eq!(updated.previous_spec.as_deref(), Some("{}"));
    assert_eq!(refusal(store.apply(update(version, "t3"))), Refusal::VersionOutOfDate { current: updated.version });
    store.apply(update(updated.version, "t2")).expect("a new task template");
    let again = store.service("s1").expect("read").expect("exists");
    assert_eq!(again.spec_version, again.version, "a new task template makes the tasks out of date");
}

#[test]
fn task_states_only_move_forward_and_only_their_node_reports_them() {
    let (_dir, store) = open();
    store
        .apply(ClusterCommand::AddNode { role: "manager".into(), hostname: "a".into(), addr: "a:1".into(), at: 1 })
        .expect("node");
    service(&store, "s1", "web");
    task(&store, "t1", "s1", 1);
    assert_eq!(store.task("t1").expect("read").expect("task").status.state, TaskState::Pending);
    store.apply(C::AssignTasks { placed: vec![("t1".into(), 1)], unplaceable: vec![], at: 2 }).expect("assign");
    assert_eq!(store.node_tasks(1).expect("read").len(), 1);
    report(&store, 2, "t1", TaskState::Running);
    assert_eq!(
        store.task("t1").expect("read").expect("task").status.state,
        TaskState::Assigned,
        "another node's report"
    );
    report(&store, 1, "t1", TaskState::Running);
    report(&store, 1, "t1", TaskState::Starting);
    let t = store.task("t1").expect("read").expect("task");
    assert_eq!((t.status.state, t.status.container_id.as_str()), (TaskState::Running, "c1"));
    // A task assigned once is not assigned again.
    store.apply(C::AssignTasks { placed: vec![("t1".into(), 7)], unplaceable: vec![], at: 2 }).expect("assign");
    assert_eq!(store.task("t1").expect("read").expect("task").node, Some(1));
    // Desired state: forward only.
    store.apply(C::SetDesiredState { ids: vec!["t1".into()], desired: TaskState::Shutdown, at: 4 }).expect("shutdown");
    store.apply(C::SetDesiredState { ids: vec!["t1".into()], desired: TaskState::Running, at: 4 }).expect("back");
    assert_eq!(store.task("t1").expect("read").expect("task").desired, TaskState::Shutdown);
}

#[test]
fn removing_a_service_asks_for_its_tasks_removal_and_new_tasks_of_it_are_skipped() {
    let (_dir, store) = open();
    service(&store, "s1", "web");
    task(&store, "t1", "s1", 1);
    store.apply(C::RemoveService { id: "s1".into(), at: 3 }).expect("remove");
    assert_eq!(store.task("t1").expect("read").expect("task").desired, TaskState::Remove);
    task(&store, "t2", "s1", 2);
    assert!(store.task("t2").expect("read").is_none());
    assert_eq!(refusal(store.apply(C::RemoveService { id: "s1".into(), at: 3 })), Refusal::ServiceUnknown("s1".into()));
    store.apply(C::RemoveTasks { ids: vec!["t1".into()] }).expect("forget");
    assert!(store.tasks().expect("read").is_empty());
}

#[test]
fn node_details_survive_a_snapshot_with_services_and_tasks() {
    let (_dir, store) = open();
    store
        .apply(ClusterCommand::AddNode { role: "worker".into(), hostname: "w".into(), addr: "w:1".into(), at: 1 })
        .expect("node");
    let labels = BTreeMap::from([("zone".to_owned(), "a".to_owned())]);
    let bad = C::SetNodeSpec { id: 1, version: None, availability: "away".into(), labels: labels.clone() };
    assert!(matches!(refusal(store.apply(bad)), Refusal::Invalid(_)));
    store.apply(C::SetNodeSpec { id: 1, version: None, availability: "drain".into(), labels }).expect("spec");
    let description = NodeDescription { hostname: "w".into(), nano_cpus: 2_000_000_000, ..NodeDescription::default() };
    store.apply(C::SetNodeDescription { id: 1, description: description.clone() }).expect("description");
    let stale = C::SetNodeSpec { id: 1, version: Some(1), availability: "active".into(), labels: BTreeMap::new() };
    assert!(matches!(refusal(store.apply(stale)), Refusal::VersionOutOfDate { .. }));
    service(&store, "s1", "web");
    task(&store, "t1", "s1", 1);
    store.apply(C::AssignTasks { placed: vec![("t1".into(), 1)], unplaceable: vec![], at: 2 }).expect("assign");
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    let (_other, copy) = open();
    copy.import(&mut snapshot.as_slice(), b"m").expect("import");
    let details = copy.node_details(1).expect("read");
    assert_eq!((details.availability.as_str(), details.description), ("drain", Some(description)));
    assert_eq!(copy.node_tasks(1).expect("read").len(), 1);
    assert_eq!(copy.services().expect("read").len(), 1);
}

#[test]
fn registry_credentials_go_with_a_creation_or_an_update_atomically_and_leave_with_the_service() {
    let (_dir, store) = open();
    let with = |sealed: &[u8], command: C| C::WithRegistryAuth { sealed: sealed.to_vec(), command: Box::new(command) };
    store.apply(with(b"sealed-1", create("s1", "web"))).expect("create with credentials");
    assert_eq!(store.service_registry_auth("s1").expect("read").as_deref(), Some(&b"sealed-1"[..]));
    // A refused creation (the name is taken) records no credentials either.
    assert_eq!(refusal(store.apply(with(b"sealed-2", create("s2", "web")))), Refusal::ServiceNameTaken("web".into()));
    assert!(store.service_registry_auth("s2").expect("read").is_none());
    // Only with a creation or an update.
    let wrong = with(b"x", C::RemoveService { id: "s1".into(), at: 2 });
    assert!(matches!(refusal(store.apply(wrong)), Refusal::Invalid(_)));
    assert!(store.service("s1").expect("read").is_some());
    let version = store.service("s1").expect("read").expect("service").version;
    let update = C::UpdateService {
        id: "s1".into(),
        version,
        name: "web".into(),
        spec: "{}".into(),
        task_spec: "t".into(),
        at: 2,
    };
    store.apply(with(b"sealed-3", update)).expect("update with credentials");
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    let (_other, copy) = open();
    copy.import(&mut snapshot.as_slice(), b"m").expect("import");
    assert_eq!(copy.service_registry_auth("s1").expect("read").as_deref(), Some(&b"sealed-3"[..]));
    store.apply(C::RemoveService { id: "s1".into(), at: 3 }).expect("remove");
    assert!(store.service_registry_auth("s1").expect("read").is_none());
}

#[test]
fn an_update_is_recorded_paused_resumed_by_the_next_and_rolled_back_to_the_version_it_left() {
    let (_dir, store) = open();
    service(&store, "s1", "web");
    let current = |store: &Store| store.service("s1").expect("read").expect("service");
    let update = |store: &Store, task_spec: &str, at: u64| {
        let version = current(store).version;
        let spec = format!("{{\"t\":\"{task_spec}\"}}");
        let command =
            C::UpdateService { id: "s1".into(), version, name: "web".into(), spec, task_spec: task_spec.into(), at };
        store.apply(command).expect("update");
    };
    // A new replica count changes no task: no update to record.
    update(&store, "t", 2);
    assert!(store.service_update("s1").expect("read").is_none());
    let before = current(&store).spec_version;
    update(&store, "t2", 3);
    let record = store.service_update("s1").expect("read").expect("an update");
    assert_eq!((record.state, record.from_spec_version, record.started), (UpdateState::Updating, before, 3));
    assert_eq!(record.spec_version, current(&store).spec_version);

    // The orchestrator pauses it; a word about an older update is skipped.
    let set = |spec_version, state| C::SetUpdateState {
        id: "s1".into(),
        spec_version,
        state,
        message: "update paused due to failure or early termination of task x".into(),
        at: 4,
    };
    store.apply(set(before, UpdateState::Paused)).expect("stale: skipped");
    assert_eq!(store.service_update("s1").expect("read").expect("update").state, UpdateState::Updating);
    store.apply(set(record.spec_version, UpdateState::Paused)).expect("pause");
    // A finished state cannot follow a pause (only a new update resumes it).
    store.apply(set(record.spec_version, UpdateState::Completed)).expect("skipped");
    assert_eq!(store.service_update("s1").expect("read").expect("update").state, UpdateState::Paused);
    // Any update resumes it, even one that changes no task; its failures so far no longer count.
    update(&store, "t2", 5);
    let resumed = store.service_update("s1").expect("read").expect("update");
    assert_eq!((resumed.state, resumed.started), (UpdateState::Updating, 5));

    // The rollback puts the previous spec back at the version the tasks left, once.
    let version = current(&store).version;
    let rollback = |version| C::RollbackService {
        id: "s1".into(),
        version,
        spec: "{\"t\":\"t\"}".into(),
        task_spec: "t".into(),
        message: "manually requested rollback".into(),
        at: 6,
    };
    assert!(matches!(refusal(store.apply(rollback(version - 1))), Refusal::VersionOutOfDate { .. }));
    store.apply(rollback(version)).expect("rollback");
    let back = current(&store);
    assert_eq!((back.spec_version, back.task_spec.as_str(), back.previous_spec), (before, "t", None));
    let rolling = store.service_update("s1").expect("read").expect("update");
    assert_eq!(
        (rolling.state, rolling.spec_version, rolling.message.as_str()),
        (UpdateState::RollbackStarted, before, "manually requested rollback")
    );
    assert!(matches!(refusal(store.apply(rollback(back.version))), Refusal::Invalid(_)), "no previous spec left");
    store.apply(set(before, UpdateState::RollbackCompleted)).expect("done");

    // It travels in snapshots and leaves with the service.
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    let (_other, copy) = open();
    copy.import(&mut snapshot.as_slice(), b"m").expect("import");
    let copied = copy.service_update("s1").expect("read").expect("update");
    assert_eq!((copied.state, copied.completed), (UpdateState::RollbackCompleted, 4));
    store.apply(C::RemoveService { id: "s1".into(), at: 7 }).expect("remove");
    assert!(store.service_update("s1").expect("read").is_none());
}

#[test]
fn a_secret_in_use_stays_and_a_service_cannot_use_one_the_state_does_not_hold() {
    let (_dir, store) = open();
    let secret = |id: &str, kind, name: &str| C::CreateSecret {
        id: id.into(),
        kind,
        name: name.into(),
        owner: "alice".into(),
        labels: BTreeMap::new(),
        data: b"sealed".to_vec(),
        at: 1,
    };
    store.apply(secret("x1", SecretKind::Secret, "pw")).expect("create");
    let taken = refusal(store.apply(secret("x2", SecretKind::Secret, "pw")));
    assert_eq!(taken, Refusal::NameTaken { kind: "secret".into(), name: "pw".into() });
    store.apply(secret("c1", SecretKind::Config, "pw")).expect("a config may share a secret's name");
    let uses = |secret: &str| {
        format!(
            r#"{{"TaskTemplate":{{"ContainerSpec":{{"Image":"i","Secrets":[{{"SecretID":"{secret}","SecretName":"pw"}}]}}}}}}"#
        )
    };
    // A config's id is no secret's.
    assert!(matches!(refusal(store.apply(service_with("s0", uses("c1")))), Refusal::ObjectUnknown { .. }));
    assert!(matches!(refusal(store.apply(service_with("s0", uses("nope")))), Refusal::ObjectUnknown { .. }));
    store.apply(service_with("s1", uses("x1"))).expect("a service using the secret");
    let in_use = refusal(store.apply(C::RemoveSecret { id: "x1".into(), kind: SecretKind::Secret }));
    assert_eq!(in_use, Refusal::InUse { kind: "secret".into(), name: "pw".into(), services: vec!["s1".into()] });
    let wrong_kind = refusal(store.apply(C::RemoveSecret { id: "x1".into(), kind: SecretKind::Config }));
    assert!(matches!(wrong_kind, Refusal::ObjectUnknown { .. }));
    // Snapshots carry it; once no service uses it, it goes.
    let mut snapshot = Vec::new();
    store.export(&mut snapshot).expect("export");
    let (_other, copy) = open();
    copy.import(&mut snapshot.as_slice(), b"m").expect("import");
    assert_eq!(copy.secret("x1").expect("read").map(|s| s.data), Some(b"sealed".to_vec()));
    assert_eq!(copy.secrets(SecretKind::Config).expect("read").len(), 1);
    store.apply(C::RemoveService { id: "s1".into(), at: 3 }).expect("remove the service");
    store.apply(C::RemoveSecret { id: "x1".into(), kind: SecretKind::Secret }).expect("remove the secret");
    assert!(store.secret("x1").expect("read").is_none());
}

#[test]
fn a_network_in_use_stays_and_a_service_joins_only_networks_the_state_holds_by_id_or_name() {
    let (_dir, store) = open();
    let network = |name: &str| NetworkRecord {
        name: name.into(),
        owner: "alice".into(),
        driver: "overlay".into(),
        internal: false,
        attachable: false,
        labels: BTreeMap::new(),
        version: 0,
        created: 1,
    };
    store.apply(C::CreateNetwork { id: "n1".into(), network: network("backend") }).expect("create");
    let taken = refusal(store.apply(C::CreateNetwork { id: "n2".into(), network: network("backend") }));
    assert_eq!(taken, Refusal::NameTaken { kind: "network".into(), name: "backend".into() });
    let joins = |target: &str| format!(r#"{{"TaskTemplate":{{"Networks":[{{"Target":"{target}"}}]}}}}"#);
    assert!(matches!(refusal(store.apply(service_with("s0", joins("frontend")))), Refusal::ObjectUnknown { .. }));
    store.apply(service_with("s1", joins("n1"))).expect("by id");
    store.apply(service_with("s2", joins("backend"))).expect("by name");
    let in_use = refusal(store.apply(C::RemoveNetwork { id: "n1".into() }));
    assert_eq!(
        in_use,
        Refusal::InUse { kind: "network".into(), name: "backend".into(), services: vec!["s1".into(), "s2".into()] }
    );
    for id in ["s1", "s2"] {
        store.apply(C::RemoveService { id: id.into(), at: 3 }).expect("remove the service");
    }
    store.apply(C::RemoveNetwork { id: "n1".into() }).expect("remove the network");
    assert!(store.networks().expect("read").is_empty());
}
