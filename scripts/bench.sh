#!/usr/bin/env bash
# Runs the write-path benchmark (BENCHMARKS.md) on a private, durable PostgreSQL cluster:
#   ./scripts/bench.sh [--seconds N] [--clients N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash ./scripts/setup-deps.sh --without-nextest
export OFFERFLOW_TEST_CLUSTER_DURABLE=1
# shellcheck source=scripts/test-cluster.sh
source ./scripts/test-cluster.sh
status=0
cargo bench -p offerflow-http --bench write_path -- "$@" || status=$?
exit "$status"
