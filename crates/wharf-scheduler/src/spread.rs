//! Spread placement preferences (swarmkit's topology-aware scheduling): tasks of a service are
//! spread evenly over the values of a node or engine label, such as availability zones.

use std::fmt;

use crate::constraint::{ConstraintError, strip_prefix_ignore_case};
use crate::model::Node;

const NODE_LABEL_PREFIX: &str = "node.labels.";
const ENGINE_LABEL_PREFIX: &str = "engine.labels.";

/// One spread preference. The Docker API sends it as `{"Spread":{"SpreadDescriptor":"..."}}`;
/// the descriptor names the label whose values the tasks are spread over.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Spread {
    pub descriptor: String,
}

impl Spread {
    /// Accepts `node.labels.<name>` and `engine.labels.<name>` (prefix case-insensitive).
    pub fn parse(descriptor: &str) -> Result<Spread, ConstraintError> {
        let descriptor = descriptor.trim();
        if strip_prefix_ignore_case(descriptor, NODE_LABEL_PREFIX).is_some()
            || strip_prefix_ignore_case(descriptor, ENGINE_LABEL_PREFIX).is_some()
        {
            Ok(Spread { descriptor: descriptor.to_owned() })
        } else {
            Err(ConstraintError::InvalidSpread { descriptor: descriptor.to_owned() })
        }
    }

    /// The value of the descriptor's label on `node`. A node without the label, like every
    /// node under a descriptor that names no label, gets the empty value: swarmkit groups such
    /// nodes together rather than refusing them, and so does Wharf.
    pub(crate) fn value_of<'n>(&self, node: &'n Node) -> &'n str {
        let label = if let Some(name) = strip_prefix_ignore_case(&self.descriptor, NODE_LABEL_PREFIX) {
            node.labels.get(name)
        } else if let Some(name) = strip_prefix_ignore_case(&self.descriptor, ENGINE_LABEL_PREFIX) {
            node.engine_labels.get(name)
        } else {
            None
        };
        label.map_or("", String::as_str)
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.descriptor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::model::{Availability, Platform, Resources, Role};

    fn node(labels: &[(&str, &str)], engine_labels: &[(&str, &str)]) -> Node {
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Node {
            id: 1,
            hostname: "n1".into(),
            role: Role::Worker,
            ready: true,
            availability: Availability::Active,
            labels: map(labels),
            engine_labels: map(engine_labels),
            platform: Platform { os: "linux".into(), architecture: "amd64".into() },
            resources: Resources::default(),
            reserved: Resources::default(),
            host_ports: BTreeSet::new(),
            tasks_by_service: BTreeMap::new(),
            total_tasks: 0,
            collection: "/Shared".to_owned(),
        }
    }

    #[test]
    fn parses_label_descriptors() {
        assert_eq!(Spread::parse(" node.labels.zone "), Ok(Spread { descriptor: "node.labels.zone".into() }));
        assert!(Spread::parse("Engine.Labels.rack").is_ok());
        for bad in ["node.labels.", "node.hostname", "zone", ""] {
            assert_eq!(
                Spread::parse(bad).map_err(|error| error.to_string()),
                Err(format!(
                    "invalid placement preference {bad:?}: expected node.labels.<name> or engine.labels.<name>"
                ))
            );
        }
    }

    #[test]
    fn reads_the_label_value() {
        let labelled = node(&[("zone", "a")], &[("rack", "r7")]);
        let zone = Spread::parse("node.labels.zone").expect("valid descriptor");
        let rack = Spread::parse("engine.labels.rack").expect("valid descriptor");
        assert_eq!(zone.value_of(&labelled), "a");
        assert_eq!(rack.value_of(&labelled), "r7");
        assert_eq!(zone.to_string(), "node.labels.zone");
    }

    #[test]
    fn missing_labels_and_unknown_descriptors_give_the_empty_value() {
        let bare = node(&[], &[]);
        let zone = Spread::parse("node.labels.zone").expect("valid descriptor");
        assert_eq!(zone.value_of(&bare), "");
        let unknown = Spread { descriptor: "node.hostname".into() };
        assert_eq!(unknown.value_of(&node(&[("zone", "a")], &[])), "");
    }
}
