//! API tokens: `edge_` and 64 hex digits (256 bits from the OS's random source). The control
//! plane keeps only their sha256, so a copy of the database grants nothing.

use sha2::{Digest as _, Sha256};

/// What every token starts with, so a leaked one is easy to recognise (and to scan for).
pub const PREFIX: &str = "edge_";

/// Bytes of randomness in a token.
const SECRET_BYTES: usize = 32;

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the OS's random source to make a token: {0}")]
pub struct RandomError(getrandom::Error);

/// A new random token.
///
/// # Errors
/// When the OS's random source fails.
pub fn generate() -> Result<String, RandomError> {
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(RandomError)?;
    Ok(format!("{PREFIX}{}", hex::encode(secret)))
}

/// The sha256 of a token, as stored.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token in an `Authorization: Bearer TOKEN` header value, if it is one.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_hex() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        let hex = a.strip_prefix(PREFIX).unwrap();
        assert_eq!(hex.len(), 2 * SECRET_BYTES);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn hash_is_sha256_of_the_whole_token() {
        // sha256("abc"), from FIPS 180-2.
        assert_eq!(
            hex::encode(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(hash("edge_a"), hash("edge_b"));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer edge_x"), Some("edge_x"));
        assert_eq!(bearer("bearer  edge_x "), Some("edge_x"));
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("edge_x"), None);
    }
}
