//! Checks on names, digests and routes before they reach the database.

use edge_wire::Route;

use super::{Error, Result};

/// Longest token or node name.
const MAX_LABEL: usize = 200;

/// Checks a function name against `[a-z0-9][a-z0-9-]{0,62}`.
///
/// # Errors
/// [`Error::Invalid`] stating the rule.
pub fn function_name(name: &str) -> Result<()> {
    if edge_wire::is_function_name(name) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "function name {name:?} is not allowed: use 1 to {} characters a-z, 0-9 and -, starting with a letter or digit",
            edge_wire::MAX_FUNCTION_NAME
        )))
    }
}

/// Whether `digest` is a sha256 in lowercase hex.
pub fn is_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks that `digest` is a sha256 in lowercase hex.
///
/// # Errors
/// [`Error::Invalid`] saying where a digest comes from.
pub fn digest(digest: &str) -> Result<()> {
    if is_digest(digest) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "digest {digest:?} is not a sha256 in lowercase hex (64 characters 0-9, a-f); upload the component with PUT /v1/components and use the digest it answers"
        )))
    }
}

/// Checks a secret's name and value.
///
/// # Errors
/// [`Error::Invalid`] stating the rule.
pub fn secret(name: &str, value: &[u8]) -> Result<()> {
    if !edge_wire::is_secret_name(name) {
        return Err(Error::Invalid(format!(
            "secret name {name:?} is not allowed: use 1 to {} characters A-Z, a-z, 0-9 and _, not starting with a digit (the guest reads it as an environment variable)",
            edge_wire::MAX_SECRET_NAME
        )));
    }
    if value.len() > edge_wire::MAX_SECRET_BYTES {
        return Err(Error::Invalid(format!(
            "the value of secret {name} is {} bytes; secrets are at most {} bytes",
            value.len(),
            edge_wire::MAX_SECRET_BYTES
        )));
    }
    if std::str::from_utf8(value).is_err() {
        return Err(Error::Invalid(format!(
            "the value of secret {name} is not UTF-8 text; encode binary secrets (base64, hex) first"
        )));
    }
    Ok(())
}

/// Checks an outbound pattern (`scheme://host[:port]`).
///
/// # Errors
/// [`Error::Invalid`] saying how to write one.
pub fn outbound(pattern: &str) -> Result<()> {
    edge_wire::outbound::Destination::parse(pattern)
        .map(drop)
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// Checks a route and returns it normalised as [`Route::parse`] would write it (lowercase
/// host, no trailing slash). With `function` set, the route must name that function or none.
///
/// # Errors
/// [`Error::Invalid`] naming the bad part.
pub fn route(route: &Route, function: Option<&str>) -> Result<Route> {
    let name = match function {
        Some(f) if route.function.is_empty() || route.function == f => f,
        Some(f) => {
            return Err(Error::Invalid(format!(
                "route {route} names function `{}`, but this call deploys `{f}`; leave the route's function empty or set it to `{f}`",
                route.function
            )));
        }
        None => &route.function,
    };
    function_name(name)?;
    let (host, path) = route_key(route)?;
    Ok(Route {
        host,
        path,
        function: name.to_owned(),
        cache: route.cache,
    })
}

/// Checks a route's host and path, which identify it, and returns them normalised.
///
/// # Errors
/// [`Error::Invalid`] naming the bad part.
pub fn route_key(route: &Route) -> Result<(Option<String>, String)> {
    if !route.path.starts_with('/') {
        return Err(Error::Invalid(format!(
            "route {route}: path {:?} must start with /",
            route.path
        )));
    }
    let spec = match &route.host {
        Some(host) if host.is_empty() || host.contains(['/', '*']) => {
            return Err(Error::Invalid(format!(
                "route {route}: host {host:?} is not a host name; leave it out to match any host"
            )));
        }
        Some(host) => format!("{host}{}", route.path),
        None => route.path.clone(),
    };
    let parsed = Route::parse(&spec, "").map_err(Error::Invalid)?;
    Ok((parsed.host, parsed.path))
}

/// Checks a token's or node's name: at most 200 characters, no control characters.
///
/// # Errors
/// [`Error::Invalid`] naming `what`.
pub fn label(what: &str, name: &str) -> Result<()> {
    if name.chars().count() > MAX_LABEL || name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{what} name {name:?} is not allowed: use at most {MAX_LABEL} characters and no control characters"
        )));
    }
    Ok(())
}
