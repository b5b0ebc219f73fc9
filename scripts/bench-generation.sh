#!/usr/bin/env bash
# Generation benchmarks (BENCHMARKS.md, issue 3) on one machine, one model, the same threads and
# the very same prompts:
#   1. Offerflow end to end: N clients of ../shared/data/clients_dataset.xlsx in one project
#      channel, batch command → last offer in the read model (http/benches/generation.rs);
#   2. the ceiling: a bare llama-cpp-2 decode loop over the same chats, with prefix reuse
#      (inference-worker/examples/ceiling.rs);
#   3. the peer: the same chats sent one at a time to llama-cpp-python's server
#      (scripts/peer-bench.py), the old system's way.
#
#   ./scripts/bench-generation.sh [--clients N] [--max-tokens N]
# Run it on an otherwise idle machine: the three share the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

clients=200
max_tokens=64
while [ $# -gt 0 ]; do
  case $1 in
    --clients) clients=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    *) echo "bench-generation: unknown argument $1" >&2; exit 2 ;;
  esac
done

bash ./scripts/setup-deps.sh --without-nextest
model=${OFFERFLOW_MODEL:-$(bash ./scripts/fetch-model.sh | tail -n1)}
export OFFERFLOW_MODEL=$model
python=$(bash ./scripts/llama-cpp-python.sh | tail -n1)
# shellcheck source=scripts/test-cluster.sh
source ./scripts/test-cluster.sh

chats=$(mktemp --suffix=.jsonl)
trap 'rm -f "$chats"' RETURN
echo "== Offerflow end to end"
cargo bench -p offerflow-http --bench generation -- --clients "$clients" --max-tokens "$max_tokens" --chats-out "$chats"
echo "== ceiling (bare llama-cpp-2 loop, prefix reuse, same chats)"
cargo run --release -q -p inference-worker --example ceiling -- --reuse-prefix "$model" "$clients" "$chats" | tail -n 6
echo "== peer (llama-cpp-python server, one request at a time, same chats)"
"$python" scripts/peer-bench.py --model "$model" "$chats" | tail -n 4
