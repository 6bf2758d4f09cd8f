//! Benchmarks live in `benches/` (criterion) and `load.sh` (the whole node under load).
