//! The Docker Engine API paths Wharf answers, parsed into a closed enum before anything is
//! handled: `/_ping`, and `/v1.NN/...` or unversioned paths of the swarm-mode calls.

use wharf_store::SecretKind;

/// A call of the Docker Engine API, by path (the method is checked by its handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DockerCall {
    Ping,
    Version,
    Info,
    Swarm,
    Nodes,
    Node(String),
    NodeUpdate(String),
    Services,
    ServiceCreate,
    Service(String),
    ServiceUpdate(String),
    ServiceLogs(String),
    Tasks,
    Task(String),
    TaskLogs(String),
    Networks,
    NetworkCreate,
    Network(String),
    /// `secrets` or `configs` (the kind), and what follows.
    Secrets(SecretKind),
    SecretCreate(SecretKind),
    Secret(SecretKind, String),
    SecretUpdate(SecretKind, String),
    Distribution(String),
    /// `GET /containers/json`.
    Containers,
    ContainerCreate,
    /// `/containers/{id}` (`DELETE`) and `/containers/{id}/json` (`GET`).
    Container(String),
    /// `/containers/{id}/{operation}` (`start`, `stop`, `kill`, `wait`, `logs`, `attach`,
    /// `exec`...).
    ContainerOp(String, String),
    /// `/exec/{id}/start` and `/exec/{id}/json`.
    Exec(String, String),
    /// A Docker API path Wharf does not serve (containers, images, volumes, plugins...).
    Unsupported(String),
    /// A `/v1.NN/` path of a version Wharf does not speak.
    BadVersion(String),
}

/// The first segments of the Docker API's paths, besides those [`DockerCall`] names.
const OTHER_FAMILIES: [&str; 10] =
    ["images", "volumes", "plugins", "system", "events", "build", "session", "commit", "grpc", "distribution"];

impl DockerCall {
    /// The call `path` names, or `None` when it is no Docker API path.
    pub(crate) fn parse(path: &str) -> Option<DockerCall> {
        if path == "/_ping" {
            return Some(DockerCall::Ping);
        }
        let rest = path.strip_prefix('/')?;
        let (versioned, rest) = match rest.split_once('/') {
            Some((first, after)) if first.starts_with("v1.") => (Some(first), after),
            _ => (None, rest),
        };
        if let Some(version) = versioned {
            let minor: Option<u32> = version.strip_prefix("v1.").and_then(|m| m.parse().ok());
            if !minor.is_some_and(|m| (24..=41).contains(&m)) {
                return Some(DockerCall::BadVersion(version.trim_start_matches('v').to_owned()));
            }
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let call = match parts.as_slice() {
            ["_ping"] => DockerCall::Ping,
            ["version"] => DockerCall::Version,
            ["info"] => DockerCall::Info,
            ["swarm"] => DockerCall::Swarm,
            ["nodes"] => DockerCall::Nodes,
            ["nodes", id] => DockerCall::Node((*id).to_owned()),
            ["nodes", id, "update"] => DockerCall::NodeUpdate((*id).to_owned()),
            ["services"] => DockerCall::Services,
            ["services", "create"] => DockerCall::ServiceCreate,
            ["services", id] => DockerCall::Service((*id).to_owned()),
            ["services", id, "update"] => DockerCall::ServiceUpdate((*id).to_owned()),
            ["services", id, "logs"] => DockerCall::ServiceLogs((*id).to_owned()),
            ["tasks"] => DockerCall::Tasks,
            ["tasks", id] => DockerCall::Task((*id).to_owned()),
            ["tasks", id, "logs"] => DockerCall::TaskLogs((*id).to_owned()),
            ["networks"] => DockerCall::Networks,
            ["networks", "create"] => DockerCall::NetworkCreate,
            ["networks", id] => DockerCall::Network((*id).to_owned()),
            [family @ ("secrets" | "configs"), rest @ ..] => {
                let kind = if *family == "secrets" { SecretKind::Secret } else { SecretKind::Config };
                match rest {
                    [] => DockerCall::Secrets(kind),
                    ["create"] => DockerCall::SecretCreate(kind),
                    [id] => DockerCall::Secret(kind, (*id).to_owned()),
                    [id, "update"] => DockerCall::SecretUpdate(kind, (*id).to_owned()),
                    _ => DockerCall::Unsupported(rest.join("/")),
                }
            }
            ["containers", "json"] => DockerCall::Containers,
            ["containers", "create"] => DockerCall::ContainerCreate,
            ["containers", "prune"] => DockerCall::Unsupported("containers/prune".into()),
            ["containers", id] | ["containers", id, "json"] => DockerCall::Container((*id).to_owned()),
            ["containers", id, op] => DockerCall::ContainerOp((*id).to_owned(), (*op).to_owned()),
            ["exec", id, op] => DockerCall::Exec((*id).to_owned(), (*op).to_owned()),
            ["distribution", image @ .., "json"] if !image.is_empty() => DockerCall::Distribution(image.join("/")),
            [first, ..] if versioned.is_some() || is_docker_family(first) => DockerCall::Unsupported(rest.to_owned()),
            _ => return None,
        };
        Some(call)
    }
}

fn is_docker_family(first: &str) -> bool {
    OTHER_FAMILIES.contains(&first)
        || matches!(
            first,
            "containers"
                | "exec"
                | "version"
                | "info"
                | "swarm"
                | "nodes"
                | "services"
                | "tasks"
                | "networks"
                | "secrets"
                | "configs"
                | "distribution"
        )
}

#[cfg(test)]
mod tests {
    use super::DockerCall::{self, *};
    use wharf_store::SecretKind;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn versioned_and_unversioned_paths_name_the_same_calls() {
        assert_eq!(DockerCall::parse("/_ping"), Some(Ping));
        assert_eq!(DockerCall::parse("/v1.41/_ping"), Some(Ping));
        assert_eq!(DockerCall::parse("/v1.41/info"), Some(Info));
        assert_eq!(DockerCall::parse("/info"), Some(Info));
        assert_eq!(DockerCall::parse("/v1.41/services/create"), Some(ServiceCreate));
        assert_eq!(DockerCall::parse("/services/abc/update"), Some(ServiceUpdate(s("abc"))));
        assert_eq!(DockerCall::parse("/v1.41/tasks/t1/logs"), Some(TaskLogs(s("t1"))));
        assert_eq!(
            DockerCall::parse("/v1.41/distribution/127.0.0.1:5000/team/app:1/json"),
            Some(Distribution(s("127.0.0.1:5000/team/app:1")))
        );
        assert_eq!(DockerCall::parse("/v1.41/containers/json"), Some(Containers));
        assert_eq!(DockerCall::parse("/v1.41/containers/abc"), Some(Container(s("abc"))));
        assert_eq!(DockerCall::parse("/containers/abc/json"), Some(Container(s("abc"))));
        assert_eq!(DockerCall::parse("/v1.41/containers/abc/start"), Some(ContainerOp(s("abc"), s("start"))));
        assert_eq!(DockerCall::parse("/v1.41/exec/e1/start"), Some(Exec(s("e1"), s("start"))));
        assert_eq!(DockerCall::parse("/v1.41/containers/a/b/c"), Some(Unsupported(s("containers/a/b/c"))));
        assert_eq!(DockerCall::parse("/volumes"), Some(Unsupported(s("volumes"))));
        assert_eq!(DockerCall::parse("/v1.41/secrets/create"), Some(SecretCreate(SecretKind::Secret)));
        assert_eq!(DockerCall::parse("/configs/c1"), Some(Secret(SecretKind::Config, s("c1"))));
        assert_eq!(DockerCall::parse("/v1.41/secrets"), Some(Secrets(SecretKind::Secret)));
        assert_eq!(DockerCall::parse("/v1.50/info"), Some(BadVersion(s("1.50"))));
        assert_eq!(DockerCall::parse("/v1.12/info"), Some(BadVersion(s("1.12"))));
    }

    #[test]
    fn the_registry_the_account_api_and_the_cluster_routes_are_no_docker_calls() {
        for path in ["/v2/", "/v2/a/manifests/1", "/api/me", "/auth/token", "/cluster/join", "/ca", "/raft/vote"] {
            assert_eq!(DockerCall::parse(path), None, "{path}");
        }
    }
}
