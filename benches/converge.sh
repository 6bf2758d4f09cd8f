#!/usr/bin/env bash
# Deploy convergence: a control plane and NODES (10) edge nodes on 127.0.0.1, DEPLOYS (20)
# deploys and PURGES (50) purges; prints p50/p99 of the time from the deploy (or purge) call
# returning to every node serving (or having applied) it.
#   bash benches/converge.sh
#   NODES=3 DEPLOYS=10 bash benches/converge.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# Separate builds: a --bin filter would apply to every package given.
cargo build --release -p edge-node -p edge-control-plane >&2
cargo build --release -p edge-benches --bin converge >&2
export EDGE_NODE_BIN=$ROOT/target/release/edge-node
export EDGE_CONTROL_PLANE_BIN=$ROOT/target/release/edge-control-plane
exec "$ROOT/target/release/converge"
