//! Secrets and configs (swarmkit's controlapi `secret.go`, `config.go`): created, listed,
//! inspected and removed through the Docker API, and given to the tasks that use them. A
//! secret's data is sealed (AES-GCM under the key derived from the CA key, bound to its id)
//! before it is proposed, so that it is never in clear in the state, the Raft log, snapshots or
//! backups; no answer shows it; it is opened only for the assignments of a node that runs a task
//! using it. A config's data is no secret: it is kept and shown as sent.

use std::collections::BTreeMap;

use wharf_api::cluster::TaskFile;
use wharf_api::docker::{self, FileTarget, SecretObject, SecretSpec, TaskSpec};
use wharf_store::{OrchestrationCommand, ProposerExt, SecretKind, SecretRecord};

use wharf_auth::rbac::Permission;

use crate::access::Access;
use crate::control::new_object_id;
use crate::services::Caller;
use crate::{ClusterError, Manager};

/// Swarm's limits: 500 KiB for a secret, 1000 KiB for a config.
fn max_size(kind: SecretKind) -> usize {
    match kind {
        SecretKind::Secret => 500 * 1024,
        SecretKind::Config => 1000 * 1024,
    }
}

/// What a secret's data is sealed for: that secret and nothing else.
fn purpose(id: &str) -> String {
    format!("secret:{id}")
}

/// The collection of a secret or config.
fn collection(record: &SecretRecord) -> String {
    crate::access::collection_of(&record.labels, &record.owner)
}

impl Manager {
    /// `POST /secrets/create`, `POST /configs/create`.
    pub async fn create_secret(
        &self,
        caller: &Caller,
        kind: SecretKind,
        spec: SecretSpec,
    ) -> Result<docker::CreatedResponse, ClusterError> {
        let what = kind.as_str();
        let mut spec = spec;
        self.access(caller)?.place(self, &mut spec.labels, Permission::SecretCreate)?;
        if !valid_name(&spec.name) {
            return Err(ClusterError::Invalid(format!(
                "invalid {what} name {:?}: letters, digits, '-', '_' and '.' (not first or last), at most 64",
                spec.name
            )));
        }
        if spec.driver.as_ref().is_some_and(|d| !d.is_null()) {
            return Err(ClusterError::Invalid(format!("{what} drivers (--driver) are not supported by Wharf yet")));
        }
        if spec.templating.as_ref().is_some_and(|t| !t.is_null()) {
            return Err(ClusterError::Invalid(
                "templated data (--template-driver) is not supported by Wharf yet".into(),
            ));
        }
        let data = spec.data.unwrap_or_default();
        if data.is_empty() || data.len() > max_size(kind) {
            return Err(ClusterError::Invalid(format!(
                "{what} data must be larger than 0 and less than {} bytes",
                max_size(kind)
            )));
        }
        let id = new_object_id();
        let data = match kind {
            SecretKind::Secret => self
                .ca
                .secrets()
                .seal(&purpose(&id), &data)
                .map_err(|e| ClusterError::Internal(format!("sealing a secret: {e}")))?,
            SecretKind::Config => data,
        };
        let command = OrchestrationCommand::CreateSecret {
            id: id.clone(),
            kind,
            name: spec.name,
            owner: caller.name.clone(),
            labels: spec.labels,
            data,
            at: crate::now(),
        };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(ClusterError::from)?;
        Ok(docker::CreatedResponse { id, warnings: Vec::new() })
    }

    /// `GET /secrets`, `GET /configs` (filters `id`, `name`, `names`, `label`): what the caller
    /// may use.
    pub fn list_secrets(
        &self,
        caller: &Caller,
        kind: SecretKind,
        filters: &BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<SecretObject>, ClusterError> {
        let access = self.access(caller)?;
        let mut out = Vec::new();
        for (id, record) in self.store.secrets(kind)? {
            if access.allows(Permission::SecretView, &collection(&record)) && matches(&id, &record, filters) {
                out.push(view(&id, &record));
            }
        }
        Ok(out)
    }

    /// `GET /secrets/{id}`, `GET /configs/{id}`: by id, name or a unique id prefix.
    pub fn inspect_secret(
        &self,
        caller: &Caller,
        kind: SecretKind,
        id_or_name: &str,
    ) -> Result<SecretObject, ClusterError> {
        let (id, record) = self.find_secret(&self.access(caller)?, kind, id_or_name, Permission::SecretView)?;
        Ok(view(&id, &record))
    }

    /// `POST /secrets/{id}/update?version=N` (and configs): only the labels change, as in
    /// Swarm; the same name and data may come with them (`docker stack deploy` sends them).
    pub async fn update_secret(
        &self,
        caller: &Caller,
        kind: SecretKind,
        id_or_name: &str,
        version: u64,
        mut spec: SecretSpec,
    ) -> Result<(), ClusterError> {
        let access = self.access(caller)?;
        let (id, record) = self.find_secret(&access, kind, id_or_name, Permission::SecretUpdate)?;
        access.keep_or_move(self, &collection(&record), &mut spec.labels, Permission::SecretCreate)?;
        let same_data = match (&spec.data, kind) {
            (None, _) => true,
            (Some(data), SecretKind::Config) => *data == record.data,
            (Some(data), SecretKind::Secret) => {
                let stored = self.ca.secrets().open(&purpose(&id), &record.data).unwrap_or_default();
                stored.len() == data.len() && stored.iter().zip(data).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            }
        };
        if spec.name != record.name || !same_data {
            return Err(ClusterError::Invalid(
                "rpc error: code = InvalidArgument desc = only updates to Labels are allowed".into(),
            ));
        }
        let command =
            OrchestrationCommand::SetSecretLabels { id, kind, version, labels: spec.labels, at: crate::now() };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(ClusterError::from)?;
        Ok(())
    }

    /// `DELETE /secrets/{id}`, `DELETE /configs/{id}`: refused while a service uses it.
    pub async fn remove_secret(&self, caller: &Caller, kind: SecretKind, id_or_name: &str) -> Result<(), ClusterError> {
        let (id, _) = self.find_secret(&self.access(caller)?, kind, id_or_name, Permission::SecretRemove)?;
        let command = OrchestrationCommand::RemoveSecret { id, kind };
        self.proposer.propose_by(caller.origin.clone(), command).await.map_err(ClusterError::from)?;
        Ok(())
    }

    /// The secret or config `id_or_name` names, if the caller may see it (else not found) and
    /// take `permission` on it (else refused).
    fn find_secret(
        &self,
        access: &Access,
        kind: SecretKind,
        id_or_name: &str,
        permission: Permission,
    ) -> Result<(String, SecretRecord), ClusterError> {
        let all = self.store.secrets(kind)?;
        let not_found = || ClusterError::NotFound(format!("{} {id_or_name} not found", kind.as_str()));
        let (id, record) = crate::services::find_one(&all, id_or_name, |s| &s.name).ok_or_else(not_found)?;
        access.reach(Permission::SecretView, permission, &collection(record), not_found)?;
        Ok((id.clone(), record.clone()))
    }

    /// Checks the secrets and configs a service spec uses: each one the caller may use
    /// (`secret.use` in its collection), named as it is, at a target no other one of the task
    /// has.
    pub(crate) fn check_references(&self, access: &Access, spec: &TaskSpec) -> Result<(), ClusterError> {
        let container = &spec.container_spec;
        let mut targets = std::collections::BTreeSet::new();
        let uses = container.secrets.iter().map(|s| (SecretKind::Secret, &s.secret_id, &s.secret_name, &s.file));
        let uses =
            uses.chain(container.configs.iter().map(|c| (SecretKind::Config, &c.config_id, &c.config_name, &c.file)));
        for (kind, id, name, file) in uses {
            let what = kind.as_str();
            let not_found = || ClusterError::Invalid(format!("{what} {name} ({id}) not found"));
            let record = self.store.secret(id)?.filter(|r| r.kind == kind).ok_or_else(not_found)?;
            access.reach(Permission::SecretView, Permission::SecretUse, &collection(&record), not_found)?;
            if !name.is_empty() && record.name != *name {
                return Err(ClusterError::Invalid(format!("{what} {id} is named {}, not {name}", record.name)));
            }
            let target = target(kind, file.as_ref(), &record.name);
            if !targets.insert(target.clone()) {
                return Err(ClusterError::Invalid(format!("two secrets or configs at {target}")));
            }
            file_owner(file.as_ref())?;
        }
        if container.configs.iter().any(|c| c.runtime.as_ref().is_some_and(|r| !r.is_null())) {
            return Err(ClusterError::Invalid(
                "runtime configs (credential specs) are not supported by Wharf yet".into(),
            ));
        }
        Ok(())
    }

    /// The files of a task: its secrets opened, its configs as they are. One that cannot be
    /// opened is left out and logged (the state holds every one a service uses).
    pub(crate) fn task_files(&self, spec: &TaskSpec) -> Result<Vec<TaskFile>, ClusterError> {
        let container = &spec.container_spec;
        let uses = container.secrets.iter().map(|s| (SecretKind::Secret, &s.secret_id, &s.file));
        let uses = uses.chain(container.configs.iter().map(|c| (SecretKind::Config, &c.config_id, &c.file)));
        let mut files = Vec::new();
        for (kind, id, file) in uses {
            let Some(record) = self.store.secret(id)?.filter(|r| r.kind == kind) else {
                tracing::error!(id, kind = kind.as_str(), "a task uses a secret or config the state does not hold");
                continue;
            };
            let data = match kind {
                SecretKind::Secret => match self.ca.secrets().open(&purpose(id), &record.data) {
                    Ok(data) => data,
                    Err(_) => {
                        tracing::error!(id, "a secret could not be opened with this cluster's key");
                        continue;
                    }
                },
                SecretKind::Config => record.data.clone(),
            };
            let (uid, gid, mode) = file_owner(file.as_ref())?;
            let target = target(kind, file.as_ref(), &record.name);
            files.push(TaskFile { target, uid, gid, mode, secret: kind == SecretKind::Secret, data });
        }
        Ok(files)
    }
}

/// Where a file is in the container: its absolute target, or a relative one (the name by
/// default) under `/run/secrets` for a secret and `/` for a config.
fn target(kind: SecretKind, file: Option<&FileTarget>, name: &str) -> String {
    let given = file.map(|f| f.name.as_str()).filter(|n| !n.is_empty()).unwrap_or(name);
    match (given.starts_with('/'), kind) {
        (true, _) => given.to_owned(),
        (false, SecretKind::Secret) => format!("/run/secrets/{given}"),
        (false, SecretKind::Config) => format!("/{given}"),
    }
}

/// The owner and permissions of a file (Swarm's defaults: root, 0444).
fn file_owner(file: Option<&FileTarget>) -> Result<(u32, u32, u32), ClusterError> {
    let id = |text: &str, what: &str| -> Result<u32, ClusterError> {
        if text.is_empty() {
            return Ok(0);
        }
        text.parse().map_err(|_| ClusterError::Invalid(format!("{what} {text:?}: a numeric id")))
    };
    let Some(file) = file else { return Ok((0, 0, 0o444)) };
    let mode = if file.mode == 0 { 0o444 } else { file.mode };
    if mode > 0o7777 {
        return Err(ClusterError::Invalid(format!("file mode {mode:o}")));
    }
    Ok((id(&file.uid, "uid")?, id(&file.gid, "gid")?, mode))
}

/// Swarm's rule for object names.
fn valid_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(allowed)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn matches(id: &str, record: &SecretRecord, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| match key.as_str() {
        "id" => values.iter().any(|v| id.starts_with(v.as_str())),
        "name" => values.iter().any(|v| record.name.starts_with(v.as_str())),
        "names" => values.contains(&record.name),
        "label" => crate::services::labels_match(&record.labels, values),
        _ => true,
    })
}

/// As the Docker API shows it: a secret without its data, a config with it.
fn view(id: &str, record: &SecretRecord) -> SecretObject {
    let data = (record.kind == SecretKind::Config).then(|| record.data.clone());
    SecretObject {
        id: id.to_owned(),
        version: docker::ObjectVersion { index: record.version },
        created_at: docker::rfc3339(record.created),
        updated_at: docker::rfc3339(record.updated),
        spec: SecretSpec {
            name: record.name.clone(),
            labels: record.labels.clone(),
            data,
            driver: None,
            templating: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_names_and_owners_follow_swarm() {
        let file =
            |name: &str, uid: &str, mode| FileTarget { name: name.into(), uid: uid.into(), gid: String::new(), mode };
        assert_eq!(target(SecretKind::Secret, None, "pw"), "/run/secrets/pw");
        assert_eq!(target(SecretKind::Secret, Some(&file("db", "", 0)), "pw"), "/run/secrets/db");
        assert_eq!(target(SecretKind::Config, Some(&file("app.conf", "", 0)), "c"), "/app.conf");
        assert_eq!(target(SecretKind::Config, Some(&file("/etc/app.conf", "", 0)), "c"), "/etc/app.conf");
        assert_eq!(file_owner(None).expect("default"), (0, 0, 0o444));
        assert_eq!(file_owner(Some(&file("x", "1000", 0o400))).expect("given"), (1000, 0, 0o400));
        assert!(file_owner(Some(&file("x", "root", 0))).is_err());
        assert!(valid_name("db-password.v1") && !valid_name("-x") && !valid_name("a/b") && !valid_name(""));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
