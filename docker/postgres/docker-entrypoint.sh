#!/usr/bin/env bash
# Entrypoint for authctl-postgres:15, a small subset of the official postgres image's:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#   POSTGRES_USER (default postgres, created as superuser), POSTGRES_DB (default
#   $POSTGRES_USER), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default
#   scram-sha-256), and *.sh / *.sql / *.sql.gz files in /docker-entrypoint-initdb.d.
# Initialises $PGDATA on first start only, then execs postgres as PID 1.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%F %T UTC')" "$*" >&2; }

# `docker run IMAGE -c foo=bar` -> postgres -c foo=bar
if [[ "${1:-}" == -* ]]; then set -- postgres "$@"; fi

if [[ "${1:-}" != postgres ]]; then exec "$@"; fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# As root: fix ownership, then re-run this script as postgres (exec: no extra process).
if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  [[ "$(stat -c %U "$PGDATA")" == postgres ]] || chown -R postgres:postgres "$PGDATA"
  chown postgres:postgres /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 2775 /var/run/postgresql
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
  if [[ -z "${POSTGRES_PASSWORD:-}" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
    log "error: database is uninitialised and POSTGRES_PASSWORD is not set"
    log "       (set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow passwordless connections)"
    exit 1
  fi

  log "initialising $PGDATA (superuser $POSTGRES_USER, database $POSTGRES_DB)"
  initdb_args=(--username="$POSTGRES_USER" --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD")
  # The password goes through a pipe, never a file or argv. The <(...) must sit on the
  # initdb line itself: its /dev/fd/N is closed once the command it appears in ends.
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is word-split on purpose
  if [[ -n "${POSTGRES_PASSWORD:-}" ]]; then
    initdb "${initdb_args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
      ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >/dev/null
  else
    initdb "${initdb_args[@]}" ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >/dev/null
  fi
  # any address, password auth (initdb's own host lines cover loopback only)
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

  # temporary server, Unix socket only, so nobody connects before init is done
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -t 60 start >/dev/null
  psql_cmd=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password -p 5432 --username "$POSTGRES_USER")
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql_cmd[@]}" --dbname postgres --set db="$POSTGRES_DB" -q <<<'CREATE DATABASE :"db";'
  fi
  shopt -s nullglob
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)     log "running $f"; if [[ -x "$f" ]]; then "$f"; else . "$f"; fi ;;
      *.sql)    log "running $f"; "${psql_cmd[@]}" --dbname "$POSTGRES_DB" -q -f "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB" -q ;;
      *)        log "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  log "init done"
fi

exec "$@"
