//! Placement constraints (`node.labels.zone==eu`), parsed and matched as swarmkit's
//! `manager/constraint` does.
//!
//! Keys are case-insensitive, except the label name after `node.labels.` / `engine.labels.`,
//! which is case-sensitive because labels are stored as typed. Every value, label values
//! included, is compared case-insensitively (swarmkit's `strings.EqualFold`), so a service
//! moved from Docker Swarm keeps the placement it had there. Matching is exact: no globs.

use std::fmt;

use crate::model::{Node, same_architecture};

const NODE_LABEL_PREFIX: &str = "node.labels.";
const ENGINE_LABEL_PREFIX: &str = "engine.labels.";

/// Why an expression is not a constraint or a placement preference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("invalid constraint {expr:?}: expected one operator from ==, !=")]
    MissingOperator { expr: String },
    #[error("invalid constraint {expr:?}: unknown key {key}")]
    UnknownKey { expr: String, key: String },
    #[error("invalid constraint {expr:?}: invalid label name in key {key}")]
    InvalidLabel { expr: String, key: String },
    #[error("invalid constraint {expr:?}: invalid value {value:?}")]
    InvalidValue { expr: String, value: String },
    #[error("invalid placement preference {descriptor:?}: expected node.labels.<name> or engine.labels.<name>")]
    InvalidSpread { descriptor: String },
}

/// The node attribute a constraint looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConstraintKey {
    NodeId,
    Hostname,
    Role,
    PlatformOs,
    PlatformArch,
    NodeLabel(String),
    EngineLabel(String),
}

impl ConstraintKey {
    /// Parses a key; `None` when it is not one the scheduler knows.
    fn parse(key: &str) -> Option<ConstraintKey> {
        let fixed = [
            ("node.id", ConstraintKey::NodeId),
            ("node.hostname", ConstraintKey::Hostname),
            ("node.role", ConstraintKey::Role),
            ("node.platform.os", ConstraintKey::PlatformOs),
            ("node.platform.arch", ConstraintKey::PlatformArch),
        ];
        if let Some((_, found)) = fixed.into_iter().find(|(name, _)| name.eq_ignore_ascii_case(key)) {
            return Some(found);
        }
        if let Some(name) = strip_prefix_ignore_case(key, NODE_LABEL_PREFIX) {
            return Some(ConstraintKey::NodeLabel(name.to_owned()));
        }
        strip_prefix_ignore_case(key, ENGINE_LABEL_PREFIX).map(|name| ConstraintKey::EngineLabel(name.to_owned()))
    }

    /// The label name, for the two label keys.
    fn label(&self) -> Option<&str> {
        match self {
            ConstraintKey::NodeLabel(name) | ConstraintKey::EngineLabel(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for ConstraintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstraintKey::NodeId => f.write_str("node.id"),
            ConstraintKey::Hostname => f.write_str("node.hostname"),
            ConstraintKey::Role => f.write_str("node.role"),
            ConstraintKey::PlatformOs => f.write_str("node.platform.os"),
            ConstraintKey::PlatformArch => f.write_str("node.platform.arch"),
            ConstraintKey::NodeLabel(name) => write!(f, "{NODE_LABEL_PREFIX}{name}"),
            ConstraintKey::EngineLabel(name) => write!(f, "{ENGINE_LABEL_PREFIX}{name}"),
        }
    }
}

/// `==` or `!=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    Eq,
    NotEq,
}

impl Operator {
    /// In the order swarmkit tries them, which decides how `a==b!=c` splits.
    const ALL: [Operator; 2] = [Operator::Eq, Operator::NotEq];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "==",
            Operator::NotEq => "!=",
        }
    }
}

/// One parsed constraint: a node attribute, an operator and the value to compare with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Constraint {
    key: ConstraintKey,
    operator: Operator,
    value: String,
}

impl Constraint {
    /// Parses `KEY==VALUE` or `KEY!=VALUE`; spaces around the key and the value are ignored.
    pub fn parse(expr: &str) -> Result<Constraint, ConstraintError> {
        let error_expr = || expr.trim().to_owned();
        let Some((operator, key, value)) = split_operator(expr) else {
            return Err(ConstraintError::MissingOperator { expr: error_expr() });
        };
        let parsed = ConstraintKey::parse(key)
            .ok_or_else(|| ConstraintError::UnknownKey { expr: error_expr(), key: key.to_owned() })?;
        if parsed.label().is_some_and(|name| !valid_label_name(name)) {
            return Err(ConstraintError::InvalidLabel { expr: error_expr(), key: key.to_owned() });
        }
        if !valid_value(value) {
            return Err(ConstraintError::InvalidValue { expr: error_expr(), value: value.to_owned() });
        }
        Ok(Constraint { key: parsed, operator, value: value.to_owned() })
    }

    /// Parses every expression, failing on the first one that is not a constraint.
    pub fn parse_all(exprs: &[String]) -> Result<Vec<Constraint>, ConstraintError> {
        exprs.iter().map(|expr| Constraint::parse(expr)).collect()
    }

    pub fn key(&self) -> &ConstraintKey {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether `node` satisfies this constraint. An absent label compares as the empty string,
    /// so `==` fails on it and `!=` holds, as in swarmkit.
    pub fn matches(&self, node: &Node) -> bool {
        let equal = match &self.key {
            ConstraintKey::NodeId => self.value == node.id.to_string(),
            ConstraintKey::Hostname => self.value.eq_ignore_ascii_case(&node.hostname),
            ConstraintKey::Role => self.value.eq_ignore_ascii_case(node.role.as_str()),
            ConstraintKey::PlatformOs => self.value.eq_ignore_ascii_case(&node.platform.os),
            // The two spellings of an architecture are one, as in the platform filter, so
            // `node.platform.arch==x86_64` keeps working on nodes that report `amd64`.
            ConstraintKey::PlatformArch => same_architecture(&self.value, &node.platform.architecture),
            ConstraintKey::NodeLabel(name) => label_equals(node.labels.get(name), &self.value),
            ConstraintKey::EngineLabel(name) => label_equals(node.engine_labels.get(name), &self.value),
        };
        match self.operator {
            Operator::Eq => equal,
            Operator::NotEq => !equal,
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.operator.as_str(), self.value)
    }
}

/// Whether every constraint holds on `node`.
pub(crate) fn all_match(constraints: &[Constraint], node: &Node) -> bool {
    constraints.iter().all(|constraint| constraint.matches(node))
}

/// Splits on the first operator found, trying `==` before `!=` as swarmkit does.
fn split_operator(expr: &str) -> Option<(Operator, &str, &str)> {
    Operator::ALL.into_iter().find_map(|operator| {
        let (key, value) = expr.split_once(operator.as_str())?;
        Some((operator, key.trim(), value.trim()))
    })
}

fn label_equals(label: Option<&String>, value: &str) -> bool {
    label.is_some_and(|label| label.eq_ignore_ascii_case(value))
}

/// Strips `prefix` ignoring ASCII case, and only when something follows it.
pub(crate) fn strip_prefix_ignore_case<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    let head = key.get(..prefix.len())?;
    let rest = key.get(prefix.len()..)?;
    (head.eq_ignore_ascii_case(prefix) && !rest.is_empty()).then_some(rest)
}

/// Label names as swarmkit's key pattern allows them: letters, digits, `-`, `_` and `.`.
fn valid_label_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Values as swarmkit's value pattern allows them. It leaves out `=`, `!`, `<`, `>` and `~` so
/// that operators added later cannot be mistaken for part of a value.
fn valid_value(value: &str) -> bool {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || c.is_whitespace()
            || matches!(
                c,
                ':' | '-' | '_' | '.' | '*' | '(' | ')' | '?' | '+' | '[' | ']' | '\\' | '^' | '$' | '|' | '/'
            )
    };
    !value.is_empty() && value.chars().all(allowed)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::model::{Availability, Platform, Resources, Role};

    fn node() -> Node {
        Node {
            id: 42,
            hostname: "Edge-1".into(),
            role: Role::Worker,
            ready: true,
            availability: Availability::Active,
            labels: BTreeMap::from([("zone".to_owned(), "EU-West".to_owned())]),
            engine_labels: BTreeMap::from([("disk".to_owned(), "ssd".to_owned())]),
            platform: Platform { os: "linux".into(), architecture: "x86_64".into() },
            resources: Resources::default(),
            reserved: Resources::default(),
            host_ports: BTreeSet::new(),
            tasks_by_service: BTreeMap::new(),
            total_tasks: 0,
            collection: "/Shared".to_owned(),
        }
    }

    fn holds(expr: &str) -> bool {
        match Constraint::parse(expr) {
            Ok(constraint) => constraint.matches(&node()),
            Err(error) => panic!("{expr} should parse: {error}"),
        }
    }

    #[test]
    fn parses_every_key() {
        assert!(holds("node.id==42"));
        assert!(holds("node.id!=4"));
        assert!(holds("node.hostname==edge-1"));
        assert!(holds("NODE.Role == worker"));
        assert!(holds("node.role!=manager"));
        assert!(holds("node.platform.os==Linux"));
        assert!(holds("node.platform.arch==amd64"));
        assert!(holds("node.platform.arch==x86_64"));
        assert!(holds("node.labels.zone==eu-west"));
        assert!(holds("engine.labels.disk==SSD"));
    }

    #[test]
    fn absent_labels_fail_eq_and_hold_for_not_eq() {
        assert!(!holds("node.labels.rack==r1"));
        assert!(holds("node.labels.rack!=r1"));
        assert!(!holds("engine.labels.gpu==yes"));
        assert!(holds("engine.labels.gpu!=yes"));
    }

    #[test]
    fn label_names_are_case_sensitive() {
        assert!(!holds("node.labels.Zone==eu-west"));
        assert!(holds("Node.Labels.zone==eu-west"));
    }

    #[test]
    fn matching_is_exact_not_glob() {
        assert!(!holds("node.hostname==edge-*"));
        assert!(!holds("node.labels.zone==eu"));
    }

    #[test]
    fn display_gives_back_the_expression() {
        for expr in ["node.id==42", "node.labels.Zone!=eu west", "engine.labels.a.b==c", "node.platform.arch==arm64"] {
            let parsed = Constraint::parse(expr).expect("valid constraint");
            assert_eq!(parsed.to_string(), expr);
            assert_eq!(Constraint::parse(&parsed.to_string()), Ok(parsed));
        }
        let spaced = Constraint::parse("  NODE.ROLE  !=  manager ").expect("valid constraint");
        assert_eq!(spaced.to_string(), "node.role!=manager");
        assert_eq!(spaced.operator(), Operator::NotEq);
        assert_eq!(spaced.key(), &ConstraintKey::Role);
        assert_eq!(spaced.value(), "manager");
    }

    #[test]
    fn refuses_bad_expressions() {
        let message = |expr: &str| Constraint::parse(expr).expect_err("invalid constraint").to_string();
        assert_eq!(message("node.foo==x"), r#"invalid constraint "node.foo==x": unknown key node.foo"#);
        assert_eq!(
            message("node.role=manager"),
            r#"invalid constraint "node.role=manager": expected one operator from ==, !="#
        );
        assert_eq!(
            message("node.role>=manager"),
            r#"invalid constraint "node.role>=manager": expected one operator from ==, !="#
        );
        assert_eq!(message("node.role==="), r#"invalid constraint "node.role===": invalid value "=""#);
        assert_eq!(message("node.role=="), r#"invalid constraint "node.role==": invalid value """#);
        assert_eq!(message("node.labels.==x"), r#"invalid constraint "node.labels.==x": unknown key node.labels."#);
        assert_eq!(
            message("node.labels.a b==x"),
            r#"invalid constraint "node.labels.a b==x": invalid label name in key node.labels.a b"#
        );
        assert_eq!(message("node.ip==10.0.0.1"), r#"invalid constraint "node.ip==10.0.0.1": unknown key node.ip"#);
        assert_eq!(
            message("node.labels.é==x"),
            r#"invalid constraint "node.labels.é==x": invalid label name in key node.labels.é"#
        );
    }

    #[test]
    fn parse_all_stops_at_the_first_bad_one() {
        let good = vec!["node.role==worker".to_owned(), "node.labels.zone!=us".to_owned()];
        assert_eq!(Constraint::parse_all(&good).map(|all| all.len()), Ok(2));
        let bad = vec!["node.role==worker".to_owned(), "zone==us".to_owned()];
        assert!(matches!(Constraint::parse_all(&bad), Err(ConstraintError::UnknownKey { key, .. }) if key == "zone"));
        assert_eq!(Constraint::parse_all(&[]), Ok(Vec::new()));
    }

    #[test]
    fn equals_is_tried_before_not_equals() {
        // Swarmkit splits `a!=b==c` on `==`, which leaves `a!=b` as the (unknown) key.
        assert!(matches!(
            Constraint::parse("node.role!=x==y"),
            Err(ConstraintError::UnknownKey { key, .. }) if key == "node.role!=x"
        ));
    }
}
