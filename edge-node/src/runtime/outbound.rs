//! Outbound HTTP: which origins a function may reach. Denied unless a pattern of the function
//! names the destination.
//!
//! A pattern is `scheme://host[:port]`: `https://api.example.com` (port 443),
//! `http://127.0.0.1:8080`, or `https://*.example.com` (any subdomain, not the domain itself).
//! A destination matches when scheme, host (case-insensitive) and port all do.

use std::sync::Arc;

use http::uri::Scheme;

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    https: bool,
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Exact(String),
    /// `*.example.com`: the suffix `.example.com`.
    Subdomains(String),
}

/// A pattern that is not `scheme://host[:port]`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "outbound pattern {pattern:?}: {why}; write scheme://host[:port], like https://api.example.com or http://127.0.0.1:8080"
)]
pub struct PatternError {
    pattern: String,
    why: &'static str,
}

impl Destination {
    /// Parses `pattern`.
    ///
    /// # Errors
    /// Not `http://` or `https://`, no host, a path, or a bad port.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let error = |why| PatternError {
            pattern: pattern.to_owned(),
            why,
        };
        let (https, rest) = if let Some(rest) = pattern.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = pattern.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(error("the scheme must be http or https"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(error("only an origin: no path, query or user"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                let port = port
                    .parse()
                    .map_err(|_| error("the port is not a number"))?;
                (host, port)
            }
            _ => (rest, if https { 443 } else { 80 }),
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty() || host == "*" {
            return Err(error(
                "name a host (a * may only start a domain, as *.example.com)",
            ));
        }
        let host = match host.strip_prefix("*.") {
            Some(domain) if !domain.contains('*') => Host::Subdomains(format!(".{domain}")),
            _ if host.contains('*') => {
                return Err(error("a * may only start a domain, as *.example.com"));
            }
            _ => Host::Exact(host),
        };
        Ok(Self { https, host, port })
    }

    fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        self.https == https
            && self.port == port
            && match &self.host {
                Host::Exact(exact) => exact.eq_ignore_ascii_case(host),
                Host::Subdomains(suffix) => {
                    host.len() > suffix.len()
                        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                }
            }
    }
}

/// The destinations one function may reach.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Arc<[Destination]>,
}

impl Policy {
    /// A policy allowing exactly `allowed`.
    pub fn new(allowed: Vec<Destination>) -> Self {
        Self {
            allowed: allowed.into(),
        }
    }

    /// Whether `uri` (absolute) may be reached.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return false,
        };
        let Some(host) = uri.host() else { return false };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        self.allowed.iter().any(|d| d.allows(https, host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> Policy {
        Policy::new(
            patterns
                .iter()
                .map(|p| Destination::parse(p).unwrap())
                .collect(),
        )
    }

    #[test]
    fn patterns_name_scheme_host_and_port() {
        let p = policy(&[
            "https://api.example.com",
            "http://127.0.0.1:8080",
            "https://*.cdn.test",
        ]);
        let allows = |uri: &str| p.allows(&uri.parse().unwrap());
        assert!(allows("https://api.example.com/v1?x=1"));
        assert!(allows("https://API.example.com:443/"));
        assert!(!allows("http://api.example.com/"));
        assert!(!allows("https://api.example.com:8443/"));
        assert!(allows("http://127.0.0.1:8080/a"));
        assert!(!allows("http://127.0.0.1:8081/a"));
        assert!(!allows("http://localhost:8080/a"));
        assert!(allows("https://img.cdn.test/x"));
        assert!(!allows("https://cdn.test/x"));
        assert!(!allows("https://evilcdn.test/x"));
        assert!(!Policy::default().allows(&"https://api.example.com/".parse().unwrap()));
    }

    #[test]
    fn bad_patterns_say_how_to_write_one() {
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://*",
            "https://a.*.b",
            "http://x:port",
        ] {
            let message = Destination::parse(bad).unwrap_err().to_string();
            assert!(message.contains("scheme://host[:port]"), "{bad}: {message}");
        }
    }
}
