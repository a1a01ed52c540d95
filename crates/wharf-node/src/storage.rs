//! Where a node keeps blob bytes: its own disk (the default) or shared S3 storage, chosen by
//! `--storage` at the first start and recorded (without credentials) in the data directory,
//! so that later starts use the same storage without repeating it, and refuse another.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wharf_blobstore::{BlobStore, FsBlobStore, S3BlobStore, S3Config, SwiftAuth, SwiftBlobStore, SwiftConfig};
use wharf_registry::StoreLedger;
use wharf_store::{Proposer, Store};

use crate::{DataDir, NodeError};

/// What the command line asked for: a storage location (none: what the data directory
/// records, else the filesystem) and where the credentials are (none: the environment).
#[derive(Debug, Clone, Default)]
pub struct StorageChoice {
    pub location: Option<String>,
    pub credentials: Option<PathBuf>,
}

/// The blob storage of a node.
#[derive(Debug, Clone)]
pub enum Storage {
    /// `blobs/` in the data directory; a cluster copies blobs between managers.
    Filesystem,
    /// A bucket every manager shares; nothing is copied between managers.
    S3(S3Config),
    /// An OpenStack Swift container every manager shares.
    Swift(SwiftConfig),
}

const FILESYSTEM: &str = "filesystem";
/// How long a failing S3 request is retried before the client hears 503, unless the location
/// says (`retry=`).
const DEFAULT_RETRY: Duration = Duration::from_secs(30);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Storage {
    /// The storage `choice` names for the node in `dir`: the location given (recorded at the
    /// first start; refused if another one is recorded), else the recorded one.
    pub fn resolve(dir: &DataDir, choice: &StorageChoice) -> Result<Storage, NodeError> {
        let recorded = match std::fs::read_to_string(dir.storage_record()) {
            Ok(text) => Some(text.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(NodeError::io("read the storage record".into(), e)),
        };
        // A data directory from before storage was recorded, with blobs in it, is filesystem.
        let recorded = recorded.or_else(|| dir.blobs().exists().then(|| FILESYSTEM.to_owned()));
        let location = match (&choice.location, recorded) {
            (Some(given), Some(recorded)) => {
                let given = Storage::parse(given, choice.credentials.as_deref())?.location();
                if given != recorded {
                    return Err(NodeError::Start(format!(
                        "this node keeps its blobs in {recorded}, not {given}: start it with --storage {recorded} \
                         (moving blobs between storages is not supported)"
                    )));
                }
                recorded
            }
            (Some(given), None) => given.clone(),
            (None, Some(recorded)) => recorded,
            (None, None) => FILESYSTEM.to_owned(),
        };
        let storage = Storage::parse(&location, choice.credentials.as_deref())?;
        record(dir, &storage.location())?;
        Ok(storage)
    }

    /// Records `location`, the cluster's storage, for the node in `dir` (a manager joining,
    /// or a worker becoming a manager), so that it starts on the same storage. Refused when
    /// the node records another one.
    pub fn adopt(dir: &DataDir, location: &str) -> Result<(), NodeError> {
        let recorded = std::fs::read_to_string(dir.storage_record()).ok().map(|t| t.trim().to_owned());
        let recorded = recorded.or_else(|| dir.blobs().exists().then(|| FILESYSTEM.to_owned()));
        match recorded {
            Some(recorded) if recorded != location => Err(NodeError::Start(format!(
                "the cluster keeps its blobs in {location}, but this node keeps them in {recorded}: join with an \
                 empty data directory"
            ))),
            Some(_) => Ok(()),
            None => record(dir, location),
        }
    }

    /// Parses a location: `filesystem`, or
    /// `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&addressing=path|virtual&retry=SECONDS]`.
    /// S3 credentials come from `credentials` (a file of `aws_access_key_id = ...` and
    /// `aws_secret_access_key = ...` lines, as in `~/.aws/credentials`) or from
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub fn parse(location: &str, credentials: Option<&Path>) -> Result<Storage, NodeError> {
        let bad = |why: &str| NodeError::Start(format!("--storage {location:?}: {why}"));
        if location == FILESYSTEM || location == "fs" {
            return Ok(Storage::Filesystem);
        }
        if let Some(rest) = location.strip_prefix("swift://") {
            return parse_swift(location, rest, credentials);
        }
        let Some(rest) = location.strip_prefix("s3://") else {
            return Err(bad("the storage is `filesystem`, s3://BUCKET[/PREFIX][?endpoint=URL&region=...] or \
                 swift://CONTAINER[/PREFIX]?auth=URL[&auth_version=3&project=...]"));
        };
        let (bucket, prefix, params) = split_location(rest).map_err(&bad)?;
        if bucket.is_empty()
            || !bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c))
        {
            return Err(bad("the bucket name is lower-case letters, digits, '-' and '.'"));
        }
        let mut endpoint = None;
        let mut region = "us-east-1".to_owned();
        let mut addressing = None;
        let mut retry_for = DEFAULT_RETRY;
        for (key, value) in params {
            match key {
                "endpoint" if value.starts_with("https://") || value.starts_with("http://") => {
                    endpoint = Some(value.trim_end_matches('/').to_owned());
                }
                "endpoint" => return Err(bad("the endpoint is an http:// or https:// URL")),
                "region" => region = value.to_owned(),
                "addressing" if value == "path" || value == "virtual" => addressing = Some(value == "path"),
                "addressing" => return Err(bad("addressing is `path` or `virtual`")),
                "retry" => {
                    let seconds: u64 = value.parse().map_err(|_| bad("retry is a number of seconds"))?;
                    retry_for = Duration::from_secs(seconds);
                }
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        let (access_key, secret_key) = s3_credentials(credentials)?;
        Ok(Storage::S3(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            // Path-style by default for a server of one's own, virtual-host style for AWS.
            path_style: addressing.unwrap_or(endpoint.is_some()),
            endpoint,
            region,
            access_key,
            secret_key,
            retry_for,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }))
    }

    /// The location in the form `--storage` takes, without credentials (what the data
    /// directory records and the banner prints).
    pub fn location(&self) -> String {
        match self {
            Storage::Filesystem => FILESYSTEM.to_owned(),
            Storage::S3(c) => {
                let mut location = format!("s3://{}", c.bucket);
                if !c.prefix.is_empty() {
                    location.push('/');
                    location.push_str(&c.prefix);
                }
                let mut query = Vec::new();
                if let Some(endpoint) = &c.endpoint {
                    query.push(format!("endpoint={endpoint}"));
                }
                query.push(format!("region={}", c.region));
                query.push(format!("addressing={}", if c.path_style { "path" } else { "virtual" }));
                if c.retry_for != DEFAULT_RETRY {
                    query.push(format!("retry={}", c.retry_for.as_secs()));
                }
                format!("{location}?{}", query.join("&"))
            }
            Storage::Swift(c) => {
                let mut location = format!("swift://{}", c.container);
                if !c.prefix.is_empty() {
                    location.push('/');
                    location.push_str(&c.prefix);
                }
                let mut query = match &c.auth {
                    SwiftAuth::V1 { url, .. } => vec![format!("auth={url}")],
                    SwiftAuth::V3 { url, user_domain, project, project_domain, region, .. } => {
                        let mut q = vec![
                            format!("auth={url}"),
                            "auth_version=3".to_owned(),
                            format!("project={project}"),
                            format!("user_domain={user_domain}"),
                            format!("project_domain={project_domain}"),
                        ];
                        if let Some(region) = region {
                            q.push(format!("region={region}"));
                        }
                        q
                    }
                };
                if c.retry_for != DEFAULT_RETRY {
                    query.push(format!("retry={}", c.retry_for.as_secs()));
                }
                if c.segment_size != DEFAULT_SEGMENT {
                    query.push(format!("segment_size={}", c.segment_size));
                }
                format!("{location}?{}", query.join("&"))
            }
        }
    }

    /// Opens the blob store. Shared storage records its uploads in the replicated state
    /// (through `store` and `proposer`). A bucket that does not answer is logged, not fatal:
    /// the node serves the rest, and pushes and pulls answer 503 until it does.
    pub(crate) async fn open(
        &self,
        dir: &DataDir,
        store: &Arc<Store>,
        proposer: Arc<dyn Proposer>,
    ) -> Result<Arc<dyn BlobStore>, NodeError> {
        match self {
            Storage::Filesystem => {
                let blobs = FsBlobStore::open(dir.blobs()).map_err(|e| NodeError::start("open the blob store")(&e))?;
                Ok(Arc::new(blobs))
            }
            Storage::S3(config) => {
                let ledger = Arc::new(StoreLedger::new(Arc::clone(store), proposer));
                let blobs =
                    S3BlobStore::new(config, ledger).map_err(|e| NodeError::start("open the S3 blob store")(&e))?;
                if let Err(e) = blobs.check().await {
                    tracing::error!(error = %e, storage = %self.location(), "the S3 bucket does not answer");
                }
                Ok(Arc::new(blobs))
            }
            Storage::Swift(config) => {
                let ledger = Arc::new(StoreLedger::new(Arc::clone(store), proposer));
                let blobs = SwiftBlobStore::new(config.clone(), ledger)
                    .map_err(|e| NodeError::start("open the Swift blob store")(&e))?;
                if let Err(e) = blobs.check().await {
                    tracing::error!(error = %e, storage = %self.location(), "the Swift container does not answer");
                }
                Ok(Arc::new(blobs))
            }
        }
    }
}

/// Writes the storage record of `dir` (a private file, as everything in a data directory).
fn record(dir: &DataDir, location: &str) -> Result<(), NodeError> {
    wharf_pki::create_private_dir(dir.root())?;
    wharf_pki::write_private(&dir.storage_record(), &format!("{location}\n"))?;
    Ok(())
}

/// A location's `key=value` parameters, in order.
type Params<'a> = Vec<(&'a str, &'a str)>;

/// Splits what follows a location's scheme, `NAME[/PREFIX][?KEY=VALUE&...]`, into the bucket or
/// container name, the prefix and the parameters.
fn split_location(rest: &str) -> Result<(&str, &str, Params<'_>), &'static str> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (name, prefix) = path.split_once('/').unwrap_or((path, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').ok_or("a query parameter without a value"))
        .collect::<Result<_, _>>()?;
    Ok((name, prefix, params))
}

/// Largest object the Swift driver writes, unless the location says (`segment_size=`).
const DEFAULT_SEGMENT: u64 = 1 << 30;

/// Parses `swift://CONTAINER[/PREFIX]?auth=URL[&auth_version=1|3&project=P&user_domain=D&
/// project_domain=D&region=R&retry=SECONDS&segment_size=BYTES]` (`rest` is after the scheme).
/// The user and key (v1) or password (v3) come from `credentials` (`user = ...` and `key = ...`
/// or `password = ...` lines) or from `ST_USER`/`ST_KEY` (v1), `OS_USERNAME`/`OS_PASSWORD` (v3).
fn parse_swift(location: &str, rest: &str, credentials: Option<&Path>) -> Result<Storage, NodeError> {
    let bad = |why: &str| NodeError::Start(format!("--storage {location:?}: {why}"));
    let (container, prefix, params) = split_location(rest).map_err(&bad)?;
    if container.is_empty() || container.len() > 256 || container.contains(|c: char| c.is_control()) {
        return Err(bad("the container name is 1 to 256 printable characters"));
    }
    let (mut auth, mut version, mut project, mut region) = (None, 1u8, None, None);
    let (mut user_domain, mut project_domain) = ("Default".to_owned(), "Default".to_owned());
    let mut retry_for = DEFAULT_RETRY;
    let mut segment_size = DEFAULT_SEGMENT;
    for (key, value) in params {
        match key {
            "auth" if value.starts_with("https://") || value.starts_with("http://") => {
                auth = Some(value.trim_end_matches('/').to_owned());
            }
            "auth" => return Err(bad("auth is the identity service's http:// or https:// URL")),
            "auth_version" if value == "1" || value == "3" => version = if value == "1" { 1 } else { 3 },
            "auth_version" => return Err(bad("auth_version is 1 (TempAuth) or 3 (Keystone)")),
            "project" => project = Some(value.to_owned()),
            "user_domain" => user_domain = value.to_owned(),
            "project_domain" => project_domain = value.to_owned(),
            "region" => region = Some(value.to_owned()),
            "retry" => retry_for = Duration::from_secs(value.parse().map_err(|_| bad("retry is a number of seconds"))?),
            "segment_size" => {
                segment_size = value.parse().map_err(|_| bad("segment_size is a number of bytes"))?;
                if !(1 << 20..=5 << 30).contains(&segment_size) {
                    return Err(bad("segment_size is from 1 MiB to 5 GiB"));
                }
            }
            other => return Err(bad(&format!("unknown parameter {other:?}"))),
        }
    }
    let url = auth.ok_or_else(|| bad("auth=URL (the identity service) is required"))?;
    let values = credential_lines(credentials)?;
    let pick = |names: &[&str], env: &str| {
        names
            .iter()
            .find_map(|n| values.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
            .or_else(|| if credentials.is_none() { std::env::var(env).ok() } else { None })
    };
    let missing = |what: &str| {
        NodeError::Start(format!(
            "Swift storage needs {what}: give --storage-credentials FILE (`user = ...` and `key = ...` or \
             `password = ...` lines) or set the environment (ST_USER/ST_KEY, OS_USERNAME/OS_PASSWORD)"
        ))
    };
    let auth = if version == 1 {
        let user = pick(&["user", "username"], "ST_USER").ok_or_else(|| missing("a user"))?;
        let key = pick(&["key", "password"], "ST_KEY").ok_or_else(|| missing("a key"))?;
        SwiftAuth::V1 { url, user, key }
    } else {
        let user = pick(&["user", "username"], "OS_USERNAME").ok_or_else(|| missing("a user"))?;
        let password = pick(&["password", "key"], "OS_PASSWORD").ok_or_else(|| missing("a password"))?;
        let project = project.ok_or_else(|| bad("project= is required with auth_version=3"))?;
        SwiftAuth::V3 { url, user, user_domain, password, project, project_domain, region }
    };
    Ok(Storage::Swift(SwiftConfig {
        auth,
        container: container.to_owned(),
        prefix: prefix.trim_matches('/').to_owned(),
        retry_for,
        request_timeout: DEFAULT_REQUEST_TIMEOUT,
        segment_size,
    }))
}

/// The `key = value` lines of a credentials file (keys lower-cased), or none without a file.
fn credential_lines(file: Option<&Path>) -> Result<Vec<(String, String)>, NodeError> {
    let Some(file) = file else { return Ok(Vec::new()) };
    let text = std::fs::read_to_string(file)
        .map_err(|e| NodeError::io(format!("read the storage credentials {}", file.display()), e))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(_, v)| !v.is_empty())
        .collect())
}

/// The S3 access key and secret, from `file` or the environment; never logged.
fn s3_credentials(file: Option<&Path>) -> Result<(String, String), NodeError> {
    let (mut access, mut secret) = (None, None);
    if file.is_some() {
        for (key, value) in credential_lines(file)? {
            match key.as_str() {
                "aws_access_key_id" | "access_key_id" | "access_key" => access = Some(value),
                "aws_secret_access_key" | "secret_access_key" | "secret_key" => secret = Some(value),
                _ => {}
            }
        }
    } else {
        access = std::env::var("AWS_ACCESS_KEY_ID").ok();
        secret = std::env::var("AWS_SECRET_ACCESS_KEY").ok();
    }
    match (access, secret) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Ok((a, s)),
        _ => Err(NodeError::Start(match file {
            Some(file) => format!(
                "{} has no aws_access_key_id and aws_secret_access_key lines for the S3 storage",
                file.display()
            ),
            None => "S3 storage needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give \
                     --storage-credentials FILE"
                .to_owned(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n").expect("write");
        file
    }

    #[test]
    fn locations_parse_and_print_back_without_credentials() {
        let file = creds();
        let s = Storage::parse("s3://reg/wharf/x?endpoint=http://127.0.0.1:5200/&retry=5", Some(file.path()))
            .expect("parse");
        let Storage::S3(c) = &s else { panic!("{s:?}") };
        assert_eq!((c.bucket.as_str(), c.prefix.as_str(), c.region.as_str()), ("reg", "wharf/x", "us-east-1"));
        assert!(c.path_style, "a server of one's own is addressed by path");
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("AK", "SK"));
        assert_eq!(c.retry_for, Duration::from_secs(5));
        let printed = s.location();
        assert_eq!(printed, "s3://reg/wharf/x?endpoint=http://127.0.0.1:5200&region=us-east-1&addressing=path&retry=5");
        assert!(!printed.contains("SK") && !format!("{s:?}").contains("SK"), "the secret is never shown");
        let again = Storage::parse(&printed, Some(file.path())).expect("parse printed");
        assert_eq!(again.location(), printed);
        let aws = Storage::parse("s3://bucket?region=eu-west-1", Some(file.path())).expect("aws");
        let Storage::S3(c) = &aws else { panic!() };
        assert!(!c.path_style && c.endpoint.is_none(), "AWS is addressed by virtual host");
        assert!(matches!(Storage::parse("filesystem", None), Ok(Storage::Filesystem)));
    }

    #[test]
    fn swift_locations_parse_for_tempauth_and_keystone_and_print_back() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), "user = test:tester\nkey = testing\npassword = pw\n").expect("write");
        let v1 = Storage::parse("swift://reg/w?auth=http://127.0.0.1:8090/auth/v1.0", Some(file.path())).expect("v1");
        let Storage::Swift(c) = &v1 else { panic!("{v1:?}") };
        assert!(matches!(&c.auth, SwiftAuth::V1 { user, key, .. } if user == "test:tester" && key == "testing"));
        assert_eq!((c.container.as_str(), c.prefix.as_str(), c.segment_size), ("reg", "w", DEFAULT_SEGMENT));
        assert_eq!(v1.location(), "swift://reg/w?auth=http://127.0.0.1:8090/auth/v1.0");
        let v3 = "swift://reg?auth=https://keystone:5000/v3&auth_version=3&project=p&user_domain=Default&\
                  project_domain=Default&region=r1&segment_size=1048576";
        let parsed = Storage::parse(v3, Some(file.path())).expect("v3");
        let Storage::Swift(c) = &parsed else { panic!() };
        assert!(matches!(&c.auth, SwiftAuth::V3 { password, project, .. } if password == "pw" && project == "p"));
        assert_eq!(Storage::parse(&parsed.location(), Some(file.path())).expect("again").location(), parsed.location());
        assert!(!parsed.location().contains("pw") && !format!("{parsed:?}").contains("testing"));
    }

    #[test]
    fn bad_locations_and_missing_credentials_are_refused_with_a_reason() {
        let file = creds();
        for bad in [
            "s3://",
            "s3://Upper",
            "s3://b?endpoint=ftp://x",
            "s3://b?addressing=sideways",
            "s3://b?retry=soon",
            "s3://b?colour=blue",
            "s3://b?endpoint",
            "swift://c",
            "swift://c?auth=ftp://x",
            "swift://c?auth=http://k/v3&auth_version=3",
            "swift://c?auth=http://k&segment_size=10",
            "/var/blobs",
        ] {
            let e = Storage::parse(bad, Some(file.path())).expect_err(bad).to_string();
            assert!(e.contains("--storage"), "{bad}: {e}");
        }
        let empty = tempfile::NamedTempFile::new().expect("temp file");
        let e = Storage::parse("s3://b", Some(empty.path())).expect_err("no keys").to_string();
        assert!(e.contains("aws_access_key_id"), "{e}");
    }

    #[test]
    fn the_first_storage_is_recorded_and_another_one_refused() {
        let root = tempfile::tempdir().expect("dir");
        let dir = DataDir::new(root.path().join("data"));
        let file = creds();
        let s3 = StorageChoice {
            location: Some("s3://b?endpoint=http://127.0.0.1:1".into()),
            credentials: Some(file.path().to_owned()),
        };
        let first = Storage::resolve(&dir, &s3).expect("first start");
        assert!(matches!(first, Storage::S3(_)));
        let again = Storage::resolve(&dir, &StorageChoice { location: None, credentials: s3.credentials.clone() })
            .expect("a restart without --storage uses the recorded one");
        assert_eq!(again.location(), first.location());
        let e = Storage::resolve(&dir, &StorageChoice { location: Some("filesystem".into()), credentials: None })
            .expect_err("another storage")
            .to_string();
        assert!(e.contains("keeps its blobs in s3://b"), "{e}");

        let old = DataDir::new(root.path().join("old"));
        std::fs::create_dir_all(old.blobs()).expect("blobs of an older version");
        assert!(matches!(Storage::resolve(&old, &StorageChoice::default()), Ok(Storage::Filesystem)));
        assert!(Storage::resolve(&old, &s3).is_err(), "a directory with blobs on disk is filesystem");

        // A joining manager adopts the cluster's storage, and starts on it without --storage.
        let joiner = DataDir::new(root.path().join("joiner"));
        Storage::adopt(&joiner, &first.location()).expect("adopt");
        let started = Storage::resolve(&joiner, &StorageChoice { location: None, credentials: s3.credentials.clone() })
            .expect("start on the cluster's storage");
        assert_eq!(started.location(), first.location());
        assert!(Storage::adopt(&old, &first.location()).is_err(), "a node with blobs on its disk cannot adopt S3");
    }
}
