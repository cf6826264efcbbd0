#!/usr/bin/env bash
# Start the services the test suite can use: a PostgreSQL server on 127.0.0.1.
#
# Usage (from the repository root):
#   eval "$(bash .ci/services.sh)"        # start (or reuse) and export the variables
#   bash .ci/services.sh stop             # stop the server and remove its data directory
#
# What it does: installs PostgreSQL with apt-get when no server binaries are found; creates a
# fresh cluster in $HILNAS_PG_DIR (default /tmp/hilnas-pg) owned by the `postgres` user (initdb
# refuses to run as root); starts it on 127.0.0.1 at $HILNAS_PG_PORT (default: a free port);
# creates the role `hilnas` (password `hilnas`) and two databases: `hilnas_test` for the
# measurement store's tests and `prefect_test` for a Prefect server backed by PostgreSQL.
#
# Output: `export NAME=VALUE` lines on stdout (everything else goes to stderr), also written to
# $HILNAS_PG_DIR/env so that a script can `source` it:
#   HILNAS_TEST_POSTGRES_URL          postgresql+psycopg://hilnas:hilnas@127.0.0.1:PORT/hilnas_test
#   HILNAS_TEST_PREFECT_POSTGRES_URL  postgresql+asyncpg://hilnas:hilnas@127.0.0.1:PORT/prefect_test
# Rerunning while the server is up reuses it (idempotent). Exit status non-zero on any failure.
set -euo pipefail

PG_DIR=${HILNAS_PG_DIR:-/tmp/hilnas-pg}
DATA="$PG_DIR/data"
LOG="$PG_DIR/postgres.log"
ENV_FILE="$PG_DIR/env"
PG_USER=hilnas
PG_PASSWORD=hilnas

log() { echo "services.sh: $*" >&2; }

find_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    done
    return 1
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-start}" = stop ]; then
    if BIN=$(find_bindir) && [ -f "$DATA/postmaster.pid" ]; then
        as_postgres "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
    fi
    rm -rf "$PG_DIR"
    log "stopped; removed $PG_DIR"
    exit 0
fi

if ! BIN=$(find_bindir); then
    log "no PostgreSQL server binaries found; installing with apt-get"
    if [ "$(id -u)" != 0 ]; then
        log "apt-get needs root: run as root or install PostgreSQL (package postgresql) first"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN=$(find_bindir) || { log "PostgreSQL installed but initdb was not found"; exit 1; }
fi
log "using PostgreSQL binaries in $BIN"

if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

emit() {
    local port=$1
    local store_url="postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/hilnas_test"
    local prefect_url="postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/prefect_test"
    {
        echo "export HILNAS_TEST_POSTGRES_URL=$store_url"
        echo "export HILNAS_TEST_PREFECT_POSTGRES_URL=$prefect_url"
    } >"$ENV_FILE"
    cat "$ENV_FILE"
    log "PostgreSQL is up on 127.0.0.1:$port; variables written to $ENV_FILE"
}

# Reuse a running server started by an earlier call.
if [ -f "$DATA/postmaster.pid" ] && [ -f "$PG_DIR/port" ]; then
    PORT=$(cat "$PG_DIR/port")
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
        emit "$PORT"
        exit 0
    fi
    log "found a stale cluster in $PG_DIR; starting afresh"
    as_postgres "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
fi
rm -rf "$PG_DIR"
mkdir -p "$PG_DIR"

PORT=${HILNAS_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 54329)}
echo "$PORT" >"$PG_DIR/port"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PG_DIR"

log "initialising a fresh cluster in $DATA"
as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; exit 1; }

log "starting the server on 127.0.0.1:$PORT"
as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PG_DIR -c max_connections=200 -c fsync=off" \
    start >&2 || { cat "$LOG" >&2; exit 1; }

psql_admin() { as_postgres "$BIN/psql" -h "$PG_DIR" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
psql_admin -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'" >&2
psql_admin -c "CREATE DATABASE hilnas_test OWNER $PG_USER" >&2
psql_admin -c "CREATE DATABASE prefect_test OWNER $PG_USER" >&2

# Prove a client can connect over TCP with the password, as the tests will.
PGPASSWORD=$PG_PASSWORD "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$PG_USER" -d hilnas_test \
    -v ON_ERROR_STOP=1 -qAt -c "SELECT 1" >/dev/null
emit "$PORT"
