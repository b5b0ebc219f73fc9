#!/usr/bin/env bash
# Installs llama-cpp-python's OpenAI-compatible server in a virtual environment of its own and
# prints that environment's python as the last line on stdout. Idempotent and silent when the
# pinned version is already there.
#
#   scripts/llama-cpp-python.sh
#   OFFERFLOW_LLAMA_CPP_PYTHON="$(scripts/llama-cpp-python.sh | tail -n1)"
#   "$OFFERFLOW_LLAMA_CPP_PYTHON" -m llama_cpp.server --model "$OFFERFLOW_MODEL" --port 8000
#
# OFFERFLOW_CACHE: where the environment goes (default: ~/.cache/offerflow), as
# $OFFERFLOW_CACHE/llama-cpp-python.
#
# It is the real peer of the `openai` backend's tests and the old system's way of serving the
# model (scripts/peer-bench.py). PyPI has only its source: pip compiles llama.cpp with CMake,
# which takes several minutes on 2 cores the first time. Needs python3 with venv and pip, a C++
# compiler and cmake (scripts/setup-deps.sh installs them).
set -euo pipefail

version="0.3.36"
# CPU only, without llama.cpp's own programs (only the library the package loads is needed), and
# for the same instructions as the inference worker's llama.cpp (AVX2, FMA, F16C; see
# llama-cpp-sys-2's build): GGML_NATIVE=ON on a CPU with AMX (Sapphire Rapids) builds a library
# that crashes on the first decode of more than one token, and the benchmarks compare like with
# like. Otherwise llama.cpp's defaults, as a stock install of the old system had them.
cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"

cache="${OFFERFLOW_CACHE:-${HOME:?HOME is not set; set OFFERFLOW_CACHE}/.cache/offerflow}"
venv="$cache/llama-cpp-python"
python="$venv/bin/python"
# What the installed package was built with; another version or other flags are rebuilt.
stamp="$venv/offerflow-build"
wanted_stamp="$version $cmake_args"

installed_version() {
  # Importing the server module also proves its extras (FastAPI, uvicorn, …) and the compiled
  # library load, not only that pip once recorded the package.
  "$python" - <<'PY' 2>/dev/null
import importlib.metadata
import llama_cpp.server.app  # noqa: F401
print(importlib.metadata.version("llama-cpp-python"))
PY
}

if [ -x "$python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$wanted_stamp" ] &&
  [ "$(installed_version || true)" = "$version" ]; then
  echo "$python"
  exit 0
fi

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "llama-cpp-python: python3 with venv is needed (run scripts/setup-deps.sh)" >&2
  exit 1
fi

mkdir -p "$cache"
if [ ! -x "$python" ]; then
  echo "llama-cpp-python: creating the virtual environment $venv" >&2
  python3 -m venv "$venv"
fi

echo "llama-cpp-python: installing llama-cpp-python[server]==$version (compiles llama.cpp; several minutes)" >&2
rm -f "$stamp"
# pip would keep an installed copy of the same version built with other flags.
"$python" -m pip uninstall --quiet --yes llama-cpp-python >/dev/null 2>&1 || true
export CMAKE_ARGS="$cmake_args"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
"$python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
  "llama-cpp-python[server]==$version" >&2

actual=$(installed_version || true)
if [ "$actual" != "$version" ]; then
  echo "llama-cpp-python: installed, but $python cannot import llama_cpp.server (version: ${actual:-none})" >&2
  exit 1
fi
echo "$wanted_stamp" >"$stamp"
echo "llama-cpp-python: installed $version in $venv" >&2
echo "$python"
