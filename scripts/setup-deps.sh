#!/usr/bin/env bash
# Installs what Offerflow's build, tests and embedded database need and is missing, on
# Debian/Ubuntu (apt-get; through sudo when not root). Silent when everything is present.
#
#   scripts/setup-deps.sh                   # everything, including cargo-nextest and Chromium
#   scripts/setup-deps.sh --without-nextest # what building and running needs
# OFFERFLOW_SKIP_NEXTEST_INSTALL=1 also skips installing cargo-nextest (e.g. offline).
#
# Checks: PostgreSQL server binaries (initdb, pg_ctl, postgres — package `postgresql`), a C
# toolchain (`build-essential`), `pkg-config`, `curl`, `ca-certificates`, cargo, cargo-nextest,
# and what the inference worker's llama.cpp build needs: `cmake`, `clang` and `libclang-dev`
# (bindgen loads libclang.so to generate the C bindings); python3 with pip and venv
# (`python3-pip`, `python3-venv`: fetch-model.sh, llama-cpp-python.sh and argilla-server.sh);
# for the tests, `chromium` and `chromium-driver` (the UI's end-to-end tests) and `redis-server`,
# which the Argilla export's tests start beside a real argilla-server.
set -euo pipefail

with_nextest=1
for arg in "$@"; do
  case $arg in
    --without-nextest) with_nextest=0 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup-deps: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

have() { command -v "$1" >/dev/null 2>&1; }

have_pg_server() {
  local d
  if [ -n "${OFFERFLOW_PG_BIN:-}" ]; then
    [ -x "$OFFERFLOW_PG_BIN/initdb" ] && [ -x "$OFFERFLOW_PG_BIN/pg_ctl" ] && return 0
  fi
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && return 0
  done
  if have pg_config; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && return 0
  fi
  have initdb && have pg_ctl
}

# bindgen (llama-cpp-sys-2's build script) needs the unversioned libclang.so, which only the
# -dev package ships; LIBCLANG_PATH points bindgen elsewhere.
have_libclang() {
  local f
  if [ -n "${LIBCLANG_PATH:-}" ]; then
    for f in "$LIBCLANG_PATH"/libclang.so "$LIBCLANG_PATH"/libclang-*.so; do
      [ -e "$f" ] && return 0
    done
  fi
  for f in /usr/lib/llvm-*/lib/libclang.so /usr/lib/*/libclang.so /usr/lib/libclang.so; do
    [ -e "$f" ] && return 0
  done
  return 1
}

missing=()
have_pg_server || missing+=(postgresql)
{ have cc && have make; } || missing+=(build-essential)
have pkg-config || missing+=(pkg-config)
have curl || missing+=(curl)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
have cmake || missing+=(cmake)
have clang || missing+=(clang)
have_libclang || missing+=(libclang-dev)
# llama-cpp-python.sh makes a virtual environment; Debian ships venv (and ensurepip, which it
# needs) apart from python3 itself.
if have python3; then
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
else
  missing+=(python3 python3-pip python3-venv)
fi
# The web interface's end-to-end tests drive Debian's headless Chromium through chromedriver,
# and the Argilla export's tests start a Redis for argilla-server; only the tests need them
# (run.sh passes --without-nextest).
if [ "$with_nextest" = 1 ]; then
  have redis-server || missing+=(redis-server)
  { have chromium || have chromium-browser; } || missing+=(chromium)
  have chromedriver || missing+=(chromium-driver)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if ! have apt-get; then
    echo "setup-deps: please install: ${missing[*]} (no apt-get here; this script knows Debian/Ubuntu only)" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    if have sudo; then
      sudo=(sudo)
    else
      echo "setup-deps: missing ${missing[*]}; run as root or install sudo, or install them yourself:" >&2
      echo "  apt-get install ${missing[*]}" >&2
      exit 1
    fi
  fi
  echo "setup-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  ${sudo[@]+"${sudo[@]}"} apt-get update -qq >/dev/null
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" postgresql "* ]] && ! have_pg_server; then
    echo "setup-deps: postgresql was installed but its server binaries were not found" >&2
    exit 1
  fi
fi

# Rust: rustup needs the internet, which these machines may not have; do not try.
if ! have cargo && [ -x "${CARGO_HOME:-${HOME:-}/.cargo}/bin/cargo" ]; then
  export PATH="${CARGO_HOME:-${HOME:-}/.cargo}/bin:$PATH"
fi
if ! have cargo; then
  cat >&2 <<'MSG'
setup-deps: cargo (Rust) is not installed. Install the Rust toolchain with rustup:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
then open a new shell (or `source "$HOME/.cargo/env"`) and run this again.
MSG
  exit 1
fi

if [ "${OFFERFLOW_SKIP_NEXTEST_INSTALL:-0}" = 1 ]; then
  with_nextest=0
fi
if [ "$with_nextest" = 1 ] && ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup-deps: installing cargo-nextest (cargo install cargo-nextest --locked)" >&2
  if ! cargo install cargo-nextest --locked --quiet; then
    # Not fatal: scripts/test.sh falls back to `cargo test`.
    echo "setup-deps: warning: could not install cargo-nextest; tests will run with cargo test" >&2
  fi
fi
