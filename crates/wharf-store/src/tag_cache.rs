//! An in-memory copy of whole tag lists, so that listing a repository with many tags does not
//! walk the table each time. Only [`crate::Store::apply`] changes tags, and it invalidates the
//! repositories a command touched after the commit, so the cache cannot serve a list older
//! than the last acknowledged write.
//!
//! A reader notes the generation before it opens its read transaction and may only fill the
//! cache if no invalidation happened since: a list read from a snapshot taken before a commit
//! is never cached after that commit's invalidation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Most repositories whose tag lists are kept.
const MAX_REPOS: usize = 256;
/// Repositories with fewer tags are cheap to list from the table and are not cached.
pub(crate) const MIN_TAGS: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct TagCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    lists: HashMap<String, Arc<Vec<String>>>,
}

impl TagCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached list of `repo` and the current generation.
    pub(crate) fn get(&self, repo: &str) -> (Option<Arc<Vec<String>>>, u64) {
        let inner = self.lock();
        (inner.lists.get(repo).cloned(), inner.generation)
    }

    /// Caches `tags` for `repo` if nothing was invalidated since `generation`.
    pub(crate) fn fill(&self, repo: &str, generation: u64, tags: Arc<Vec<String>>) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.lists.len() >= MAX_REPOS
            && let Some(victim) = inner.lists.keys().next().cloned()
        {
            inner.lists.remove(&victim);
        }
        inner.lists.insert(repo.to_owned(), tags);
    }

    /// Drops every list; called after the whole state was replaced.
    pub(crate) fn invalidate_all(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.lists.clear();
    }

    /// Drops the list of `repo`; called after a commit that changed its tags.
    pub(crate) fn invalidate(&self, repo: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.lists.remove(repo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_racing_an_invalidation_is_refused() {
        let cache = TagCache::default();
        let (_, generation) = cache.get("r");
        cache.invalidate("r");
        cache.fill("r", generation, Arc::new(vec!["stale".into()]));
        assert!(cache.get("r").0.is_none());
        let (_, generation) = cache.get("r");
        cache.fill("r", generation, Arc::new(vec!["fresh".into()]));
        assert_eq!(cache.get("r").0.expect("cached").as_slice(), ["fresh".to_owned()]);
        cache.invalidate("r");
        assert!(cache.get("r").0.is_none());
    }
}
