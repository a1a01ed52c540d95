//! Who may do what through the Docker-compatible calls: every call asks the one evaluation
//! (`wharf_auth::rbac`) about the collection of the object it touches. An object belongs to
//! the collection its `wharf.collection` label names; one created without the label goes to
//! its creator's private collection (an administrator's to `/`), and the label says so from
//! then on. A node belongs to its label's collection, or to `/System` (managers) or `/Shared`
//! (workers).

use std::collections::BTreeMap;
use std::sync::Arc;

use wharf_api::identity::{COLLECTION_LABEL, ROOT, SHARED, SYSTEM, private_collection, valid_collection};
use wharf_auth::AccessView;
use wharf_auth::rbac::{Effective, Identity, Permission};

use crate::services::Caller;
use crate::{ClusterError, Manager};

/// A caller's access, evaluated against the model of one moment.
pub(crate) struct Access {
    view: Arc<AccessView>,
    who: Identity,
    /// The caller's grants, gathered once for every decision of the call.
    effective: Effective,
}

impl Manager {
    /// The caller's access as of now.
    pub(crate) fn access(&self, caller: &Caller) -> Result<Access, ClusterError> {
        let view = self.access.view()?;
        let who = view.identity(&caller.name, caller.admin);
        let effective = view.model.effective(&who);
        Ok(Access { who, view, effective })
    }
}

impl Access {
    pub(crate) fn allows(&self, permission: Permission, collection: &str) -> bool {
        self.view.model.allows_effective(&self.effective, permission, collection)
    }

    /// `Ok` when allowed, else the refusal that names what is missing where.
    pub(crate) fn require(&self, permission: Permission, collection: &str) -> Result<(), ClusterError> {
        if self.allows(permission, collection) {
            return Ok(());
        }
        Err(ClusterError::Forbidden(format!(
            "access denied: {} may not {} in collection {collection}",
            self.who.user,
            permission.as_str()
        )))
    }

    /// An object found by name for an operation: hidden (not found) unless the caller may see
    /// it, refused unless they may take `permission` on it.
    pub(crate) fn reach(
        &self,
        view: Permission,
        permission: Permission,
        collection: &str,
        not_found: impl FnOnce() -> ClusterError,
    ) -> Result<(), ClusterError> {
        if !self.allows(view, collection) {
            return Err(match not_found() {
                ClusterError::NotFound(why) => ClusterError::Hidden(why),
                other => other,
            });
        }
        self.require(permission, collection)
    }

    /// Puts a new object in a collection: the one its labels name (which must exist) or the
    /// caller's default, written into the labels; `permission` is required there.
    pub(crate) fn place(
        &self,
        manager: &Manager,
        labels: &mut BTreeMap<String, String>,
        permission: Permission,
    ) -> Result<String, ClusterError> {
        let collection = match labels.get(COLLECTION_LABEL) {
            Some(named) => {
                self.check_exists(manager, named)?;
                named.clone()
            }
            None => default_collection(&self.who),
        };
        self.require(permission, &collection)?;
        labels.insert(COLLECTION_LABEL.to_owned(), collection.clone());
        Ok(collection)
    }

    /// The collection of a changed object whose labels were `old` and are now `new`: the label
    /// is kept when the change leaves it out; a move needs `permission` in the new collection
    /// too.
    pub(crate) fn keep_or_move(
        &self,
        manager: &Manager,
        old: &str,
        new: &mut BTreeMap<String, String>,
        permission: Permission,
    ) -> Result<(), ClusterError> {
        match new.get(COLLECTION_LABEL) {
            None => {
                new.insert(COLLECTION_LABEL.to_owned(), old.to_owned());
            }
            Some(named) if named != old => {
                self.check_exists(manager, named)?;
                self.require(permission, named)?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    pub(crate) fn check_exists(&self, manager: &Manager, path: &str) -> Result<(), ClusterError> {
        let is_user = |user: &str| manager.store.user(user).ok().flatten().is_some();
        if !valid_collection(path) || !self.view.collection_exists(path, is_user) {
            return Err(ClusterError::Invalid(format!("collection {path} does not exist")));
        }
        Ok(())
    }
}

#[cfg(test)]
impl Access {
    /// The access of `user` with no grant but the ones every user holds.
    pub(crate) fn for_test(user: &str, admin: bool) -> Access {
        let view = Arc::new(AccessView::new(Default::default()));
        let who = view.identity(user, admin);
        let effective = view.model.effective(&who);
        Access { who, view, effective }
    }
}

/// Where a caller's new objects go unless labelled: an administrator's to the root, anyone
/// else's to their private collection.
fn default_collection(who: &Identity) -> String {
    if who.admin { ROOT.to_owned() } else { private_collection(&who.user) }
}

/// The collection of an object with `labels`, created by `owner` (objects made before
/// collections carry no label: they are their creator's).
pub(crate) fn collection_of(labels: &BTreeMap<String, String>, owner: &str) -> String {
    labels.get(COLLECTION_LABEL).cloned().unwrap_or_else(|| private_collection(owner))
}

/// The collection of a node: its label's, or `/System` for a manager and `/Shared` for a
/// worker.
pub(crate) fn node_collection(labels: &BTreeMap<String, String>, role: &str) -> String {
    labels.get(COLLECTION_LABEL).cloned().unwrap_or_else(|| if role == "manager" { SYSTEM } else { SHARED }.to_owned())
}
