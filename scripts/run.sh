#!/usr/bin/env bash
# Builds and runs the Offerflow server: ./scripts/run.sh [extra `offerflow serve` args…]
#
# Installs missing dependencies (scripts/setup-deps.sh --without-nextest), fetches the default
# model (scripts/fetch-model.sh) unless OFFERFLOW_MODEL is set or OFFERFLOW_LLM_BACKEND=openai,
# builds the release binary and execs `offerflow serve`. Without DATABASE_URL the binary starts its own embedded
# PostgreSQL cluster, so this script starts no database.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -d "${CARGO_HOME:-${HOME:-}/.cargo}/bin" ]; then
  export PATH="${CARGO_HOME:-${HOME:-}/.cargo}/bin:$PATH"
fi

bash ./scripts/setup-deps.sh --without-nextest
# The default model, unless another is configured or generation goes to a server.
if [ -z "${OFFERFLOW_MODEL:-}" ] && [ "${OFFERFLOW_LLM_BACKEND:-llama}" = llama ]; then
  OFFERFLOW_MODEL=$(bash ./scripts/fetch-model.sh | tail -n1)
  export OFFERFLOW_MODEL
fi
# (`-p http` would be ambiguous with the `http` crate on crates.io; the bin name is unique.)
cargo build --release --bin offerflow

# Where cargo puts it: honours CARGO_TARGET_DIR and any cargo config.
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || true
[ -n "$target_dir" ] || target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in
  /*) ;;
  *) target_dir=$PWD/$target_dir ;;
esac
exec "$target_dir/release/offerflow" serve "$@"
