#!/usr/bin/env bash
# Installs a real argilla-server 2.8.0 in a virtual environment of its own and prints that
# environment's python as the last line on stdout. Idempotent and silent when it is there.
#
#   OFFERFLOW_ARGILLA_PYTHON="$(scripts/argilla-server.sh | tail -n1)"
#   ARGILLA_SEARCH_ENGINE=memory ARGILLA_HOME_PATH=… ARGILLA_REDIS_URL=redis://… \
#     "$OFFERFLOW_ARGILLA_PYTHON" scripts/argilla/serve.py --port 6900
#
# It is the real peer of the Argilla exporter's tests. Elasticsearch cannot be installed here,
# so scripts/argilla/serve.py runs the server with an in-memory search engine (see there).
# OFFERFLOW_CACHE: where the environment goes (default ~/.cache/offerflow), as
# $OFFERFLOW_CACHE/argilla-server. Needs python3 with venv and pip (scripts/setup-deps.sh).
set -euo pipefail

version="2.8.0"
# A newer click breaks argilla-server's command line ("Secondary flag is not valid for
# non-boolean flag"), which the tests use to migrate its database and create its owner.
requirements=("argilla-server==$version" "click<8.2")

cache="${OFFERFLOW_CACHE:-${HOME:?HOME is not set; set OFFERFLOW_CACHE}/.cache/offerflow}"
venv="$cache/argilla-server"
python="$venv/bin/python"

installed_version() {
  "$python" - <<'PY' 2>/dev/null
import importlib.metadata
import argilla_server.search_engine.base  # noqa: F401
print(importlib.metadata.version("argilla-server"))
PY
}

if [ -x "$python" ] && [ "$(installed_version || true)" = "$version" ]; then
  echo "$python"
  exit 0
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "argilla-server: python3 with venv is needed (run scripts/setup-deps.sh)" >&2
  exit 1
fi
mkdir -p "$cache"
[ -x "$python" ] || python3 -m venv "$venv"
echo "argilla-server: installing ${requirements[*]} into $venv" >&2
"$python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}" >&2
actual=$(installed_version || true)
if [ "$actual" != "$version" ]; then
  echo "argilla-server: installed, but $python cannot import argilla_server (version: ${actual:-none})" >&2
  exit 1
fi
echo "$python"
