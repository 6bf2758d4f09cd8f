//! Key-value data: what the control plane, the nodes and the CLI exchange about KV
//! namespaces, and the limits they all check.
//!
//! A namespace is named like a function; a function reaches the namespaces its version is
//! bound to (`edge deploy --kv NAMESPACE`). Keys are UTF-8, at most [`MAX_KEY_BYTES`]; values
//! are bytes, at most [`MAX_VALUE_BYTES`]. Every write gets the next sequence number of the
//! control plane's KV log; nodes follow that log (`GET /v1/kv-changes`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// Longest key, bytes (Cloudflare Workers KV's limit).
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value, bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most changes one `GET /v1/kv-changes` answers.
pub const MAX_CHANGES: usize = 1000;

/// Everything but `A-Z a-z 0-9 - . _ ~` is escaped in a key's path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `key` as one path segment.
pub fn key_segment(key: &str) -> String {
    utf8_percent_encode(key, SEGMENT).to_string()
}

/// The control plane's path for `key` in `namespace`: `/v1/kv/{namespace}/{key}`.
pub fn key_path(namespace: &str, key: &str) -> String {
    format!("{}/{namespace}/{}", crate::paths::KV, key_segment(key))
}

/// The key a path segment names, or `None` when it is not UTF-8.
pub fn decode_segment(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|key| key.into_owned())
}

/// Why a namespace, key or value is refused, with the rule.
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    if crate::is_function_name(namespace) {
        Ok(())
    } else {
        Err(format!(
            "KV namespace {namespace:?} is not allowed: use 1 to {} characters a-z, 0-9 and -, starting with a letter or digit",
            crate::MAX_FUNCTION_NAME
        ))
    }
}

/// Why a key is refused.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a KV key may not be empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "KV key of {} bytes is too long; keys are at most {MAX_KEY_BYTES} bytes",
            key.len()
        ));
    }
    Ok(())
}

/// `current` (the stored value, `None` when absent, which counts as 0) plus `delta`, for an
/// increment. The error (without the key's name, which the caller adds) says why not.
///
/// # Errors
/// The stored value is not a decimal number, or the sum overflows `u64`.
pub fn incremented(current: Option<&[u8]>, delta: u64) -> Result<u64, &'static str> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or("does not hold a number (decimal text), so it cannot be incremented")?,
    };
    current
        .checked_add(delta)
        .ok_or("cannot be incremented: the sum overflows a 64-bit unsigned number")
}

/// Why a value is refused.
pub fn check_value(key: &str, value: &[u8]) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "the value for KV key {key:?} is {} bytes; values are at most {MAX_VALUE_BYTES} bytes",
            value.len()
        ));
    }
    Ok(())
}

/// The answer to a write: its sequence number, and for an increment the new number.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Written {
    /// The write's place in the KV log (the last one for a batch).
    pub seq: u64,
    /// After an increment: the value now stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
}

/// `POST /v1/kv/{namespace}/{key}/increment`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Increment {
    /// Added to the number stored (0 when there is none).
    pub delta: u64,
}

/// `POST /v1/kv/{namespace}`: writes and deletes done together.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Keys and values to store.
    #[serde(default)]
    pub set: Vec<Pair>,
    /// Keys to delete.
    #[serde(default)]
    pub delete: Vec<String>,
}

/// A key and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// The key.
    pub key: String,
    /// The value, base64 in JSON.
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
}

/// One entry of the KV log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Its place in the log.
    pub seq: u64,
    /// The namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The value now, or `None` when the key was deleted.
    #[serde(default, with = "base64_option")]
    pub value: Option<Vec<u8>>,
}

/// `GET /v1/kv-changes?after=SEQ`: the log after `SEQ`, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// At most [`MAX_CHANGES`] changes.
    pub changes: Vec<Change>,
    /// The newest sequence number when this was answered: more follow when it is above the
    /// last change's.
    pub seq: u64,
}

/// `GET /v1/kv/{namespace}?prefix=&cursor=`: keys in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Keys {
    /// Up to a page of keys.
    pub keys: Vec<String>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

mod base64_option {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_some(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| STANDARD.decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn increments_add_to_decimal_text_and_refuse_the_rest() {
        assert_eq!(super::incremented(None, 5), Ok(5));
        assert_eq!(super::incremented(Some(b" 41\n"), 1), Ok(42));
        assert!(
            super::incremented(Some(b"forty"), 1)
                .unwrap_err()
                .contains("number")
        );
        assert!(super::incremented(Some(b"-1"), 1).is_err());
        let max = u64::MAX.to_string();
        assert!(
            super::incremented(Some(max.as_bytes()), 1)
                .unwrap_err()
                .contains("overflow")
        );
    }

    use super::*;

    #[test]
    fn keys_travel_as_one_path_segment() {
        for key in ["plain", "a/b c?d#e%f", "ünï", "-._~"] {
            let segment = key_segment(key);
            assert!(!segment.contains('/'), "{segment}");
            assert_eq!(decode_segment(&segment).as_deref(), Some(key));
        }
        assert_eq!(key_segment("a b"), "a%20b");
    }

    #[test]
    fn changes_carry_bytes_and_deletions() {
        let changes = Changes {
            changes: vec![
                Change {
                    seq: 1,
                    namespace: "ns".into(),
                    key: "k".into(),
                    value: Some(vec![0, 255, 1]),
                },
                Change {
                    seq: 2,
                    namespace: "ns".into(),
                    key: "k".into(),
                    value: None,
                },
            ],
            seq: 2,
        };
        let json = serde_json::to_string(&changes).unwrap();
        assert!(json.contains(r#""value":"AP8B""#), "{json}");
        assert_eq!(serde_json::from_str::<Changes>(&json).unwrap(), changes);
    }

    #[test]
    fn limits_name_the_rule() {
        assert!(
            check_namespace("Bad_Name")
                .unwrap_err()
                .contains("a-z, 0-9")
        );
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(513)).unwrap_err().contains("512"));
        assert!(
            check_value("k", &vec![0; MAX_VALUE_BYTES + 1])
                .unwrap_err()
                .contains("at most")
        );
        assert!(check_value("k", b"ok").is_ok());
    }
}
