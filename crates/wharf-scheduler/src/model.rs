//! The scheduler's inputs and outputs: nodes as the scheduler sees them, pending tasks, and the
//! decision taken for each task.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::constraint::Constraint;
use crate::spread::Spread;

/// A node's identity inside the cluster.
pub type NodeId = u64;

/// CPU (in billionths of a core) and memory, either as a capacity or as a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

/// The transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// An operating system and CPU architecture, such as `linux` / `x86_64`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl Platform {
    /// Whether a node of platform `node` can run an image built for `self`.
    ///
    /// An empty field in the image's platform matches anything, as in swarmkit's platform
    /// filter, because images often leave the variant-free fields blank. Names are compared
    /// without regard to ASCII case, and the kernel's and Go's spellings of one architecture
    /// (`x86_64`/`amd64`, `aarch64`/`arm64`) are the same architecture.
    pub fn supports(&self, node: &Platform) -> bool {
        let os_ok = self.os.is_empty() || self.os.eq_ignore_ascii_case(&node.os);
        let arch_ok = self.architecture.is_empty() || same_architecture(&self.architecture, &node.architecture);
        os_ok && arch_ok
    }
}

/// Whether two architecture names mean the same architecture.
pub(crate) fn same_architecture(a: &str, b: &str) -> bool {
    canonical_architecture(a).eq_ignore_ascii_case(canonical_architecture(b))
}

/// Maps the kernel's architecture names to the ones Docker and Go use.
fn canonical_architecture(name: &str) -> &str {
    if name.eq_ignore_ascii_case("x86_64") {
        "amd64"
    } else if name.eq_ignore_ascii_case("aarch64") {
        "arm64"
    } else {
        name
    }
}

/// A node's role in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    /// The role as `node.role` constraints spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

/// Whether an operator lets new tasks onto a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

/// What the scheduler knows of a node: its description and the load already on it.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: NodeId,
    pub hostname: String,
    pub role: Role,
    pub ready: bool,
    pub availability: Availability,
    /// The operator's labels, matched by `node.labels.*`.
    pub labels: BTreeMap<String, String>,
    /// The engine's own labels, matched by `engine.labels.*`.
    pub engine_labels: BTreeMap<String, String>,
    pub platform: Platform,
    /// Total capacity.
    pub resources: Resources,
    /// Reservations of the tasks already on the node.
    pub reserved: Resources,
    /// Host-mode published ports in use.
    pub host_ports: BTreeSet<(Protocol, u16)>,
    /// Running or assigned tasks per service id.
    pub tasks_by_service: BTreeMap<String, u32>,
    pub total_tasks: u32,
    /// The access collection the node belongs to (`/System` for managers and `/Shared` for
    /// workers unless labelled otherwise).
    pub collection: String,
}

/// One pending task.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    pub service_id: String,
    /// Tasks with the same service id and spec version are identical and placed as one batch.
    pub spec_version: u64,
    /// Parsed constraints, all of which a node must satisfy.
    pub constraints: Vec<Constraint>,
    /// Spread descriptors in order, outermost first.
    pub preferences: Vec<Spread>,
    /// Empty means any platform; otherwise the node must match one of them.
    pub platforms: Vec<Platform>,
    pub reservations: Resources,
    pub host_ports: Vec<(Protocol, u16)>,
    /// A pre-assigned node (global services): only that node is considered.
    pub node: Option<NodeId>,
    /// The access collection of the task's service: only the nodes of that collection, of an
    /// ancestor or of a descendant may take it (`None`: any node).
    pub collection: Option<String>,
}

/// The scheduler's verdict on one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Placed { task: String, node: NodeId },
    Unplaceable { task: String, reason: String },
}

impl Decision {
    /// The id of the task this decision is about.
    pub fn task(&self) -> &str {
        match self {
            Decision::Placed { task, .. } | Decision::Unplaceable { task, .. } => task,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Placed { task, node } => write!(f, "task {task} placed on node {node}"),
            Decision::Unplaceable { task, reason } => write!(f, "task {task} not placed: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, arch: &str) -> Platform {
        Platform { os: os.into(), architecture: arch.into() }
    }

    #[test]
    fn architectures_have_two_spellings() {
        assert!(platform("linux", "amd64").supports(&platform("linux", "x86_64")));
        assert!(platform("linux", "x86_64").supports(&platform("Linux", "AMD64")));
        assert!(platform("linux", "arm64").supports(&platform("linux", "aarch64")));
        assert!(!platform("linux", "arm64").supports(&platform("linux", "amd64")));
        assert!(!platform("windows", "amd64").supports(&platform("linux", "amd64")));
    }

    #[test]
    fn empty_fields_match_anything() {
        assert!(platform("", "").supports(&platform("linux", "riscv64")));
        assert!(platform("linux", "").supports(&platform("linux", "riscv64")));
        assert!(!platform("windows", "").supports(&platform("linux", "riscv64")));
    }

    #[test]
    fn decisions_name_their_task() {
        let placed = Decision::Placed { task: "t1".into(), node: 3 };
        let refused = Decision::Unplaceable { task: "t2".into(), reason: "no suitable node".into() };
        assert_eq!(placed.task(), "t1");
        assert_eq!(refused.task(), "t2");
        assert_eq!(refused.to_string(), "task t2 not placed: no suitable node");
    }
}
