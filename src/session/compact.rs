//! Small maps and sets for a session's subscription state, kept as vectors.
//!
//! A session has a few subscriptions, each with a stream or two and a state
//! of a key or two, and holds them for its whole life: a `HashMap` or
//! `HashSet` allocates four buckets for its first entry (a session's map of
//! one subscription was 660 bytes, its istate 210, its streams 115), a
//! vector of pairs exactly what it holds. Lookups are linear, over a
//! number of entries bounded by `max_subscriptions` and
//! `max_session_state_size`.

use crate::controller::StateMap;
use std::borrow::Borrow;

/// A map as a vector of pairs, in insertion order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Eq, V> VecMap<K, V> {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    fn position<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.0.iter().position(|(k, _)| k.borrow() == key)
    }

    pub(super) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.get_key_value(key).map(|(_, v)| v)
    }

    pub(super) fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.position(key).map(|n| (&self.0[n].0, &self.0[n].1))
    }

    pub(super) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.position(key).map(|n| &mut self.0[n].1)
    }

    pub(super) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.position(key).is_some()
    }

    /// Grows one entry at a time at first (capacity 1, 2, 4, …), where a
    /// vector's first push takes room for four.
    fn push(&mut self, key: K, value: V) {
        if self.0.len() == self.0.capacity() {
            self.0.reserve_exact(self.0.len().max(1));
        }
        self.0.push((key, value));
    }

    /// The previous value, if the key was there.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(&key) {
            Some(n) => Some(std::mem::replace(&mut self.0[n].1, value)),
            None => {
                self.push(key, value);
                None
            }
        }
    }

    /// The value under `key`, inserted (the default) if it was not there.
    pub(super) fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        let n = match self.position(&key) {
            Some(n) => n,
            None => {
                self.push(key, V::default());
                self.0.len() - 1
            }
        };
        &mut self.0[n].1
    }

    pub(super) fn remove_entry<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let n = self.position(key)?;
        let entry = self.0.remove(n);
        // Room left by departures goes back.
        if self.0.len() * 4 <= self.0.capacity() {
            self.0.shrink_to_fit();
        }
        Some(entry)
    }

    pub(super) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Every entry out, the map left empty (and holding nothing).
    pub(super) fn take(&mut self) -> impl Iterator<Item = (K, V)> + use<K, V> {
        std::mem::take(&mut self.0).into_iter()
    }
}

impl VecMap<String, String> {
    /// Applies a reply's changes as [`crate::controller::merge_state`]
    /// does: an empty value deletes its key.
    pub(super) fn merge(&mut self, changes: StateMap) {
        for (k, v) in changes {
            if v.is_empty() {
                self.remove(k.as_str());
            } else {
                self.insert(k, v);
            }
        }
    }

    pub(super) fn to_state_map(&self) -> StateMap {
        self.0.iter().cloned().collect()
    }

    /// Its key-value bytes (`max_session_state_size`).
    pub(super) fn size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl From<StateMap> for VecMap<String, String> {
    fn from(map: StateMap) -> Self {
        let mut pairs: Vec<(String, String)> = map.into_iter().collect();
        pairs.shrink_to_fit();
        VecMap(pairs)
    }
}

/// Serialized as a JSON object, as a `StateMap` is.
impl serde::Serialize for VecMap<String, String> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'a> IntoIterator for &'a VecSet {
    type Item = &'a String;
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (String, ())>, fn(&'a (String, ())) -> &'a String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.0.iter().map(|(k, ())| k)
    }
}

/// A set of strings as a vector, in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct VecSet(VecMap<String, ()>);

impl VecSet {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    pub(super) fn contains(&self, item: &str) -> bool {
        self.0.contains_key(item)
    }

    /// Whether it was not there.
    pub(super) fn insert(&mut self, item: String) -> bool {
        self.0.insert(item, ()).is_none()
    }

    /// Whether it was there.
    pub(super) fn remove(&mut self, item: &str) -> bool {
        self.0.remove(item).is_some()
    }

    /// Every item out, the set left empty (and holding nothing).
    pub(super) fn take(&mut self) -> impl Iterator<Item = String> + use<> {
        self.0.take().map(|(k, ())| k)
    }
}

impl FromIterator<String> for VecSet {
    fn from_iter<I: IntoIterator<Item = String>>(items: I) -> Self {
        let mut set = VecSet::default();
        for item in items {
            set.insert(item);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_behaves_as_a_map_and_holds_what_it_has() {
        let mut map: VecMap<String, u32> = VecMap::new();
        assert_eq!(map.0.capacity(), 0, "nothing allocated empty");
        assert_eq!(map.insert("a".into(), 1), None);
        assert_eq!(map.0.capacity(), 1, "room for one entry, not four");
        assert_eq!(map.insert("b".into(), 2), None);
        assert_eq!(map.insert("a".into(), 3), Some(1));
        assert_eq!(map.len(), 2);
        assert_eq!(map.get("a"), Some(&3));
        assert!(map.contains_key("b") && !map.contains_key("c"));
        *map.get_or_default("c".into()) += 5;
        *map.get_or_default("c".into()) += 1;
        assert_eq!(map.get("c"), Some(&6));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(map.remove_entry("b"), Some(("b".to_owned(), 2)));
        assert_eq!(map.remove("b"), None);
        if let Some(v) = map.get_mut("a") {
            *v = 7;
        }
        assert_eq!(map.get_key_value("a"), Some((&"a".to_owned(), &7)));
        assert_eq!(
            map.take().collect::<Vec<_>>(),
            [("a".to_owned(), 7), ("c".to_owned(), 6)]
        );
        assert!(map.is_empty());
        assert_eq!(map.0.capacity(), 0, "taken: nothing kept");
        for n in 0..100 {
            map.insert(n.to_string(), n);
        }
        for n in 0..99 {
            map.remove(n.to_string().as_str());
        }
        assert!(
            map.0.capacity() < 8,
            "room given back: {}",
            map.0.capacity()
        );
    }

    #[test]
    fn a_state_merges_and_serializes_as_a_state_map() {
        let mut state: VecMap<String, String> =
            StateMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]).into();
        state.merge([("a".into(), "".into()), ("c".into(), "3".into())].into());
        let expected = StateMap::from([("b".into(), "2".into()), ("c".into(), "3".into())]);
        assert_eq!(state.to_state_map(), expected);
        assert_eq!(state.size(), 4);
        let json = serde_json::to_string(&state).unwrap();
        let back: StateMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, expected);
        assert_eq!(
            serde_json::to_string(&VecMap::<String, String>::new()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn a_set_keeps_one_of_each() {
        let mut set: VecSet = ["x".to_owned(), "y".to_owned(), "x".to_owned()]
            .into_iter()
            .collect();
        assert_eq!(set.iter().collect::<Vec<_>>(), ["x", "y"]);
        assert!(!set.insert("y".into()));
        assert!(set.insert("z".into()));
        assert!(set.contains("z") && !set.contains("w"));
        assert!(set.remove("x") && !set.remove("x"));
        assert_eq!(set.take().collect::<Vec<_>>(), ["y", "z"]);
        assert!(set.is_empty());
    }
}
