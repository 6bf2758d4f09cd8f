//! Compiles each uploaded component once, for the whole fleet.
//!
//! Cranelift takes tens of milliseconds for a small component and seconds for a large one; a
//! fleet where every node compiles every deploy pays that on every node at the same moment.
//! The control plane compiles at upload instead, with the nodes' settings ([`edge_engine`]),
//! and keeps the code content-addressed in `<data-dir>/compiled/<sha256>`; snapshots name it
//! per version, with the engine key it is for. A node whose engine has that key (same
//! wasmtime build and settings, same CPU features) loads the code; any other node compiles
//! the component itself, as it would without a control plane.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::components::Components;

/// Why a component could not be compiled for the nodes.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// wasmtime refuses the component: no node could run it either.
    #[error("wasmtime cannot compile this component: {0}")]
    Invalid(String),
    /// The code cannot be written.
    #[error("cannot store compiled code: {0}")]
    Store(#[from] std::io::Error),
}

/// The engine the nodes compile with, and the folder of its code.
pub struct Compiler {
    engine: Engine,
    key: String,
    code: Components,
    /// One compilation at a time: Cranelift already uses every core for one component.
    one_at_a_time: Mutex<()>,
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler")
            .field("engine", &self.key)
            .finish_non_exhaustive()
    }
}

impl Compiler {
    /// A compiler keeping its code in `dir` (created if missing).
    ///
    /// # Errors
    /// The folder cannot be created or read, or the engine cannot be set up.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let engine = Engine::new(&edge_engine::config()).map_err(std::io::Error::other)?;
        Ok(Self {
            key: edge_engine::key(&engine),
            engine,
            code: Components::open(dir)?,
            one_at_a_time: Mutex::new(()),
        })
    }

    /// The key of the engine the code is for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The stored code, by sha256.
    pub fn code(&self) -> &Components {
        &self.code
    }

    /// Compiles `component` (blocking; call it off the async runtime), stores the code, and
    /// returns its sha256.
    ///
    /// # Errors
    /// See [`CompileError`].
    pub fn compile(&self, component: &[u8]) -> Result<String, CompileError> {
        let _turn = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let code = Component::new(&self.engine, component)
            .and_then(|c| c.serialize())
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        let sha256 = hex::encode(Sha256::digest(&code));
        self.code.store(&sha256, &code)?;
        tracing::info!(
            code = &sha256[..16],
            size = code.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled for the nodes"
        );
        Ok(sha256)
    }
}
