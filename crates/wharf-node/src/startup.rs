//! The steps before a manager starts in a new cluster: the first start of the first manager
//! (`wharf init`, and `wharf up` on a data directory that holds no node yet) and the recovery
//! of a manager as the only member of a new cluster (`wharf recover --force-new-cluster`). Each
//! step can be repeated, so a crash in between is mended by running the same command again.

use wharf_api::NodeRole;
use wharf_manager::bootstrap;
use wharf_pki::{Ca, CertifiedKey, NodeIdentity};
use wharf_store::Store;

use crate::{DataDir, Identity, NodeError};

/// What the first manager of a new cluster is reached at and named.
pub struct FirstStart<'a> {
    /// The address the cluster reaches it at.
    pub advertise: &'a str,
    /// The address it listens on (also a name in its certificate).
    pub listen: &'a str,
    pub hostname: &'a str,
    /// Extra names for its certificate (`--san`).
    pub sans: &'a [String],
    pub cert_validity: wharf_pki::time::Duration,
}

/// Prepares `dir` for the first start of the first manager of a new cluster over whatever
/// state it holds (nothing, or a standalone node's, which it keeps): a Raft log without a node
/// identity is folded into the state (the new cluster starts a log of its own), the CA is made,
/// and the node's certificate issued. The state is checked before (nothing is changed in a
/// member's directory) and after. The identity is not saved here: only once the cluster is
/// bootstrapped ([`crate::ManagerNode::begin`]).
pub async fn first_manager(dir: &DataDir, first: &FirstStart<'_>) -> Result<(Identity, CertifiedKey), NodeError> {
    state_of_a_first_start(dir, first.advertise)?;
    fold_raft_log_into_state(dir).await?;
    let ca = Ca::load_or_create(&dir.pki())?;
    let cluster_id = state_of_a_first_start(dir, first.advertise)?;
    let cluster_id =
        cluster_id.unwrap_or_else(|| format!("wharf-{}", &wharf_auth::secret_id(&wharf_auth::new_secret())[..16]));
    let identity = Identity {
        node_id: 1,
        cluster_id: cluster_id.clone(),
        role: NodeRole::Manager,
        advertise: first.advertise.to_owned(),
        managers: vec![first.advertise.to_owned()],
    };
    let names = wharf_pki::node_names(&[first.advertise, first.listen], first.hostname, first.sans);
    let node = NodeIdentity { node_id: 1, role: NodeRole::Manager, cluster_id };
    let key = ca.issue_node(&node, &names, first.cert_validity)?;
    Ok((identity, key))
}

/// The cluster id the state in `dir` holds, if any, once `wharf_manager::bootstrap` agrees
/// that a first start may take that state.
fn state_of_a_first_start(dir: &DataDir, advertise: &str) -> Result<Option<String>, NodeError> {
    let store = Store::open(&dir.state())?;
    bootstrap::check_first_start(&store, advertise)
        .map_err(|e| NodeError::Start(format!("{}: {e}", dir.root().display())))
}

/// Folds the Raft log in `dir` into its state (see `wharf_manager::bootstrap::fold_raft_log`).
async fn fold_raft_log_into_state(dir: &DataDir) -> Result<(), NodeError> {
    Ok(bootstrap::fold_raft_log(&dir.raft_log(), &dir.state(), &dir.snapshots()).await?)
}

/// A manager recovered as the only member of a new cluster, and the managers it left out.
pub struct Recovered {
    pub identity: Identity,
    pub key: CertifiedKey,
    /// The other managers (id, address), now marked removed: their certificates are refused
    /// from now on; they join again with a token and an empty data directory.
    pub removed: Vec<(u64, String)>,
}

/// `wharf recover --force-new-cluster`: everything this manager's log holds reaches the state,
/// the other managers are marked removed, and the identity names this manager alone. The
/// node then starts with [`crate::Start::ForcedNewCluster`], which makes a new Raft group over
/// that state and replaces the log with a snapshot.
pub async fn recover_alone(dir: &DataDir) -> Result<Recovered, NodeError> {
    let (mut identity, key) = dir.load_identity()?.ok_or_else(|| {
        NodeError::Start(format!("{} holds no node identity (node/identity.json)", dir.root().display()))
    })?;
    if identity.role != NodeRole::Manager {
        return Err(NodeError::Start(format!(
            "node {} is a worker: only a manager's data directory holds the cluster's state",
            identity.node_id
        )));
    }
    fold_raft_log_into_state(dir).await?;
    let store = Store::open(&dir.state())?;
    let removed = bootstrap::remove_other_managers(&store, identity.node_id)?;
    drop(store);
    identity.managers = vec![identity.advertise.clone()];
    dir.save_identity(&identity, &key)?;
    Ok(Recovered { identity, key, removed })
}
