#!/bin/bash
# Entry point of fly-potato/postgis.
#
# First start (no $PGDATA/PG_VERSION): initdb with the superuser POSTGRES_USER (default postgres) and
# the password from POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD; one of them is required),
# scram-sha-256 for host connections, extra POSTGRES_INITDB_ARGS; pg_hba.conf gets
# `host all all all scram-sha-256`; POSTGRES_DB is created when set; /docker-entrypoint-initdb.d/*.sql
# and *.sh run once against a socket-only server.
#
# Every start: postgres on $PGPORT (5433) on all addresses with password_encryption=scram-sha-256.
#   pg_hba:  POSTGRES_HBA_FILE (default /etc/fly-potato/pg_hba.conf) when that file exists,
#            else the POSTGRES_HBA variable (the file's content) when set,
#            else $PGDATA/pg_hba.conf as initialised.
#   settings: /etc/fly-potato/postgresql.conf is included when present; extra `-c name=value`
#            arguments after `postgres` win over everything.
set -Eeuo pipefail

log() { printf 'postgis-entrypoint: %s\n' "$*" >&2; }

if [ "${1:-postgres}" != postgres ]; then
    exec "$@"   # e.g. `docker run … psql --version`
fi
shift || true

: "${PGDATA:?PGDATA must be set}"
: "${PGPORT:=5433}"
export PGPORT
POSTGRES_USER="${POSTGRES_USER:-postgres}"
HBA_FILE="${POSTGRES_HBA_FILE:-/etc/fly-potato/pg_hba.conf}"
EXTRA_CONF=/etc/fly-potato/postgresql.conf

if [ "$(id -u)" = 0 ]; then
    log "refusing to run as root; run as the image's user (10010) or another non-root uid"
    exit 1
fi

read_password() {
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        [ -r "$POSTGRES_PASSWORD_FILE" ] || { log "POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE is not readable by uid $(id -u)"; exit 1; }
        head -n 1 "$POSTGRES_PASSWORD_FILE" | tr -d '\r\n'
    elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
        printf '%s' "$POSTGRES_PASSWORD"
    else
        log "no superuser password: set POSTGRES_PASSWORD_FILE (preferred) or POSTGRES_PASSWORD"
        exit 1
    fi
}

initialise() {
    local password
    password="$(read_password)"
    [ -n "$password" ] || { log "the superuser password is empty"; exit 1; }
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    log "initialising a new cluster in $PGDATA (superuser $POSTGRES_USER)"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$password") \
        --encoding=UTF8 --locale=C.UTF-8 --auth-host=scram-sha-256 --auth-local=scram-sha-256 \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    printf '\n# Containers: clients come from other containers on the Docker networks.\nhost all all all scram-sha-256\n' \
        >>"$PGDATA/pg_hba.conf"
    printf "\n# fly-potato: settings supplied by the deployment, when present\ninclude_if_exists = '%s'\n" "$EXTRA_CONF" \
        >>"$PGDATA/postgresql.conf"

    if [ -n "${POSTGRES_DB:-}" ] || compgen -G '/docker-entrypoint-initdb.d/*' >/dev/null; then
        # A socket-only server, invisible to health checks on 127.0.0.1, for the one-time setup.
        pg_ctl --pgdata="$PGDATA" --wait --silent -o "-c listen_addresses='' -c port=$PGPORT" start
        export PGPASSWORD="$password" PGHOST=/var/run/postgresql PGUSER="$POSTGRES_USER"
        if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
            # psql interpolates :"db" (quoted identifier) only in scripts, not in -c.
            printf 'CREATE DATABASE :"db";\n' \
                | psql -v ON_ERROR_STOP=1 --quiet --dbname=postgres --set db="$POSTGRES_DB" >/dev/null
        fi
        local f
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
                *.sql) log "running $f"; psql -v ON_ERROR_STOP=1 --quiet --dbname="${POSTGRES_DB:-postgres}" -f "$f" ;;
                *.sh) log "running $f"; bash "$f" ;;
                *) [ -e "$f" ] && log "ignoring $f" ;;
            esac
        done
        unset PGPASSWORD PGHOST PGUSER
        pg_ctl --pgdata="$PGDATA" --wait --silent -m fast stop
    fi
    log "cluster initialised"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initialise
fi

args=(-c listen_addresses='*' -c port="$PGPORT" -c password_encryption=scram-sha-256)
if [ -f "$HBA_FILE" ]; then
    args+=(-c hba_file="$HBA_FILE")
elif [ -n "${POSTGRES_HBA:-}" ]; then
    printf '%s\n' "$POSTGRES_HBA" >"$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" "${args[@]}" "$@"
