//! Outbound HTTP patterns: which origins a function may reach. The control plane and the CLI
//! check them when a version is deployed, the node matches requests against them.
//!
//! A pattern is `scheme://host[:port]`: `https://api.example.com` (port 443),
//! `http://127.0.0.1:8080`, or `https://*.example.com` (any subdomain, not the domain itself).
//! A destination matches when scheme, host (case-insensitive) and port all do. An IP address
//! is matched only by a pattern that names it: a `*` never matches one.

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
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (address, after) = v6
                .split_once(']')
                .ok_or_else(|| error("an IPv6 address needs its closing ]"))?;
            let port = match after {
                "" => default_port,
                after => after
                    .strip_prefix(':')
                    .and_then(|port| port.parse().ok())
                    .ok_or_else(|| error("the port is not a number"))?,
            };
            (address, port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse()
                        .map_err(|_| error("the port is not a number"))?,
                ),
                None => (rest, default_port),
            }
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

    /// Whether a request to `host` (without brackets for IPv6) on `port` is allowed; `https`
    /// says which scheme it uses.
    pub fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        self.https == https
            && self.port == port
            && match &self.host {
                Host::Exact(exact) => exact.eq_ignore_ascii_case(host),
                Host::Subdomains(suffix) => {
                    host.parse::<std::net::IpAddr>().is_err()
                        && host.len() > suffix.len()
                        && host.is_char_boundary(host.len() - suffix.len())
                        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                }
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether any of `patterns` allows `url` (`scheme://host:port`, no path).
    fn allowed(patterns: &[&str], url: &str) -> bool {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (host, port) = rest.rsplit_once(':').unwrap();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        patterns.iter().any(|p| {
            Destination::parse(p)
                .unwrap()
                .allows(scheme == "https", host, port.parse().unwrap())
        })
    }

    #[test]
    fn patterns_name_scheme_host_and_port() {
        let patterns = [
            "https://api.example.com",
            "http://127.0.0.1:8080",
            "https://*.cdn.test",
            "http://[::1]:9000",
            "https://[fd00::1]",
        ];
        let allows = |url: &str| allowed(&patterns, url);
        assert!(allows("https://api.example.com:443"));
        assert!(allows("https://API.example.com:443"));
        assert!(!allows("http://api.example.com:80"));
        assert!(!allows("https://api.example.com:8443"));
        assert!(allows("http://127.0.0.1:8080"));
        assert!(!allows("http://127.0.0.1:8081"));
        assert!(!allows("http://localhost:8080"));
        assert!(allows("https://img.cdn.test:443"));
        assert!(!allows("https://cdn.test:443"));
        assert!(!allows("https://evilcdn.test:443"));
        assert!(allows("http://[::1]:9000"));
        assert!(allows("https://[fd00::1]:443"));
        assert!(!allows("https://[fd00::2]:443"));
        assert!(!allowed(&[], "https://api.example.com:443"));
    }

    #[test]
    fn a_wildcard_never_matches_an_address() {
        assert!(!allowed(&["http://*.0.0.1:80"], "http://127.0.0.1:80"));
        assert!(!allowed(&["http://*.1:80"], "http://[::1]:80"));
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
            "http://[::1",
            "http://[::1]x",
        ] {
            let message = Destination::parse(bad).unwrap_err().to_string();
            assert!(message.contains("scheme://host[:port]"), "{bad}: {message}");
        }
    }
}
