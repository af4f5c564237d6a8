#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (tests/service/test_postgres.py).
#   tests/pg.sh start DIR   initdb + start a server listening only on a unix socket inside DIR;
#                           prints a SQLAlchemy URL for its `postgres` database on stdout
#   tests/pg.sh stop DIR    stop it (fast shutdown); DIR is left for the caller to delete
# initdb refuses to run as root, and CI runs as root: then the cluster belongs to the `postgres` system user
# (created by the Debian package) and DIR is handed to it. No TCP port is opened, so parallel runs never clash.
# Needs the server binaries: Debian `apt-get install postgresql` (or `make postgres-deps`).
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

find_bin() {
    local cmd=$1 dir
    if [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/$cmd" ]]; then echo "$PG_BINDIR/$cmd"; return; fi
    # Debian keeps the server binaries out of PATH; the newest installed major wins
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/$cmd" ]]; then echo "$dir/$cmd"; return; fi
    done
    command -v "$cmd" 2>/dev/null || die "no '$cmd' found: install PostgreSQL (Debian: apt-get install -y postgresql, or make postgres-deps)"
}

as_owner() {
    # run a command as the cluster's owner: ourselves, or `postgres` when we are root
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to own the cluster"
        if command -v runuser >/dev/null; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
    else
        "$@"
    fi
}

[[ $# -eq 2 ]] || die "usage: $0 start|stop DIR"
action=$1
dir=$(realpath -m "$2")
data=$dir/data
sock=$dir/sock
# unix socket paths are limited to ~107 bytes ("$sock/.s.PGSQL.5432")
(( ${#sock} <= 90 )) || die "directory path too long for a unix socket: $sock"

case $action in
start)
    initdb=$(find_bin initdb)
    pg_ctl=$(find_bin pg_ctl)
    mkdir -p "$data" "$sock"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to own the cluster"
        chown -R postgres: "$dir"
        # the owner must be able to reach DIR through its parents (pytest's tmp dirs are 0700 root)
        p=$dir
        while [[ $p != / ]]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
    fi
    user=$(as_owner id -un)
    # trust on the socket only: no TCP listener, and the cluster holds nothing but throwaway test data
    as_owner "$initdb" -D "$data" -U "$user" -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    chmod 0755 "$sock"  # root (the test process) connects through it
    # fsync off and a small footprint: a test cluster that dies with the machine loses nothing of value
    opts="-c listen_addresses='' -c unix_socket_directories='$sock' -c fsync=off -c synchronous_commit=off"
    opts+=" -c full_page_writes=off -c shared_buffers=16MB -c max_connections=40"
    as_owner "$pg_ctl" -D "$data" -l "$dir/server.log" -o "$opts" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log" >&2; die "pg_ctl start failed"; }
    echo "postgresql+psycopg://$user@/postgres?host=$sock"
    ;;
stop)
    pg_ctl=$(find_bin pg_ctl)
    [[ -f "$data/postmaster.pid" ]] || exit 0
    as_owner "$pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    ;;
*)
    die "usage: $0 start|stop DIR"
    ;;
esac
