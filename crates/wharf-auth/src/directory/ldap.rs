//! The LDAP side of a directory: connections (ldap:// with optional StartTLS, or ldaps://,
//! with the server's CA when given), the service account's bind, user searches, a user's bind
//! with their password, and group membership read as the server keeps it (`memberOf`, the
//! groups' `member`, or Active Directory's in-chain rule for nested groups). Searches are
//! paged, so a directory of any size is read whole.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, ldap_escape};
use wharf_api::identity::DirectoryServer;

use super::plan::DirectoryUser;

/// The AD matching rule that follows group nesting (LDAP_MATCHING_RULE_IN_CHAIN).
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// How long a connection and each operation may take.
const TIMEOUT: Duration = Duration::from_secs(10);
const PAGE: i32 = 500;

/// Why a directory could not answer.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The server cannot be reached (down, refused, timed out, TLS failed).
    #[error("the directory at {url} is unreachable: {why}")]
    Unreachable { url: String, why: String },
    /// The server answered with an error (a bad bind DN or password, a bad base or filter).
    #[error("the directory at {url} refused: {why}")]
    Refused { url: String, why: String },
}

fn unreachable(server: &DirectoryServer, e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unreachable { url: server.url.clone(), why: e.to_string() }
}

fn refused(server: &DirectoryServer, e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Refused { url: server.url.clone(), why: e.to_string() }
}

/// An error of an operation on an open connection: a protocol answer is a refusal, the rest
/// means the server went away.
fn failed(server: &DirectoryServer, e: LdapError) -> DirectoryError {
    match e {
        LdapError::LdapResult { result } => refused(server, format!("{} ({})", result.text, result.rc)),
        other => unreachable(server, other),
    }
}

/// A connection to `server`.
async fn connect(server: &DirectoryServer) -> Result<Ldap, DirectoryError> {
    if !(server.url.starts_with("ldap://") || server.url.starts_with("ldaps://")) {
        return Err(refused(server, "the URL must start with ldap:// or ldaps://"));
    }
    let mut settings = LdapConnSettings::new().set_conn_timeout(TIMEOUT).set_starttls(server.starttls);
    if let Some(pem) = &server.ca_pem {
        settings = settings.set_config(Arc::new(tls_config(pem).map_err(|e| refused(server, e))?));
    }
    let (conn, mut ldap) =
        LdapConnAsync::with_settings(settings, &server.url).await.map_err(|e| unreachable(server, e))?;
    ldap3::drive!(conn);
    ldap.with_timeout(TIMEOUT);
    Ok(ldap)
}

/// A TLS client configuration that trusts the CAs in `pem` alone.
fn tls_config(pem: &str) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.map_err(|e| format!("the CA PEM: {e}"))?).map_err(|e| format!("the CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the CA PEM holds no certificate".into());
    }
    Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

/// A connection bound as the service account.
async fn bound(server: &DirectoryServer, password: &str) -> Result<Ldap, DirectoryError> {
    let mut ldap = connect(server).await?;
    let result = ldap.simple_bind(&server.bind_dn, password).await.map_err(|e| failed(server, e))?;
    result.success().map_err(|e| failed(server, e))?;
    Ok(ldap)
}

fn scope(server: &DirectoryServer) -> Scope {
    if server.scope == "one" { Scope::OneLevel } else { Scope::Subtree }
}

fn group_base(server: &DirectoryServer) -> &str {
    if server.group_base.is_empty() { &server.user_base } else { &server.group_base }
}

/// The user `username` names, with their groups; `None` when the directory holds no such
/// user (or more than one).
pub async fn find_user(
    server: &DirectoryServer,
    password: &str,
    username: &str,
) -> Result<Option<DirectoryUser>, DirectoryError> {
    let mut ldap = bound(server, password).await?;
    let filter = format!("(&{}({}={}))", server.user_filter, server.username_attr, ldap_escape(username));
    let found = ldap
        .search(&server.user_base, scope(server), &filter, vec!["memberOf", server.username_attr.as_str()])
        .await
        .map_err(|e| failed(server, e))?;
    let (entries, _) = found.success().map_err(|e| failed(server, e))?;
    let mut entries: Vec<SearchEntry> = entries.into_iter().map(SearchEntry::construct).collect();
    entries.retain(|e| !e.dn.is_empty());
    if entries.len() != 1 {
        return Ok(None);
    }
    let entry = entries.remove(0);
    let groups = match server.membership.as_str() {
        "memberOf" => attribute(&entry, "memberOf"),
        _ => groups_of(&mut ldap, server, &entry.dn).await?,
    };
    let _ = ldap.unbind().await;
    Ok(Some(DirectoryUser { dn: entry.dn, groups }))
}

/// Whether `password` is `dn`'s (a bind as them succeeds).
pub async fn bind_as(server: &DirectoryServer, dn: &str, password: &str) -> Result<bool, DirectoryError> {
    if password.is_empty() {
        // An empty password is an anonymous bind, which a server may accept for any DN.
        return Ok(false);
    }
    let mut ldap = connect(server).await?;
    let result = ldap.simple_bind(dn, password).await.map_err(|e| failed(server, e))?;
    let _ = ldap.unbind().await;
    match result.rc {
        0 => Ok(true),
        // invalidCredentials, and AD's variants of it.
        49 | 48 | 53 => Ok(false),
        rc => Err(refused(server, format!("{} ({rc})", result.text))),
    }
}

/// The groups `dn` is in, read from the groups (`member`, or the in-chain rule).
async fn groups_of(ldap: &mut Ldap, server: &DirectoryServer, dn: &str) -> Result<BTreeSet<String>, DirectoryError> {
    let rule = if server.membership == "nested" { format!("member:{IN_CHAIN}:") } else { "member".into() };
    let filter = format!("({rule}={})", ldap_escape(dn));
    let found =
        ldap.search(group_base(server), Scope::Subtree, &filter, vec!["1.1"]).await.map_err(|e| failed(server, e))?;
    let (entries, _) = found.success().map_err(|e| failed(server, e))?;
    Ok(entries.into_iter().map(|e| SearchEntry::construct(e).dn).filter(|dn| !dn.is_empty()).collect())
}

fn attribute(entry: &SearchEntry, name: &str) -> BTreeSet<String> {
    entry
        .attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, values)| values.iter().cloned())
        .collect()
}

/// Every user of `server` (by lowercased user name), with the groups among `groups` they are
/// in (directly with `memberOf`/`member`; through nesting with `nested`).
pub async fn all_users(
    server: &DirectoryServer,
    password: &str,
    groups: &BTreeSet<String>,
) -> Result<BTreeMap<String, DirectoryUser>, DirectoryError> {
    let mut ldap = bound(server, password).await?;
    let attrs = vec!["memberOf".to_owned(), server.username_attr.clone()];
    let entries = paged(&mut ldap, server, &server.user_base, scope(server), &server.user_filter, attrs).await?;
    let mut users = BTreeMap::new();
    let mut by_dn = BTreeMap::new();
    for entry in entries {
        let Some(name) = attribute(&entry, &server.username_attr).into_iter().next() else { continue };
        let name = name.to_lowercase();
        let member_of = if server.membership == "memberOf" {
            attribute(&entry, "memberOf").into_iter().filter(|g| groups.contains(g)).collect()
        } else {
            BTreeSet::new()
        };
        by_dn.insert(entry.dn.to_lowercase(), name.clone());
        users.insert(name, DirectoryUser { dn: entry.dn, groups: member_of });
    }
    if server.membership != "memberOf" {
        for group in groups {
            let members = members_of(&mut ldap, server, group).await?;
            for dn in members {
                if let Some(user) = by_dn.get(&dn.to_lowercase()).and_then(|name| users.get_mut(name)) {
                    user.groups.insert(group.clone());
                }
            }
        }
    }
    let _ = ldap.unbind().await;
    Ok(users)
}

/// The DNs of `group`'s members: its `member` values, or (nested) every user in it through
/// any chain of groups.
async fn members_of(ldap: &mut Ldap, server: &DirectoryServer, group: &str) -> Result<Vec<String>, DirectoryError> {
    if server.membership == "nested" {
        let filter = format!("(&{}(memberOf:{IN_CHAIN}:={}))", server.user_filter, ldap_escape(group));
        let entries = paged(ldap, server, &server.user_base, scope(server), &filter, vec!["1.1".to_owned()]).await?;
        return Ok(entries.into_iter().map(|e| e.dn).collect());
    }
    let found =
        ldap.search(group, Scope::Base, "(objectClass=*)", vec!["member"]).await.map_err(|e| failed(server, e))?;
    match found.success() {
        Ok((entries, _)) => {
            Ok(entries.into_iter().flat_map(|e| attribute(&SearchEntry::construct(e), "member")).collect())
        }
        // A mapped group the directory does not hold has no members.
        Err(LdapError::LdapResult { result }) if result.rc == 32 => Ok(Vec::new()),
        Err(e) => Err(failed(server, e)),
    }
}

/// A paged subtree search: every entry, however many.
async fn paged(
    ldap: &mut Ldap,
    server: &DirectoryServer,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: Vec<String>,
) -> Result<Vec<SearchEntry>, DirectoryError> {
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(PAGE))];
    let mut search =
        ldap.streaming_search_with(adapters, base, scope, filter, attrs).await.map_err(|e| failed(server, e))?;
    let mut out = Vec::new();
    while let Some(entry) = search.next().await.map_err(|e| failed(server, e))? {
        out.push(SearchEntry::construct(entry));
    }
    search.finish().await.success().map_err(|e| failed(server, e))?;
    Ok(out)
}
