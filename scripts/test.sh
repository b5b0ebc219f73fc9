#!/usr/bin/env bash
# Runs Offerflow's whole test suite: ./scripts/test.sh [extra test-runner args…]
#
# Installs missing dependencies (scripts/setup-deps.sh), fetches the default generation model
# (scripts/fetch-model.sh; exports OFFERFLOW_MODEL unless it is set), installs llama-cpp-python's
# server, the real peer of the OpenAI-compatible backend's tests (scripts/llama-cpp-python.sh;
# exports OFFERFLOW_LLAMA_CPP_PYTHON unless it is set), installs argilla-server 2.8.0, the real
# peer of the Argilla export's tests (scripts/argilla-server.sh; exports OFFERFLOW_ARGILLA_PYTHON
# unless it is set), starts a throwaway
# PostgreSQL cluster (scripts/test-cluster.sh; exports OFFERFLOW_TEST_DATABASE_URL, removed again
# on exit), then runs `cargo nextest run --workspace --no-fail-fast`, or
# `cargo test --workspace --no-fail-fast` when cargo-nextest is unavailable. Extra arguments go to
# the test runner. Exit status: the runner's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${CI:-}" = true ]; then
  export CARGO_TERM_COLOR=never
fi
if ! command -v cargo >/dev/null 2>&1 && [ -d "${CARGO_HOME:-${HOME:-}/.cargo}/bin" ]; then
  export PATH="${CARGO_HOME:-${HOME:-}/.cargo}/bin:$PATH"
fi

bash ./scripts/setup-deps.sh
# The inference worker's tests run the real model and fail without it.
if [ -z "${OFFERFLOW_MODEL:-}" ]; then
  OFFERFLOW_MODEL=$(bash ./scripts/fetch-model.sh | tail -n1)
  export OFFERFLOW_MODEL
fi
# The OpenAI-compatible backend's tests start llama-cpp-python's server and fail without it.
if [ -z "${OFFERFLOW_LLAMA_CPP_PYTHON:-}" ]; then
  OFFERFLOW_LLAMA_CPP_PYTHON=$(bash ./scripts/llama-cpp-python.sh | tail -n1)
  export OFFERFLOW_LLAMA_CPP_PYTHON
fi
# The Argilla export's tests start a real argilla-server and fail without it.
if [ -z "${OFFERFLOW_ARGILLA_PYTHON:-}" ]; then
  OFFERFLOW_ARGILLA_PYTHON=$(bash ./scripts/argilla-server.sh | tail -n1)
  export OFFERFLOW_ARGILLA_PYTHON
fi
# shellcheck source=scripts/test-cluster.sh
source ./scripts/test-cluster.sh

if cargo nextest --version >/dev/null 2>&1; then
  runner=(cargo nextest run --workspace --no-fail-fast)
else
  echo "test.sh: cargo-nextest is not available; running cargo test" >&2
  runner=(cargo test --workspace --no-fail-fast)
fi

# No exec: the EXIT trap must run afterwards to remove the cluster.
status=0
"${runner[@]}" "$@" || status=$?
exit "$status"
