//! The Docker Engine API's container and exec objects, as the `docker` CLI sends and reads
//! them (`docker run`, `ps`, `inspect`, `logs`, `stop`, `rm`, `exec`; moby's
//! `api/swagger.yaml`, API 1.41). A request's fields that reach past the container into its
//! node (privileged, host namespaces, host paths, capabilities, devices, security options)
//! are all typed here, so that none passes unseen: the control plane asks the caller's grants
//! about each, and refuses what Wharf cannot honour.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::docker::{HealthConfig, MountSpec};

/// `POST /containers/create`: the container's configuration and its host configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerCreate {
    #[serde(default)]
    pub image: String,
    #[serde(default, deserialize_with = "str_slice")]
    pub cmd: Vec<String>,
    #[serde(default, deserialize_with = "str_slice_or_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub domainname: String,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub open_stdin: bool,
    #[serde(default)]
    pub attach_stdin: bool,
    /// Standard input closes when the first attached client leaves (`docker run -i`).
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub stop_signal: String,
    /// Seconds.
    #[serde(default)]
    pub stop_timeout: Option<i64>,
    #[serde(default)]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default)]
    pub host_config: HostConfig,
    /// Anonymous volumes (`-v /path`): path -> `{}`.
    #[serde(default, deserialize_with = "null_default")]
    pub volumes: BTreeMap<String, serde_json::Value>,
}

/// The parts of a create body Wharf carries out (or that say nothing to the engine that runs
/// the container: `ExposedPorts` is the image's metadata, `ConsoleSize` the terminal's, and
/// `ContainerIDFile` the CLI's own).
const CARRIED: [&str; 19] = [
    "Image",
    "Cmd",
    "Entrypoint",
    "Env",
    "WorkingDir",
    "User",
    "Hostname",
    "Tty",
    "OpenStdin",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "StdinOnce",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Healthcheck",
    "Volumes",
    "ExposedPorts",
];
const CARRIED_HOST: [&str; 34] = [
    "Binds",
    "Mounts",
    "Tmpfs",
    "NetworkMode",
    "PortBindings",
    "PublishAllPorts",
    "RestartPolicy",
    "AutoRemove",
    "CapAdd",
    "CapDrop",
    "Privileged",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "UsernsMode",
    "CgroupnsMode",
    "CgroupParent",
    "SecurityOpt",
    "Devices",
    "DeviceRequests",
    "DeviceCgroupRules",
    "Sysctls",
    "MaskedPaths",
    "ReadonlyPaths",
    "VolumesFrom",
    "Links",
    "Runtime",
    "ReadonlyRootfs",
    "Init",
    "Memory",
    "NanoCpus",
    "OomScoreAdj",
    "ConsoleSize",
    "ContainerIDFile",
];

/// The first part of a create body that asks for something Wharf does not carry out (say
/// `HostConfig.Dns`), refused rather than dropped; `None` when every part is carried or says
/// nothing.
pub fn unsupported_in_create(raw: &serde_json::Value) -> Option<String> {
    use crate::docker::empty;
    let object = raw.as_object()?;
    let said = |key: &str, value: &serde_json::Value| {
        let default = match key {
            "MemorySwappiness" => value.as_i64() == Some(-1),
            "Isolation" => value.as_str() == Some("default"),
            _ => false,
        };
        !empty(value) && !default
    };
    if let Some((key, _)) =
        object.iter().find(|(k, v)| k.as_str() != "HostConfig" && !CARRIED.contains(&k.as_str()) && said(k, v))
    {
        return Some(format!("{key} is not supported by Wharf for containers yet"));
    }
    let host = object.get("HostConfig").and_then(|h| h.as_object())?;
    host.iter()
        .find(|(k, v)| !CARRIED_HOST.contains(&k.as_str()) && said(k, v))
        .map(|(key, _)| format!("HostConfig.{key} is not supported by Wharf for containers yet"))
}

/// The host half of a container's configuration. Every field that reaches the node is here,
/// so a request that sets one is seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `-v SOURCE:TARGET[:OPTIONS]`: a named volume, or a path of the node (a bind mount).
    #[serde(default, deserialize_with = "null_default")]
    pub binds: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub mounts: Vec<MountSpec>,
    /// `--tmpfs PATH[:OPTIONS]`: path -> options.
    #[serde(default, deserialize_with = "null_default")]
    pub tmpfs: BTreeMap<String, String>,
    #[serde(default)]
    pub network_mode: String,
    /// `"80/tcp" -> [{HostIp, HostPort}]`.
    #[serde(default, deserialize_with = "null_default")]
    pub port_bindings: BTreeMap<String, Option<Vec<PortBinding>>>,
    #[serde(default)]
    pub publish_all_ports: bool,
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub cap_add: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub pid_mode: String,
    #[serde(default)]
    pub ipc_mode: String,
    #[serde(rename = "UTSMode", default)]
    pub uts_mode: String,
    #[serde(default)]
    pub userns_mode: String,
    #[serde(default)]
    pub cgroupns_mode: String,
    #[serde(default)]
    pub cgroup_parent: String,
    #[serde(default, deserialize_with = "null_default")]
    pub security_opt: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub devices: Vec<DeviceMapping>,
    #[serde(default, deserialize_with = "null_default")]
    pub device_requests: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub sysctls: BTreeMap<String, String>,
    /// Set (even empty) it unmasks paths of `/proc`.
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_default")]
    pub volumes_from: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub links: Vec<String>,
    #[serde(default)]
    pub runtime: String,
    #[serde(default)]
    pub readonly_rootfs: bool,
    #[serde(default)]
    pub init: Option<bool>,
    #[serde(default)]
    pub memory: i64,
    #[serde(rename = "NanoCpus", default)]
    pub nano_cpus: i64,
    #[serde(default)]
    pub oom_score_adj: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    #[serde(default)]
    pub host_ip: String,
    #[serde(default)]
    pub host_port: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub maximum_retry_count: i64,
}

/// `--device HOST:CONTAINER[:PERMISSIONS]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    #[serde(default)]
    pub path_on_host: String,
    #[serde(default)]
    pub path_in_container: String,
    #[serde(default)]
    pub cgroup_permissions: String,
}

/// What `POST /containers/create` and `POST /containers/{id}/exec` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerCreated {
    pub id: String,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One container of `GET /containers/json` (`docker ps`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: String,
    /// `["/name"]`.
    pub names: Vec<String>,
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    pub command: String,
    pub created: i64,
    pub ports: Vec<SummaryPort>,
    pub labels: BTreeMap<String, String>,
    /// `created`, `running`, `exited`, `removing`.
    pub state: String,
    /// `Up 5 seconds`, `Exited (0) 3 minutes ago`, `Created`.
    pub status: String,
    pub host_config: SummaryHostConfig,
    pub mounts: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryPort {
    #[serde(rename = "IP", default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    pub private_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    #[serde(rename = "Type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryHostConfig {
    pub network_mode: String,
}

/// `GET /containers/{id}/json` (`docker inspect`), the fields Wharf knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    pub id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: ContainerState,
    pub image: String,
    /// `/name`.
    pub name: String,
    pub restart_count: i64,
    pub driver: String,
    pub platform: String,
    pub config: InspectConfig,
    pub host_config: InspectHostConfig,
    pub mounts: Vec<serde_json::Value>,
    pub network_settings: NetworkSettings,
    /// Where it runs (as classic Swarm and UCP answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<InspectNode>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectConfig {
    pub hostname: String,
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub image: String,
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectHostConfig {
    pub network_mode: String,
    pub privileged: bool,
    pub pid_mode: String,
    pub ipc_mode: String,
    #[serde(rename = "UTSMode")]
    pub uts_mode: String,
    pub auto_remove: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub binds: Vec<String>,
    pub readonly_rootfs: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub ports: BTreeMap<String, Option<Vec<PortBinding>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectNode {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub addr: String,
}

/// `POST /containers/{id}/wait`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitResponse {
    pub status_code: i64,
}

/// `POST /containers/{id}/exec`: the command and how it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecCreate {
    #[serde(default, deserialize_with = "str_slice")]
    pub cmd: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub attach_stdin: bool,
    #[serde(default)]
    pub attach_stdout: bool,
    #[serde(default)]
    pub attach_stderr: bool,
}

/// `POST /exec/{id}/start`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecStart {
    #[serde(default)]
    pub detach: bool,
    #[serde(default)]
    pub tty: bool,
}

/// `GET /exec/{id}/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecInspect {
    #[serde(rename = "ID")]
    pub id: String,
    pub running: bool,
    /// Null until the command ended.
    pub exit_code: Option<i64>,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub open_stdin: bool,
    pub open_stdout: bool,
    pub open_stderr: bool,
    pub can_remove: bool,
    pub pid: i64,
}

/// A list that may come as `null`, taken as empty (Go's nil slices and maps).
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Docker's `StrSlice`: a string (one word) or a list of strings, or null.
#[derive(Deserialize)]
#[serde(untagged)]
enum StrSlice {
    One(String),
    Many(Vec<String>),
}

fn str_slice<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(str_slice_or_none(deserializer)?.unwrap_or_default())
}

fn str_slice_or_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<StrSlice>::deserialize(deserializer)?.map(|s| match s {
        StrSlice::One(one) => vec![one],
        StrSlice::Many(many) => many,
    }))
}

/// Whether `name` is a container name the engine would take (`/?[a-zA-Z0-9][a-zA-Z0-9_.-]+`),
/// at most 128 characters; the leading slash is dropped.
pub fn container_name(name: &str) -> Option<&str> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    (first_ok && rest_ok && name.len() >= 2 && name.len() <= 128).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clis_create_body_parses_with_nulls_and_either_command_shape() {
        let body = r#"{"Hostname":"","User":"","AttachStdin":false,"Tty":false,"Env":null,"Cmd":["sleep","60"],
            "Image":"busybox","Entrypoint":null,"Labels":{"a":"b"},"StopTimeout":null,
            "HostConfig":{"Binds":["/etc:/host:ro"],"NetworkMode":"host","PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},
            "RestartPolicy":{"Name":"no","MaximumRetryCount":0},"CapAdd":null,"Privileged":true,"PidMode":"host",
            "UTSMode":"","Devices":[],"SecurityOpt":null,"Mounts":null,"MaskedPaths":null,"NanoCpus":0},
            "NetworkingConfig":{"EndpointsConfig":{}}}"#;
        let create: ContainerCreate = serde_json::from_str(body).expect("parses");
        assert_eq!(create.cmd, ["sleep", "60"]);
        assert_eq!(create.entrypoint, None);
        assert!(create.env.is_empty());
        let host = &create.host_config;
        assert!(host.privileged);
        assert_eq!(host.binds, ["/etc:/host:ro"]);
        assert_eq!((host.network_mode.as_str(), host.pid_mode.as_str()), ("host", "host"));
        assert_eq!(host.port_bindings["80/tcp"].as_ref().expect("binding")[0].host_port, "8080");
        assert_eq!(host.masked_paths, None);
        let one: ContainerCreate = serde_json::from_str(r#"{"Image":"i","Cmd":"true","Entrypoint":""}"#).expect("one");
        assert_eq!((one.cmd, one.entrypoint), (vec!["true".to_owned()], Some(vec![String::new()])));
    }

    #[test]
    fn what_a_create_body_asks_and_wharf_does_not_carry_out_is_named() {
        // The CLI's own body for `docker run -d busybox true` (API 1.41) says nothing extra.
        let plain = serde_json::json!({
            "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "Env": null, "Cmd": ["true"],
            "Image": "busybox", "Volumes": {}, "Entrypoint": null, "OnBuild": null, "Labels": {},
            "NetworkingConfig": {"EndpointsConfig": {"default": {"IPAMConfig": null, "Aliases": null, "MacAddress": ""}}},
            "HostConfig": {"Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
                "NetworkMode": "default", "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "ConsoleSize": [0, 0],
                "Dns": [], "ExtraHosts": null, "ShmSize": 0, "Isolation": "", "CpuShares": 0, "MemorySwappiness": -1,
                "PidsLimit": 0, "Ulimits": [], "BlkioWeightDevice": [], "OomKillDisable": false}
        });
        assert_eq!(unsupported_in_create(&plain), None);
        let with = |path: &[&str], value: serde_json::Value| {
            let mut body = plain.clone();
            let (last, parents) = path.split_last().expect("a path");
            let parent = parents.iter().fold(&mut body, |v, k| &mut v[*k]);
            parent[*last] = value;
            unsupported_in_create(&body)
        };
        assert_eq!(
            with(&["HostConfig", "Dns"], serde_json::json!(["1.1.1.1"])).as_deref(),
            Some("HostConfig.Dns is not supported by Wharf for containers yet")
        );
        assert!(with(&["HostConfig", "ExtraHosts"], serde_json::json!(["a:1.2.3.4"])).is_some());
        assert!(with(&["HostConfig", "LogConfig"], serde_json::json!({"Type": "syslog"})).is_some());
        assert!(with(&["HostConfig", "MemorySwappiness"], serde_json::json!(10)).is_some());
        assert!(with(&["Domainname"], serde_json::json!("example.com")).is_some());
        assert!(
            with(&["NetworkingConfig", "EndpointsConfig", "default", "Aliases"], serde_json::json!(["x"])).is_some()
        );
        assert_eq!(with(&["HostConfig", "Privileged"], serde_json::json!(true)), None, "asked of the grants instead");
    }

    #[test]
    fn container_names_follow_the_engines_grammar() {
        assert_eq!(container_name("/web"), Some("web"));
        assert_eq!(container_name("web-1.a_b"), Some("web-1.a_b"));
        for bad in ["", "a", "-web", "we b", "web/1", "we\nb", &"x".repeat(129)] {
            assert_eq!(container_name(bad), None, "{bad:?}");
        }
    }
}
