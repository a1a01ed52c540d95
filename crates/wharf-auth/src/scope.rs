//! Registry scopes (`type[(class)]:name:action[,action]`) and the access entries tokens carry.

use serde::{Deserialize, Serialize};

/// Access to one resource: what a client asks for in a scope, and what a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {0:?}: expected type:name:action[,action]")]
pub struct ScopeError(pub String);

impl Access {
    pub fn new(kind: &str, name: &str, actions: &[&str]) -> Access {
        Access {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// Parses one scope. The type may carry a class (`repository(plugin)`), which is dropped;
    /// the name is everything between the first and the last colon.
    pub fn parse(scope: &str) -> Result<Access, ScopeError> {
        let bad = || ScopeError(scope.chars().take(200).collect());
        let (kind, rest) = scope.split_once(':').ok_or_else(bad)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
        let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
        if kind.is_empty() || name.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        let actions: Vec<String> = actions.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect();
        if actions.iter().any(|a| !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*')) {
            return Err(bad());
        }
        Ok(Access { kind: kind.to_owned(), name: name.to_owned(), actions })
    }

    /// Parses every scope in `scopes`, each of which may hold several space-separated scopes
    /// (the OAuth2 form joins them with spaces; the GET form repeats the parameter).
    pub fn parse_all<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Result<Vec<Access>, ScopeError> {
        scopes.into_iter().flat_map(str::split_whitespace).map(Access::parse).collect()
    }

    /// The scope string of this entry.
    pub fn to_scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }

    fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action || a == "*")
    }
}

/// Whether `granted` allows `action` on resource `kind:name`.
pub fn permits(granted: &[Access], kind: &str, name: &str, action: &str) -> bool {
    granted.iter().any(|a| a.kind == kind && a.name == name && a.allows(action))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_grammar() {
        assert_eq!(
            Access::parse("repository:a/b:pull,push").expect("ok"),
            Access::new("repository", "a/b", &["pull", "push"])
        );
        assert_eq!(Access::parse("registry:catalog:*").expect("ok"), Access::new("registry", "catalog", &["*"]));
        assert_eq!(Access::parse("repository(plugin):p:pull").expect("ok"), Access::new("repository", "p", &["pull"]));
        assert_eq!(
            Access::parse("repository:host:5000/a:pull").expect("ok"),
            Access::new("repository", "host:5000/a", &["pull"])
        );
        for bad in ["", "repository", "repository:a", ":a:pull", "repository::pull", "repo sitory:a:pull", "r:a:pu\"ll"]
        {
            assert!(Access::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_space_separated_lists() {
        let all = Access::parse_all(["repository:a:pull repository:b:push", "registry:catalog:*"]).expect("ok");
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].to_scope(), "repository:b:push");
    }

    #[test]
    fn star_allows_every_action() {
        let granted = vec![Access::new("repository", "a", &["*"]), Access::new("repository", "b", &["pull"])];
        assert!(permits(&granted, "repository", "a", "delete"));
        assert!(permits(&granted, "repository", "b", "pull"));
        assert!(!permits(&granted, "repository", "b", "push"));
        assert!(!permits(&granted, "repository", "c", "pull"));
        assert!(!permits(&granted, "registry", "a", "pull"));
    }
}
