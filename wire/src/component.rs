//! The deploy-time check of a component: valid, a `wasi:http` handler, and importing nothing a
//! node cannot provide. Nodes check again with their real linker when they load it.

use wasmparser::{Parser, Payload, Validator, WasmFeatures};

/// The export every function must have (any 0.2 patch version).
const HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// The WASI 0.2 interfaces a node links, by package. Any `0.2.*` version is accepted: the
/// node's linker matches patch versions (a 0.2.12 import runs on a 0.2.6 host and back).
const PROVIDED: &[(&str, &[&str])] = &[
    (
        "wasi:cli",
        &[
            "environment",
            "exit",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
    ),
    ("wasi:clocks", &["monotonic-clock", "wall-clock"]),
    ("wasi:filesystem", &["types", "preopens"]),
    ("wasi:http", &["types", "outgoing-handler"]),
    ("wasi:io", &["error", "poll", "streams"]),
    ("wasi:random", &["random", "insecure", "insecure-seed"]),
    (
        "wasi:sockets",
        &[
            "network",
            "instance-network",
            "udp",
            "udp-create-socket",
            "tcp",
            "tcp-create-socket",
            "ip-name-lookup",
        ],
    ),
];

/// Interfaces a node provides at exactly one version: drafts, whose versions do not link
/// across each other.
const PROVIDED_EXACTLY: &[&str] = &[
    "wasi:config/store@0.2.0-rc.1",
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
];

/// Why a component cannot be deployed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ComponentError {
    /// No bytes at all.
    #[error("the component is empty (0 bytes); pass the .wasm file your build produced")]
    Empty,
    /// Not WebAssembly.
    #[error(
        "not a WebAssembly file (it does not start with \\0asm); pass the .wasm your build produced"
    )]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "this is a core WebAssembly module, not a component; build for --target wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Malformed or invalid.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// No `wasi:http/incoming-handler` export.
    #[error(
        "the component does not export wasi:http/incoming-handler@0.2.x, so it cannot serve HTTP requests (it exports: {exports}); build it against the wasi:http/proxy world"
    )]
    MissingExport {
        /// What it does export, comma-separated, or "nothing".
        exports: String,
    },
    /// An import no node provides.
    #[error(
        "the component imports {name}, which edge nodes do not provide; they provide the WASI 0.2 interfaces (wasi:http, wasi:io, wasi:cli, wasi:clocks, wasi:random, wasi:filesystem, wasi:sockets) and wasi:config/store@0.2.0-rc.1, wasi:keyvalue/{{store,atomics,batch}}@0.2.0-draft"
    )]
    UnknownImport {
        /// The import's full name.
        name: String,
    },
}

/// What the check learnt about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSummary {
    /// Top-level imports, by name.
    pub imports: Vec<String>,
    /// Top-level exports, by name.
    pub exports: Vec<String>,
}

/// Whether a node provides the interface `name` (`wasi:io/streams@0.2.3`, say).
pub fn provided_interface(name: &str) -> bool {
    if PROVIDED_EXACTLY.contains(&name) {
        return true;
    }
    let Some((path, version)) = name.split_once('@') else {
        return false;
    };
    let Some((package, interface)) = path.split_once('/') else {
        return false;
    };
    let Some(rest) = version.strip_prefix("0.2.") else {
        return false;
    };
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    PROVIDED
        .iter()
        .any(|(p, interfaces)| *p == package && interfaces.contains(&interface))
}

/// Checks that `bytes` is a valid component exporting `wasi:http/incoming-handler` and importing
/// only interfaces nodes provide.
///
/// # Errors
/// A [`ComponentError`] naming the problem and the fix.
pub fn check_component(bytes: &[u8]) -> Result<ComponentSummary, ComponentError> {
    if bytes.is_empty() {
        return Err(ComponentError::Empty);
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(ComponentError::NotWasm);
    }
    if !Parser::is_component(bytes) {
        return Err(ComponentError::CoreModule);
    }
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| ComponentError::Invalid(e.to_string()))?;

    let mut summary = ComponentSummary {
        imports: Vec::new(),
        exports: Vec::new(),
    };
    // Nested modules and components come inline in the payload stream; only depth 0 counts.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| ComponentError::Invalid(e.to_string()))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| ComponentError::Invalid(e.to_string()))?;
                    summary.imports.push(import.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| ComponentError::Invalid(e.to_string()))?;
                    summary.exports.push(export.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    if let Some(unknown) = summary.imports.iter().find(|i| !provided_interface(i)) {
        return Err(ComponentError::UnknownImport {
            name: unknown.clone(),
        });
    }
    let handler = |e: &String| {
        e.strip_prefix(HANDLER)
            .is_some_and(|rest| rest.starts_with('.') || rest.is_empty())
    };
    if !summary.exports.iter().any(handler) {
        let exports = if summary.exports.is_empty() {
            "nothing".to_owned()
        } else {
            summary.exports.join(", ")
        };
        return Err(ComponentError::MissingExport { exports });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provided_interfaces_are_wasi_0_2_only() {
        assert!(provided_interface("wasi:io/streams@0.2.0"));
        assert!(provided_interface("wasi:http/types@0.2.12"));
        assert!(provided_interface("wasi:sockets/tcp@0.2.3"));
        assert!(!provided_interface("wasi:io/streams"));
        assert!(!provided_interface("wasi:io/streams@0.3.0"));
        assert!(!provided_interface("wasi:io/streams@0.2.x"));
        assert!(!provided_interface("acme:nope/thing@0.2.0"));
        assert!(!provided_interface("wasi:http/incoming-handler@0.2.0"));
        assert!(provided_interface("wasi:config/store@0.2.0-rc.1"));
        assert!(!provided_interface("wasi:config/store@0.2.0-draft"));
    }

    #[test]
    fn rejects_what_is_not_a_component() {
        assert_eq!(check_component(b""), Err(ComponentError::Empty));
        assert_eq!(check_component(b"hello"), Err(ComponentError::NotWasm));
        // The smallest core module: magic and version 1.
        assert_eq!(
            check_component(b"\0asm\x01\0\0\0"),
            Err(ComponentError::CoreModule)
        );
        // A component header followed by garbage.
        assert!(matches!(
            check_component(b"\0asm\x0d\0\x01\0\xff\xff"),
            Err(ComponentError::Invalid(_))
        ));
        // An empty component: valid, but no handler.
        assert_eq!(
            check_component(b"\0asm\x0d\0\x01\0"),
            Err(ComponentError::MissingExport {
                exports: "nothing".into()
            })
        );
    }
}
