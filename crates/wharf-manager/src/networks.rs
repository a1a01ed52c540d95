//! Cluster networks (swarmkit's controlapi `network.go`): `docker network create -d overlay`,
//! `ls`, `inspect`, `rm`, and the networks a service's tasks join. On each node a network is a
//! bridge of the node's engine, made by its agent when a task on it starts and removed once no
//! task of the node uses it: the tasks of one node on one network reach each other by service
//! name (the engine's DNS); a network does not span nodes yet.

use std::collections::BTreeMap;

use wharf_api::cluster::TaskNetwork;
use wharf_api::docker::{self, Network, NetworkCreate, NetworkCreated, TaskSpec};
use wharf_store::{NetworkRecord, OrchestrationCommand, ProposerExt};

use wharf_auth::rbac::Permission;

use crate::access::Access;
use crate::control::new_object_id;
use crate::services::{Caller, find_one};
use crate::{ClusterError, Manager};

/// The collection of a network.
fn collection(record: &NetworkRecord) -> String {
    crate::access::collection_of(&record.labels, &record.owner)
}

impl Manager {
    /// `POST /networks/create`.
    pub async fn create_network(
        &self,
        caller: &Caller,
        request: NetworkCreate,
    ) -> Result<NetworkCreated, ClusterError> {
        check_network(&request)?;
        let mut labels = request.labels.clone().unwrap_or_default();
        self.access(caller)?.place(self, &mut labels, Permission::NetworkCreate)?;
        let id = new_object_id();
        let network = NetworkRecord {
            name: request.name,
            owner: caller.name.clone(),
            driver: "overlay".into(),
            internal: request.internal,
            attachable: request.attachable,
            labels,
            version: 0,
            created: crate::now(),
        };
        let command = OrchestrationCommand::CreateNetwork { id: id.clone(), network };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(ClusterError::from)?;
        Ok(NetworkCreated { id, warning: String::new() })
    }

    /// `GET /networks` (filters `id`, `name`, `label`, `driver`, `scope`, `type`).
    pub fn list_networks(
        &self,
        caller: &Caller,
        filters: &BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<Network>, ClusterError> {
        let networks = self.store.networks()?;
        let access = self.access(caller)?;
        let visible = networks.iter().filter(|(_, n)| access.allows(Permission::NetworkView, &collection(n)));
        Ok(visible.filter(|(id, n)| matches(id, n, filters)).map(|(id, n)| view(id, n)).collect())
    }

    /// `GET /networks/{id}`: by id, name or a unique id prefix.
    pub fn inspect_network(&self, caller: &Caller, id_or_name: &str) -> Result<Network, ClusterError> {
        let (id, record) = self.find_network(&self.access(caller)?, id_or_name, Permission::NetworkView)?;
        Ok(view(&id, &record))
    }

    /// `DELETE /networks/{id}`: refused while a service uses it.
    pub async fn remove_network(&self, caller: &Caller, id_or_name: &str) -> Result<(), ClusterError> {
        let (id, _) = self.find_network(&self.access(caller)?, id_or_name, Permission::NetworkRemove)?;
        let command = OrchestrationCommand::RemoveNetwork { id };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(ClusterError::from)?;
        Ok(())
    }

    /// The network `id_or_name` names, if the caller may see it (else not found) and take
    /// `permission` on it (else refused).
    fn find_network(
        &self,
        access: &Access,
        id_or_name: &str,
        permission: Permission,
    ) -> Result<(String, NetworkRecord), ClusterError> {
        let networks = self.store.networks()?;
        let not_found = || ClusterError::NotFound(format!("network {id_or_name} not found"));
        let (id, record) = find_one(&networks, id_or_name, |n| &n.name).ok_or_else(not_found)?;
        access.reach(Permission::NetworkView, permission, &collection(record), not_found)?;
        Ok((id.clone(), record.clone()))
    }

    /// Checks the networks a service's tasks join: each one the caller may attach to
    /// (`network.attach` in its collection), once.
    pub(crate) fn check_networks(&self, access: &Access, spec: &TaskSpec) -> Result<(), ClusterError> {
        let mut seen = std::collections::BTreeSet::new();
        for attachment in &spec.networks {
            let (id, _) =
                self.find_network(access, &attachment.target, Permission::NetworkAttach).map_err(|e| match e {
                    ClusterError::NotFound(_) | ClusterError::Hidden(_) => {
                        ClusterError::Invalid(format!("network {} not found", attachment.target))
                    }
                    other => other,
                })?;
            if !seen.insert(id) {
                return Err(ClusterError::Invalid(format!("network {} is named twice", attachment.target)));
            }
        }
        Ok(())
    }

    /// The networks a task of `service_name` joins, with its aliases (the service's name first).
    pub(crate) fn task_networks(&self, service_name: &str, spec: &TaskSpec) -> Result<Vec<TaskNetwork>, ClusterError> {
        if spec.networks.is_empty() {
            return Ok(Vec::new());
        }
        let networks = self.store.networks()?;
        let mut out = Vec::new();
        for attachment in &spec.networks {
            let Some((id, record)) = find_one(&networks, &attachment.target, |n| &n.name) else {
                tracing::error!(network = attachment.target, "a task joins a network the state does not hold");
                continue;
            };
            let mut aliases = vec![service_name.to_owned()];
            aliases.extend(attachment.aliases.iter().filter(|a| *a != service_name).cloned());
            out.push(TaskNetwork { id: id.clone(), name: record.name.clone(), internal: record.internal, aliases });
        }
        Ok(out)
    }
}

/// What Wharf makes of a `docker network create`: an overlay-scoped cluster network, without
/// the options a bridge per node cannot honour.
fn check_network(request: &NetworkCreate) -> Result<(), ClusterError> {
    let name = &request.name;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(allowed)
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(ClusterError::Invalid(format!(
            "invalid network name {name:?}: letters, digits, '-', '_' and '.', starting with a letter or digit"
        )));
    }
    if request.driver != "overlay" {
        return Err(ClusterError::Invalid(format!(
            "Wharf's networks are cluster networks: create one with -d overlay (driver {:?} is not supported)",
            request.driver
        )));
    }
    let not_yet = |what: &str| Err(ClusterError::Invalid(format!("{what} is not supported by Wharf yet")));
    if request.ingress {
        return not_yet("an ingress network (--ingress)");
    }
    if request.config_only || request.config_from.as_ref().is_some_and(|c| !c.is_null()) {
        return not_yet("a network made from a configuration (--config-only, --config-from)");
    }
    if request.enable_ipv6 {
        return not_yet("IPv6 (--ipv6)");
    }
    let ipam_config = request.ipam.as_ref().and_then(|i| i.get("Config")).and_then(|c| c.as_array());
    if ipam_config.is_some_and(|c| !c.is_empty()) {
        return not_yet("choosing addresses (--subnet, --ip-range, --gateway)");
    }
    if request.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return not_yet("network options (--opt)");
    }
    Ok(())
}

fn matches(id: &str, record: &NetworkRecord, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| match key.as_str() {
        "id" => values.iter().any(|v| id.starts_with(v.as_str())),
        "name" => values.iter().any(|v| record.name.contains(v.as_str())),
        "driver" => values.contains(&record.driver),
        "scope" => values.iter().any(|v| v == "swarm"),
        "type" => values.iter().any(|v| v == "custom"),
        "label" => crate::services::labels_match(&record.labels, values),
        _ => true,
    })
}

fn view(id: &str, record: &NetworkRecord) -> Network {
    Network {
        name: record.name.clone(),
        id: id.to_owned(),
        created: docker::rfc3339(record.created),
        scope: "swarm".into(),
        driver: record.driver.clone(),
        enable_ipv6: false,
        ipam: serde_json::json!({"Driver": "default", "Options": null, "Config": []}),
        internal: record.internal,
        attachable: record.attachable,
        ingress: false,
        config_only: false,
        containers: BTreeMap::new(),
        options: BTreeMap::new(),
        labels: record.labels.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_network_is_an_overlay_without_what_a_bridge_per_node_cannot_honour() {
        let request = |json: serde_json::Value| serde_json::from_value::<NetworkCreate>(json).expect("request");
        // What `docker network create -d overlay` and `docker stack deploy` send.
        let plain = request(serde_json::json!({"Name": "backend", "Driver": "overlay", "Attachable": false,
            "IPAM": {"Driver": "default", "Config": []}, "Options": {}, "Labels": {"com.docker.stack.namespace": "s"}}));
        assert!(check_network(&plain).is_ok());
        let bridge = request(serde_json::json!({"Name": "backend", "Driver": "bridge"}));
        assert!(matches!(check_network(&bridge), Err(ClusterError::Invalid(why)) if why.contains("-d overlay")));
        for bad in [
            serde_json::json!({"Name": "backend", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": "10.9.0.0/24"}]}}),
            serde_json::json!({"Name": "backend", "Driver": "overlay", "Options": {"encrypted": ""}}),
            serde_json::json!({"Name": "backend", "Driver": "overlay", "Ingress": true}),
            serde_json::json!({"Name": "-backend", "Driver": "overlay"}),
        ] {
            assert!(check_network(&request(bad.clone())).is_err(), "{bad}");
        }
    }
}
