//! The redb tables. Keys are tuples so that one repository's entries are contiguous and can
//! be listed with a range scan, in lexical order, without touching other repositories.

use redb::TableDefinition;

/// repository -> creation time.
pub(crate) const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
/// digest -> size, for every committed blob.
pub(crate) const BLOBS: TableDefinition<&str, u64> = TableDefinition::new("blobs");
/// (digest, node id) -> (): the nodes that hold a verified copy of a blob on their own disk.
pub(crate) const BLOB_HOLDERS: TableDefinition<(&str, u64), ()> = TableDefinition::new("blob_holders");
/// (repository, digest) -> size: the blobs a repository may serve.
pub(crate) const BLOB_LINKS: TableDefinition<(&str, &str), u64> = TableDefinition::new("blob_links");
/// (repository, digest) -> versioned [`crate::ManifestRecord`].
pub(crate) const MANIFESTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifests");
/// (repository, tag) -> digest.
pub(crate) const TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");
/// (repository, subject digest, referrer digest) -> descriptor JSON.
pub(crate) const REFERRERS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("referrers");
/// upload id -> versioned [`crate::UploadRecord`].
pub(crate) const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// user name -> versioned [`crate::UserRecord`].
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// session id (SHA-256 of its secret, hex) -> versioned [`crate::SessionRecord`].
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (user, session id) -> (): a user's sessions, to list and end them.
pub(crate) const USER_SESSIONS: TableDefinition<(&str, &str), ()> = TableDefinition::new("user_sessions");
/// repository -> versioned [`crate::RepoSettings`].
pub(crate) const REPO_SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("repo_settings");
/// node id -> versioned [`crate::NodeRecord`].
pub(crate) const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
/// "next_node_id" | "join_token_sealed:<role>" | "cluster_id" -> postcard value (and
/// "join_token:<role>", a token in clear written by an earlier version, until it is replaced).
pub(crate) const CLUSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");
/// "marker" -> what the replication layer last applied (opaque to the store), written in the
/// same transaction as the commands it covers.
pub(crate) const APPLIED: TableDefinition<&str, &[u8]> = TableDefinition::new("applied");
/// "next_user_id" -> the id the next account gets (ids are never reused).
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// (owner, upload id) -> (): the open uploads of each user, for the per-user cap.
pub(crate) const OWNER_UPLOADS: TableDefinition<(&str, &str), ()> = TableDefinition::new("owner_uploads");
/// (upload id, start) -> (object key, length): the segments of an upload in shared storage,
/// in order (see `wharf_blobstore::UploadLedger`).
pub(crate) const UPLOAD_SEGMENTS: TableDefinition<(&str, u64), (&str, u64)> = TableDefinition::new("upload_segments");
/// bundle id (its certificate's serial, hex) -> versioned [`crate::BundleRecord`].
pub(crate) const BUNDLES: TableDefinition<&str, &[u8]> = TableDefinition::new("bundles");
/// service id -> versioned [`crate::ServiceRecord`].
pub(crate) const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
/// service id -> the registry credentials its tasks pull with, sealed by the manager that
/// took them (never in clear in the state, its log or its snapshots).
pub(crate) const SERVICE_REGISTRY_AUTH: TableDefinition<&str, &[u8]> = TableDefinition::new("service_registry_auth");
/// service id -> versioned [`crate::UpdateRecord`]: where its last update stands.
pub(crate) const SERVICE_UPDATES: TableDefinition<&str, &[u8]> = TableDefinition::new("service_updates");
/// secret or config id -> versioned [`crate::SecretRecord`] (a secret's data sealed).
pub(crate) const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
/// network id -> versioned [`crate::NetworkRecord`].
pub(crate) const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
/// task id -> versioned [`crate::TaskRecord`].
pub(crate) const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// task id -> versioned [`crate::ContainerRecord`]: the tasks that are containers made with
/// `docker run` (a task of no service; under the service id "" in `SERVICE_TASKS`).
pub(crate) const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
/// container name -> its task id (UTF-8): the names in use.
pub(crate) const CONTAINER_NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("container_names");
/// (service id, task id) -> (): a service's tasks.
pub(crate) const SERVICE_TASKS: TableDefinition<(&str, &str), ()> = TableDefinition::new("service_tasks");
/// (node id, task id) -> (): the tasks assigned to a node, what its agent is sent.
pub(crate) const NODE_TASKS: TableDefinition<(u64, &str), ()> = TableDefinition::new("node_tasks");
/// node id -> versioned [`crate::NodeDetails`]: availability, labels, the engine's description.
pub(crate) const NODE_DETAILS: TableDefinition<u64, &[u8]> = TableDefinition::new("node_details");
/// organization -> versioned [`crate::OrgRecord`].
pub(crate) const ORGS: TableDefinition<&str, &[u8]> = TableDefinition::new("orgs");
/// "org/team" -> versioned [`crate::TeamRecord`] (with its members).
pub(crate) const TEAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("teams");
/// collection path -> versioned [`crate::CollectionRecord`] (the ones an administrator made).
pub(crate) const COLLECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("collections");
/// custom role name -> versioned [`crate::RoleRecord`].
pub(crate) const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
/// "subject collection role" -> versioned [`crate::GrantRecord`].
pub(crate) const GRANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("grants");
/// "subject  pattern" -> versioned [`crate::RepoAccessRecord`]: levels on repositories.
pub(crate) const REPO_ACCESS: TableDefinition<&str, &[u8]> = TableDefinition::new("repo_access");
/// access token id -> the registry scopes it is limited to (postcard `Vec<String>`).
pub(crate) const TOKEN_SCOPES: TableDefinition<&str, &[u8]> = TableDefinition::new("token_scopes");
/// sequence number -> versioned [`crate::AuditRecord`], in the order entries were recorded.
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// "default_role" -> the role every user holds on their private collection.
pub(crate) const IDENTITY_SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("identity_settings");
/// "schema" -> format version of the database.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(crate) const SCHEMA_VERSION: u64 = 1;
