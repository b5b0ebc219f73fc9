# shellcheck shell=bash
# Starts a private, throwaway PostgreSQL cluster for the test suite.
#
#   source scripts/test-cluster.sh      # exports OFFERFLOW_TEST_DATABASE_URL and registers an
#                                       # EXIT trap that stops the cluster and deletes it
#   scripts/test-cluster.sh CMD ARGS…   # runs CMD with the variable set, then cleans up
#
# The cluster lives in a `mktemp -d` directory (owned by the `postgres` user when run as root,
# since the server refuses to run as root), listens on 127.0.0.1 on a free port and on a unix
# socket inside that directory, trusts local connections, and runs with fsync=off and
# max_connections=300 (OFFERFLOW_TEST_CLUSTER_DURABLE=1 keeps fsync on, for benchmarks). URL: postgres://USER@127.0.0.1:PORT/postgres, USER being `postgres` as
# root, else the current user. Binaries: $OFFERFLOW_PG_BIN, else the highest
# /usr/lib/postgresql/*/bin, else `pg_config --bindir`, else PATH.
# Prints nothing but errors.

_offerflow_tc_err() { printf 'test-cluster: %s\n' "$*" >&2; }

_offerflow_tc_bindir() {
  local d best="" best_v=-1 v
  if [ -n "${OFFERFLOW_PG_BIN:-}" ]; then
    if [ -x "$OFFERFLOW_PG_BIN/initdb" ] && [ -x "$OFFERFLOW_PG_BIN/pg_ctl" ]; then
      printf '%s\n' "$OFFERFLOW_PG_BIN"; return 0
    fi
    _offerflow_tc_err "OFFERFLOW_PG_BIN=$OFFERFLOW_PG_BIN does not contain initdb and pg_ctl"
    return 1
  fi
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] || continue
    v=${d#/usr/lib/postgresql/}; v=${v%/bin}; v=${v%%.*}
    case $v in ''|*[!0-9]*) continue ;; esac
    if [ "$v" -gt "$best_v" ]; then best_v=$v; best=$d; fi
  done
  if [ -n "$best" ]; then printf '%s\n' "$best"; return 0; fi
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then printf '%s\n' "$d"; return 0; fi
  fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    d=$(command -v pg_ctl); printf '%s\n' "${d%/*}"; return 0
  fi
  _offerflow_tc_err "no PostgreSQL server binaries found (install them: scripts/setup-deps.sh or apt-get install postgresql; or set OFFERFLOW_PG_BIN)"
  return 1
}

# True if something accepts TCP connections on 127.0.0.1:$1.
_offerflow_tc_port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_offerflow_tc_stop() {
  local dir=${_OFFERFLOW_TC_DIR:-}
  [ -n "$dir" ] || return 0
  _OFFERFLOW_TC_DIR=
  if [ -f "$dir/data/postmaster.pid" ]; then
    ${_OFFERFLOW_TC_AS:-} "$_OFFERFLOW_TC_BIN/pg_ctl" stop -D "$dir/data" -m immediate -w -s -t 60 \
      >/dev/null 2>&1 \
      || _offerflow_tc_err "could not stop the cluster in $dir"
  fi
  rm -rf -- "$dir"
}

_offerflow_tc_start() {
  local bindir dir user as="" port attempt log sockdir locale
  bindir=$(_offerflow_tc_bindir) || return 1

  if [ "$(id -u)" = 0 ]; then
    if ! id -u postgres >/dev/null 2>&1; then
      _offerflow_tc_err "running as root needs the unprivileged 'postgres' user (apt-get install postgresql)"
      return 1
    fi
    if ! command -v runuser >/dev/null 2>&1; then
      _offerflow_tc_err "running as root needs runuser (util-linux) to run PostgreSQL as 'postgres'"
      return 1
    fi
    as="runuser -u postgres --"
    user=postgres
    # /tmp, not $TMPDIR: the postgres user must be able to reach the directory.
    dir=$(mktemp -d /tmp/offerflow-test-pg.XXXXXX) || { _offerflow_tc_err "mktemp failed"; return 1; }
    chown postgres: "$dir" || { _offerflow_tc_err "cannot chown $dir to postgres"; rm -rf -- "$dir"; return 1; }
  else
    user=$(id -un) || { _offerflow_tc_err "cannot determine the current user"; return 1; }
    dir=$(mktemp -d "${TMPDIR:-/tmp}/offerflow-test-pg.XXXXXX") || { _offerflow_tc_err "mktemp failed"; return 1; }
  fi
  chmod 700 "$dir"
  _OFFERFLOW_TC_DIR=$dir
  _OFFERFLOW_TC_BIN=$bindir
  _OFFERFLOW_TC_AS=$as
  log=$dir/postgres.log

  # Run from a directory the postgres user can enter (our cwd may be /root).
  for locale in C.UTF-8 C; do
    if (cd "$dir" && $as "$bindir/initdb" -D "$dir/data" -U "$user" --auth=trust -E UTF8 \
          "--locale=$locale" -N >/dev/null 2>"$dir/initdb.err"); then
      break
    fi
    if [ "$locale" = C ]; then
      _offerflow_tc_err "initdb failed:"; cat "$dir/initdb.err" >&2
      _offerflow_tc_stop; return 1
    fi
    $as rm -rf -- "$dir/data"
  done

  # unix socket paths are limited to 107 bytes; fall back to TCP only for very long TMPDIRs.
  sockdir=$dir
  [ "${#dir}" -le 90 ] || sockdir=
  # Root may write into data/ directly; the file keeps its owner.
  cat >>"$dir/data/postgresql.conf" <<CONF

# offerflow scripts/test-cluster.sh: throwaway test cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
max_connections = 300
CONF
  # Benchmarks want a durable server (the default); tests want a fast one.
  if [ "${OFFERFLOW_TEST_CLUSTER_DURABLE:-0}" != 1 ]; then
    printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$dir/data/postgresql.conf"
  elif [ -f "$bindir/../lib/pg_stat_statements.so" ] || [ -f "$(dirname "$bindir")/lib/pg_stat_statements.so" ]; then
    # Benchmarks report where the database's time goes.
    printf "shared_preload_libraries = 'pg_stat_statements'\n" >>"$dir/data/postgresql.conf"
  fi

  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    # Below the usual ephemeral range (32768+), where tests bind port 0 and clients connect from.
    port=$(( 20000 + RANDOM % 12000 ))
    _offerflow_tc_port_busy "$port" && continue
    : >"$log"; [ -z "$as" ] || chown postgres: "$log"
    if (cd "$dir" && $as "$bindir/pg_ctl" start -D "$dir/data" -l "$log" -o "-p $port" -w -s -t 120 \
          >/dev/null 2>&1); then
      export OFFERFLOW_TEST_DATABASE_URL="postgres://$user@127.0.0.1:$port/postgres"
      return 0
    fi
    # Lost a race for the port? Try another one; anything else is fatal.
    if grep -qE 'could not bind|Address already in use|could not create any TCP/IP sockets' "$log" \
        && [ "$attempt" -lt 10 ]; then
      continue
    fi
    _offerflow_tc_err "PostgreSQL failed to start; its log:"; cat "$log" >&2
    _offerflow_tc_stop; return 1
  done
  _offerflow_tc_err "found no free port for PostgreSQL"
  _offerflow_tc_stop; return 1
}

# Adds our cleanup to the EXIT trap, keeping any trap already set.
_offerflow_tc_trap() {
  local prev
  prev=$(trap -p EXIT)
  if [ -n "$prev" ]; then
    eval "prev=( $prev )"
    # prev is now the words of: trap -- 'CMD' EXIT; CMD must be expanded now.
    # shellcheck disable=SC2064
    trap "_offerflow_tc_stop; ${prev[2]}" EXIT
  else
    trap _offerflow_tc_stop EXIT
  fi
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced.
  if [ -n "${_OFFERFLOW_TC_DIR:-}" ]; then
    : # already running in this shell
  elif _offerflow_tc_start; then
    _offerflow_tc_trap
  else
    return 1
  fi
else
  # Executed: run the given command against the cluster.
  set -uo pipefail
  if [ $# -eq 0 ]; then
    _offerflow_tc_err "usage: source ${0##*/}  (or: ${0##*/} COMMAND [ARGS…])"
    exit 2
  fi
  _offerflow_tc_start || exit 1
  trap _offerflow_tc_stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  "$@"
  exit $?
fi
