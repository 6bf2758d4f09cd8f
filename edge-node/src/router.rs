//! Pure host and path lookup: which target serves a request.
//!
//! Routes for the request's host are tried first, longest path prefix winning; only when none of
//! them matches are the host-less routes tried, again longest prefix first. Prefixes match on
//! segment boundaries: `/api` matches `/api` and `/api/users` but not `/apis`.

use std::collections::HashMap;

/// A routing table from (host, path prefix) to `T`. Immutable once built: a new table replaces
/// the old one as a whole.
#[derive(Debug, Clone)]
pub struct Router<T> {
    by_host: HashMap<String, Vec<(String, T)>>,
    any_host: Vec<(String, T)>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            by_host: HashMap::new(),
            any_host: Vec::new(),
        }
    }
}

impl<T> Router<T> {
    /// A table from `(host, prefix, target)` entries; `host: None` matches any host.
    pub fn new(entries: impl IntoIterator<Item = (Option<String>, String, T)>) -> Self {
        let mut router = Self::default();
        for (host, prefix, target) in entries {
            let list = match host {
                Some(host) => router.by_host.entry(host.to_ascii_lowercase()).or_default(),
                None => &mut router.any_host,
            };
            list.push((prefix, target));
        }
        // Longest first, so the first match is the best one.
        let by_length = |a: &(String, T), b: &(String, T)| b.0.len().cmp(&a.0.len());
        for list in router.by_host.values_mut() {
            list.sort_by(by_length);
        }
        router.any_host.sort_by(by_length);
        router
    }

    /// The target for `host` (with or without `:port`, any case) and `path`.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&T> {
        let host = host_without_port(host);
        let specific = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_host.get(&host.to_ascii_lowercase())
        } else {
            self.by_host.get(host)
        };
        specific
            .and_then(|list| best(list, path))
            .or_else(|| best(&self.any_host, path))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.any_host.len() + self.by_host.values().map(Vec::len).sum::<usize>()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn best<'a, T>(list: &'a [(String, T)], path: &str) -> Option<&'a T> {
    list.iter()
        .find(|(prefix, _)| prefix_matches(prefix, path))
        .map(|(_, target)| target)
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with(['/', '?']),
    }
}

/// `host` less any `:port`; IPv6 literals keep their brackets.
pub(crate) fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::new([
            (None, "/".to_owned(), "fallback"),
            (None, "/api".to_owned(), "api"),
            (None, "/api/v2".to_owned(), "api-v2"),
            (Some("Shop.example".to_owned()), "/".to_owned(), "shop"),
            (Some("shop.example".to_owned()), "/cart".to_owned(), "cart"),
            (Some("[::1]".to_owned()), "/".to_owned(), "v6"),
        ])
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router();
        assert_eq!(r.lookup("any.example", "/"), Some(&"fallback"));
        assert_eq!(r.lookup("any.example", "/api"), Some(&"api"));
        assert_eq!(r.lookup("any.example", "/api/users"), Some(&"api"));
        assert_eq!(r.lookup("any.example", "/api/v2/users"), Some(&"api-v2"));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let r = router();
        assert_eq!(r.lookup("x", "/apis"), Some(&"fallback"));
        assert_eq!(r.lookup("x", "/api?q=1"), Some(&"api"));
    }

    #[test]
    fn host_routes_come_before_host_less_ones() {
        let r = router();
        assert_eq!(r.lookup("shop.example", "/api"), Some(&"shop"));
        assert_eq!(r.lookup("SHOP.example:8443", "/cart/1"), Some(&"cart"));
        assert_eq!(r.lookup("[::1]:8080", "/x"), Some(&"v6"));
    }

    #[test]
    fn host_less_routes_catch_what_a_host_does_not() {
        let r = Router::new([
            (Some("a.example".to_owned()), "/only".to_owned(), "a"),
            (None, "/".to_owned(), "any"),
        ]);
        assert_eq!(r.lookup("a.example", "/only/x"), Some(&"a"));
        assert_eq!(r.lookup("a.example", "/other"), Some(&"any"));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn no_match_is_none() {
        let r = Router::new([(Some("a.example".to_owned()), "/x".to_owned(), 1)]);
        assert_eq!(r.lookup("a.example", "/y"), None);
        assert_eq!(r.lookup("b.example", "/x"), None);
        assert!(Router::<u8>::default().is_empty());
    }
}
