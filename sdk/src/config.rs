//! The function's configuration values: set per deployed version (`edge deploy --env K=V`, or
//! `env` in a routes file), read by name. They reach the component as its environment
//! (`wasi:cli/environment`), so `std::env::var` sees them too; nodes also serve them through
//! `wasi:config/store@0.2.0-rc.1` for components written against that interface.
//!
//! ```
//! edge::testing::set_config("GREETING", "hi");
//! assert_eq!(edge::config::get("GREETING").as_deref(), Some("hi"));
//! assert!(edge::config::require("MISSING").unwrap_err().to_string().contains("MISSING"));
//! ```

use crate::Result;

/// The value of `key`, if the function has one.
pub fn get(key: &str) -> Option<String> {
    if let Some(value) = crate::testing::config_override(key) {
        return Some(value);
    }
    std::env::var(key).ok()
}

/// The value of `key`.
///
/// # Errors
/// The function has no such value; the message says how to set it.
pub fn require(key: &str) -> Result<String> {
    get(key).ok_or_else(|| {
        format!(
            "configuration value {key} is not set; deploy with `edge deploy --env {key}=VALUE` (or `env` in the routes file)"
        )
        .into()
    })
}
