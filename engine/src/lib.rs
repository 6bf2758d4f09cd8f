//! The wasmtime settings that decide what compiled code looks like, in one place.
//!
//! The control plane compiles every uploaded component once with [`config`] and hands the
//! machine code to the nodes, which run it only when their engine's [`key`] is the control
//! plane's: the same wasmtime build, the same settings, the same CPU features. Anything that
//! changes compiled code belongs here, never in one binary only; how instances are *allocated*
//! (the node's pool) does not change the code, so each binary sets that itself.

use std::hash::{Hash as _, Hasher as _};

/// The compile-relevant configuration: the component model, epoch interruption (the node's
/// wall-clock limit), copy-on-write memory images. Cranelift, tuned for speed, on the host's
/// CPU features.
pub fn config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true);
    config
}

/// A short name for everything that must match for `engine`'s compiled code to load in another
/// engine: wasmtime's own compatibility hash (its version, the target and its CPU features,
/// compiler flags, tunables, wasm features), as 16 hex digits.
///
/// Stable across processes of one build (the hasher has fixed keys), which is all it is used
/// for: naming artifacts, and telling a node whether the control plane's artifacts are its own.
pub fn key(engine: &wasmtime::Engine) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_strategy_does_not_change_the_key() {
        let on_demand = wasmtime::Engine::new(&config()).unwrap();
        let mut pooled = config();
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(4)
            .total_core_instances(32)
            .total_memories(8)
            .total_tables(16)
            .total_stacks(4)
            .max_memory_size(64 << 20);
        pooled.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let pooled = wasmtime::Engine::new(&pooled).unwrap();
        assert_eq!(key(&on_demand), key(&pooled));
        assert_eq!(key(&on_demand), key(&on_demand.clone()));

        let mut other = config();
        other.epoch_interruption(false);
        assert_ne!(
            key(&on_demand),
            key(&wasmtime::Engine::new(&other).unwrap())
        );
    }
}
