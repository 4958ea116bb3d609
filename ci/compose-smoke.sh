#!/usr/bin/env bash
# Compose smoke test: the real stack (compose.yaml) with a locally built PostgreSQL.
#
#   up -d  ->  wait until both services are healthy  ->  register + log in + /me through
#   127.0.0.1:$AUTHCTL_PORT (8080)  ->  down -v (always, also on failure or Ctrl-C).
#
# Needs the images authctl:latest (make image) and $POSTGRES_IMAGE (default
# authctl-postgres:15, docker/postgres-image.sh); it does not build them unless
# BUILD=1. Uses a throwaway env file with a random database password and a random
# 48-byte SECRET_KEY; your .env is NOT read. Runs as its own compose project
# (COMPOSE_PROJECT_NAME, default authctl-smoke) so it does not touch `make up`'s stack.
#
# Env: COMPOSE (default docker-compose if present, else "docker compose"),
#      POSTGRES_IMAGE, AUTHCTL_PORT (8080), TIMEOUT (seconds to become healthy, 120),
#      BUILD=1 (build both images first).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export POSTGRES_IMAGE="${POSTGRES_IMAGE:-authctl-postgres:15}"
export AUTHCTL_PORT="${AUTHCTL_PORT:-8080}"
export AUTHCTL_PUBLISH=127.0.0.1
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-authctl-smoke}"
TIMEOUT="${TIMEOUT:-120}"
BASE="http://127.0.0.1:${AUTHCTL_PORT}"
if [[ -z "${DOCKER:-}" ]]; then
  if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
if [[ -z "${COMPOSE:-}" ]]; then
  if command -v docker-compose >/dev/null 2>&1; then COMPOSE=docker-compose; else COMPOSE="docker compose"; fi
fi

log() { printf '[compose-smoke] %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
t0=$SECONDS

if [[ "${BUILD:-0}" == 1 ]]; then
  "$ROOT/docker/build-image.sh"
  if [[ "$POSTGRES_IMAGE" == authctl-postgres:* ]]; then IMAGE="$POSTGRES_IMAGE" "$ROOT/docker/postgres-image.sh"; fi
fi
for img in authctl:latest "$POSTGRES_IMAGE"; do
  "$DOCKER" image inspect "$img" >/dev/null 2>&1 \
    || fail "image $img is missing (make image; docker/postgres-image.sh; or BUILD=1)"
done

# Throwaway secrets: random, never written anywhere but this temp file.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/authctl-smoke.XXXXXX")"
ENV_FILE="$WORK/env"
rand() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
{
  echo "POSTGRES_USER=authctl"
  echo "POSTGRES_PASSWORD=$(rand 24)"
  echo "POSTGRES_DB=authctl"
  echo "SECRET_KEY=$(rand 48)"   # 96 hex chars
  echo "LOG_LEVEL=info"
} >"$ENV_FILE"
chmod 600 "$ENV_FILE"
# compose v1 and v2 both take --env-file for substitution; the shell must not override it
unset POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB SECRET_KEY
compose() { $COMPOSE --env-file "$ENV_FILE" -f "$ROOT/compose.yaml" "$@"; }

cleanup() {
  local rc=$?
  if ((rc != 0)); then
    log "logs of the failed run:"
    compose ps >&2 || true
    compose logs --no-color --tail=50 >&2 || true
  fi
  log "down -v"
  compose down -v --remove-orphans >/dev/null 2>&1 || compose down -v --remove-orphans >&2 || true
  rm -rf "$WORK"
  log "$( ((rc == 0)) && echo PASS || echo FAIL ) in $((SECONDS - t0))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "up -d (authctl:latest + $POSTGRES_IMAGE), project $COMPOSE_PROJECT_NAME"
compose up -d --no-build

health() {  # prints the health status of a service's container
  local id
  id="$(compose ps -q "$1")"
  [[ -n "$id" ]] || { echo missing; return; }
  "$DOCKER" inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id"
}
deadline=$((SECONDS + TIMEOUT))
while :; do
  pg="$(health postgres)"; app="$(health authctl)"
  [[ "$pg" == healthy && "$app" == healthy ]] && break
  [[ "$app" == unhealthy || "$app" == exited ]] && fail "authctl is $app"
  ((SECONDS < deadline)) || fail "not healthy within ${TIMEOUT}s (postgres=$pg authctl=$app)"
  sleep 1
done
log "healthy after $((SECONDS - t0))s (postgres=$pg authctl=$app)"

# The published port is loopback-only.
binding="$($DOCKER port "$(compose ps -q authctl)" 8000/tcp)"
[[ "$binding" == "127.0.0.1:$AUTHCTL_PORT" ]] || fail "unexpected port binding: $binding"

curl_() { curl -sS --max-time 15 -o "$WORK/body" -w '%{http_code}' "$@"; }
user="smoke_$(rand 4)"
pass="smoke-password-$(rand 6)"

code="$(curl_ -H 'Content-Type: application/json' \
  -d "{\"email\":\"$user@example.com\",\"username\":\"$user\",\"password\":\"$pass\"}" \
  "$BASE/api/v1/auth/register")"
[[ "$code" == 201 ]] || fail "register: HTTP $code $(cat "$WORK/body")"
log "register $user: 201"

code="$(curl_ --data-urlencode "username=$user" --data-urlencode "password=$pass" \
  "$BASE/api/v1/auth/token")"
[[ "$code" == 200 ]] || fail "login: HTTP $code $(cat "$WORK/body")"
access="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_token"])' "$WORK/body" 2>/dev/null \
  || sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' "$WORK/body")"
[[ -n "$access" ]] || fail "login: no access_token in $(cat "$WORK/body")"
log "login: 200"

code="$(curl_ -H "Authorization: Bearer $access" "$BASE/api/v1/auth/me")"
[[ "$code" == 200 ]] && grep -q "\"username\":\"$user\"" "$WORK/body" \
  || fail "me: HTTP $code $(cat "$WORK/body")"
log "me: 200 ($user)"

# The backend really is PostgreSQL (not the image's SQLite default).
compose exec -T postgres psql -U authctl -d authctl -tAc "select count(*) from users where username = '$user'" \
  | grep -qx 1 || fail "user $user not found in PostgreSQL"
log "user is in PostgreSQL"
