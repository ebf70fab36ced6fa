#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests of the Postgres journal.
#
#   eval "$(.ci/postgres.sh start)"   # installs PostgreSQL if missing, starts a cluster,
#                                     # prints ROLLOVER_TEST_POSTGRES=... and
#                                     # ROLLOVER_CI_PGDIR=... as export lines
#   .ci/postgres.sh stop "$ROLLOVER_CI_PGDIR"
#   .ci/postgres.sh blip "$ROLLOVER_CI_PGDIR" 1   # stop the server (its clients are
#                                     # disconnected), wait 1 s, start it again on the
#                                     # same port: a database outage for the chaos tests
#
# The cluster lives in a fresh temporary directory, listens on 127.0.0.1 on a free
# port, and runs as an unprivileged user (PostgreSQL refuses to run as root):
# `rollover-ci`, created when missing. Authentication is `trust` on loopback only:
# the cluster holds nothing but test data and is gone after `stop`.
set -euo pipefail

CI_USER=rollover-ci

log() { echo "postgres.sh: $*" >&2; }

pg_bindir() {
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        pg_config --bindir
        return
    fi
    # Debian keeps the server binaries out of PATH, one directory per major version.
    local newest
    newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$newest" ] && [ -x "$newest/initdb" ]; then
        echo "$newest"
        return
    fi
    command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)"
}

install_postgres() {
    if [ -n "$(pg_bindir || true)" ]; then
        return
    fi
    log "PostgreSQL not found: installing it from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
}

run_as() {
    if [ "$(id -u)" = 0 ]; then
        # runuser keeps no root privileges and needs no password.
        runuser -u "$CI_USER" -- "$@"
    else
        "$@"
    fi
}

# Below the kernel's ephemeral range (32768-60999 by default), so no test's socket
# bound to port 0 can hold it (a bound socket that does not listen refuses connections
# like a free port yet makes the server's bind fail); each attempt starts elsewhere.
free_port() {
    local attempt=${1:-1} port
    for port in $(seq $((25432 + (attempt - 1) * 20)) 25531); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    log "no free port in 25432-25531"
    return 1
}

start() {
    install_postgres
    local bin
    bin=$(pg_bindir)
    if [ "$(id -u)" = 0 ] && ! id "$CI_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$CI_USER"
    fi
    local dir port
    dir=$(mktemp -d "${TMPDIR:-/tmp}/rollover-ci-postgres.XXXXXX")
    chmod 755 "$dir"
    mkdir "$dir/data" "$dir/socket"
    if [ "$(id -u)" = 0 ]; then
        chown "$CI_USER" "$dir/data" "$dir/socket"
    fi
    run_as "$bin/initdb" -D "$dir/data" -U rollover -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    local attempt
    for attempt in 1 2 3 4 5; do
        port=$(free_port "$attempt")
        # fsync stays on: the tests measure the journal as it would run.
        if run_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/socket/server.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c max_connections=200" \
            start >&2; then
            break
        fi
        log "start on port $port failed (attempt $attempt)"
        port=""
    done
    if [ -z "$port" ]; then
        cat "$dir/socket/server.log" >&2 || true
        return 1
    fi
    echo "$bin" >"$dir/bindir"
    echo "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c max_connections=200" >"$dir/options"
    run_as "$bin/psql" -h 127.0.0.1 -p "$port" -U rollover -d postgres -qAtc \
        "CREATE DATABASE rollover" >&2
    log "cluster in $dir on 127.0.0.1:$port"
    echo "export ROLLOVER_TEST_POSTGRES=postgres://rollover@127.0.0.1:$port/rollover"
    echo "export ROLLOVER_CI_PGDIR=$dir"
}

stop() {
    local dir=${1:-${ROLLOVER_CI_PGDIR:-}}
    if [ -z "$dir" ] || [ ! -d "$dir/data" ]; then
        log "stop: no cluster directory given"
        return 0
    fi
    local bin
    bin=$(cat "$dir/bindir" 2>/dev/null || pg_bindir)
    run_as "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
    rm -rf "$dir"
    log "cluster in $dir stopped and removed"
}

blip() {
    local dir=${1:-} seconds=${2:-1}
    if [ -z "$dir" ] || [ ! -f "$dir/options" ]; then
        log "blip: no cluster directory given"
        return 2
    fi
    local bin
    bin=$(cat "$dir/bindir")
    run_as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    log "cluster in $dir stopped for $seconds s"
    sleep "$seconds"
    run_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/socket/server.log" -w -t 30 \
        -o "$(cat "$dir/options")" start >&2
    log "cluster in $dir started again"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:-}" ;;
blip) blip "${2:-}" "${3:-1}" ;;
*)
    echo "usage: $0 start | stop DIR | blip DIR SECONDS" >&2
    exit 2
    ;;
esac
