#!/usr/bin/env bash
# Replicas smoke test: compose.replicas.yaml (three authctl replicas, PostgreSQL, HAProxy)
# proven end to end through the balancer on 127.0.0.1:$AUTHCTL_PORT (8080).
#
#   1. build what is missing (authctl:latest, the PostgreSQL image; the balancer's image
#      through compose's own `build:`), up -d, wait until every container is healthy and
#      HAProxy reports all three replicas UP;
#   2. register, then log in three times: each login lands on another replica (the
#      replicas' JSON request logs show the X-Request-Id we sent), and each of the three
#      access tokens works on all three replicas (six /me calls per token);
#   3. bounded load (WORKERS threads, LOAD_SECONDS at most, MAX_REQUESTS at most):
#      /health/liveness and /me through the balancer, plus a few logins; KILL_AFTER
#      seconds in, `docker kill -s KILL` one replica. Every GET must succeed; a login may
#      fail only if HAProxy's log shows it was sent to the killed replica;
#   4. afterwards every token issued (before and during the load) still works, and the
#      refresh token from before the kill still refreshes;
#   4b. graceful drain: a shorter load (no logins) while `docker stop` (SIGTERM) stops
#      another replica; again every GET must succeed and every token still works;
#   5. a client cannot pick its own rate-limit key: logins with a fresh forged
#      X-Forwarded-For each are still limited (429 within 3 replicas x the limit); nor
#      the metadata's URLs: a forged X-Forwarded-Host/-Proto does not reach a replica;
#   6. down -v (always, also on failure or Ctrl-C).
#
# Throwaway env file (random database password; SECRET_KEY empty, so the replicas must
# agree on the key one of them generates and stores in PostgreSQL); your .env is NOT
# read. Own compose project (COMPOSE_PROJECT_NAME, default authctl-replicas-smoke) and
# its own subnet (AUTHCTL_LB_SUBNET 10.231.17.0/24, balancer .10), so it does not touch
# `make up-replicas`'s stack (which it can run beside, with another AUTHCTL_PORT).
#
# Env: COMPOSE (docker-compose if present, else "docker compose"), DOCKER,
#      POSTGRES_IMAGE (authctl-postgres:15), AUTHCTL_PORT (8080), TIMEOUT (seconds to
#      become healthy, 120), WORKERS (8), LOAD_SECONDS (20), KILL_AFTER (6),
#      MAX_REQUESTS (40000), KILL (the service to kill, authctl-2), STOP (the service
#      to stop with SIGTERM afterwards, authctl-3), DRAIN_SECONDS (10).
# Needs bash, curl, python3 (standard library only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export POSTGRES_IMAGE="${POSTGRES_IMAGE:-authctl-postgres:15}"
export AUTHCTL_PORT="${AUTHCTL_PORT:-8080}"
export AUTHCTL_PUBLISH=127.0.0.1
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-authctl-replicas-smoke}"
export AUTHCTL_LB_SUBNET="${AUTHCTL_LB_SUBNET:-10.231.17.0/24}"
export AUTHCTL_LB_IP="${AUTHCTL_LB_IP:-10.231.17.10}"
TIMEOUT="${TIMEOUT:-120}"
KILL="${KILL:-authctl-2}"
STOP="${STOP:-authctl-3}"
BASE="http://127.0.0.1:${AUTHCTL_PORT}"
REPLICAS=(authctl-1 authctl-2 authctl-3)
if [[ -z "${DOCKER:-}" ]]; then
  if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
export DOCKER
if [[ -z "${COMPOSE:-}" ]]; then
  if command -v docker-compose >/dev/null 2>&1; then COMPOSE=docker-compose; else COMPOSE="docker compose"; fi
fi

log() { printf '[replicas-smoke] %s\n' "$*" >&2; }
fail_msg=""
fail() { fail_msg="$*"; log "FAIL: $*"; exit 1; }
t0=$SECONDS

for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is needed"
done

# --- images: build what is missing ----------------------------------------------------
if ! "$DOCKER" image inspect authctl:latest >/dev/null 2>&1; then
  log "authctl:latest is missing: docker/build-image.sh (a release build)"
  "$ROOT/docker/build-image.sh"
fi
if ! "$DOCKER" image inspect "$POSTGRES_IMAGE" >/dev/null 2>&1; then
  [[ "$POSTGRES_IMAGE" == authctl-postgres:* ]] \
    || fail "image $POSTGRES_IMAGE is missing (pull it, or use authctl-postgres:15)"
  IMAGE="$POSTGRES_IMAGE" "$ROOT/docker/postgres-image.sh"
fi
# The balancer's FROM is the local Debian base; its build is compose's own.
IMAGE=debian:bookworm-slim "$ROOT/docker/base-image.sh"

# --- throwaway configuration --------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/authctl-replicas-smoke.XXXXXX")"
ENV_FILE="$WORK/env"
rand() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
{
  echo "POSTGRES_USER=authctl"
  echo "POSTGRES_PASSWORD=$(rand 24)"
  echo "POSTGRES_DB=authctl"
  echo "SECRET_KEY="
  echo "LOG_LEVEL=info"
  echo "AUTHCTL_LOG_FORMAT=json"
  # cheaper hashing: this run is about the stack, not bcrypt
  echo "AUTHCTL_BCRYPT_COST=10"
} >"$ENV_FILE"
chmod 600 "$ENV_FILE"
# compose v1 and v2 both take --env-file for substitution; the shell must not override it
unset POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB SECRET_KEY LOG_LEVEL AUTHCTL_LOG_FORMAT \
      AUTHCTL_BCRYPT_COST AUTHCTL_RATE_LIMIT_ENABLED AUTHCTL_RATE_LIMIT_LOGIN_PER_MINUTE \
      AUTHCTL_RATE_LIMIT_STORE AUTHCTL_TRUSTED_PROXIES
compose() { $COMPOSE --env-file "$ENV_FILE" -f "$ROOT/compose.replicas.yaml" "$@"; }

cleanup() {
  local rc=$?
  if ((rc != 0)); then
    log "state of the failed run:"
    compose ps >&2 || true
    compose logs --no-color --tail=30 >&2 || true
  fi
  log "down -v"
  compose down -v --remove-orphans >/dev/null 2>&1 || compose down -v --remove-orphans >&2 || true
  rm -rf "$WORK"
  # the reason again, last, below the logs
  log "$( ((rc == 0)) && echo PASS || echo "FAIL${fail_msg:+: $fail_msg}" ) in $((SECONDS - t0))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- up ---------------------------------------------------------------------------------
t_build=$SECONDS
compose build lb >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; fail "building the balancer image"; }
log "balancer image (compose build) in $((SECONDS - t_build))s"
log "up -d (3 x authctl:latest + $POSTGRES_IMAGE + HAProxy), project $COMPOSE_PROJECT_NAME"
t_up=$SECONDS
compose up -d --no-build

cid() { compose ps -q "$1"; }
health() {  # the health status of a service's container
  local id
  id="$(cid "$1")"
  [[ -n "$id" ]] || { echo missing; return; }
  "$DOCKER" inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id"
}
lb_servers_up() {  # how many replicas HAProxy's own checks report UP
  compose exec -T lb lb-probe '/stats;csv' 2>/dev/null \
    | awk -F, '$1 == "replicas" && $2 ~ /^authctl-/ && $18 == "UP" { n++ } END { print n + 0 }'
}
deadline=$((SECONDS + TIMEOUT))
while :; do
  states=""; all=1
  for s in postgres "${REPLICAS[@]}" lb; do
    h="$(health "$s")"; states+="$s=$h "
    [[ "$h" == healthy ]] || all=0
    [[ "$h" == unhealthy || "$h" == exited || "$h" == missing ]] && fail "$s is $h"
  done
  if ((all)) && [[ "$(lb_servers_up)" == 3 ]]; then break; fi
  ((SECONDS < deadline)) || fail "not healthy within ${TIMEOUT}s ($states; HAProxy UP: $(lb_servers_up))"
  sleep 1
done
log "all healthy and 3/3 replicas UP in HAProxy after $((SECONDS - t_up))s"

# Only the balancer is published, loopback-only; the replicas publish nothing.
binding="$("$DOCKER" port "$(cid lb)" 8080/tcp)"
[[ "$binding" == "127.0.0.1:$AUTHCTL_PORT" ]] || fail "unexpected port binding of the balancer: $binding"
for s in "${REPLICAS[@]}"; do
  [[ -z "$("$DOCKER" port "$(cid "$s")")" ]] || fail "$s publishes a port"
done

# --- register, log in on each replica, every token on every replica -----------------------
curl_() { curl -sS --max-time 15 -o "$WORK/body" -w '%{http_code}' "$@"; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/body" "$1"; }
user="smoke_$(rand 4)"
pass="smoke-password-$(rand 6)"
run="$(rand 4)"   # request ids of this run: unique even if logs are reused

code="$(curl_ -H 'Content-Type: application/json' -H "X-Request-Id: $run-register" \
  -d "{\"email\":\"$user@example.com\",\"username\":\"$user\",\"password\":\"$pass\"}" \
  "$BASE/api/v1/auth/register")"
[[ "$code" == 201 ]] || fail "register: HTTP $code $(cat "$WORK/body")"
log "register $user: 201"

: >"$WORK/access"
for i in 1 2 3; do
  code="$(curl_ -H "X-Request-Id: $run-login-$i" --data-urlencode "username=$user" \
    --data-urlencode "password=$pass" "$BASE/api/v1/auth/token")"
  [[ "$code" == 200 ]] || fail "login $i: HTTP $code $(cat "$WORK/body")"
  json_field access_token >>"$WORK/access"
  [[ $i == 1 ]] && refresh_before="$(json_field refresh_token)"
done
mapfile -t tokens <"$WORK/access"
for i in 1 2 3; do
  for j in 1 2 3 4 5 6; do
    code="$(curl_ -H "Authorization: Bearer ${tokens[i-1]}" -H "X-Request-Id: $run-me-$i-$j" \
      "$BASE/api/v1/auth/me")"
    [[ "$code" == 200 ]] && grep -q "\"username\":\"$user\"" "$WORK/body" \
      || fail "me with token $i (call $j): HTTP $code $(cat "$WORK/body")"
  done
done

# Which replica served what: each replica's JSON request log lines carry request_id.
served_by() {  # served_by ID -> the replica(s) whose log has a request line with ID
  local s
  for s in "${REPLICAS[@]}"; do
    grep -q "\"request_id\":\"$1\"" "$WORK/log-$s" && printf '%s ' "$s"
  done
  return 0
}
for s in "${REPLICAS[@]}"; do "$DOCKER" logs "$(cid "$s")" >"$WORK/log-$s" 2>&1; done
grep -m1 '"request_id"' "$WORK/log-authctl-1" | python3 -c 'import json,sys; json.loads(sys.stdin.readline())' \
  || fail "authctl-1's request log lines are not JSON"
issuers=""
for i in 1 2 3; do
  issuer="$(served_by "$run-login-$i")"
  [[ "$issuer" == authctl-?" " ]] || fail "login $i: served by '${issuer}' (expected exactly one replica's log line)"
  issuers+="$issuer"
  verifiers=""
  for j in 1 2 3 4 5 6; do
    by="$(served_by "$run-me-$i-$j")"
    [[ "$by" == authctl-?" " ]] || fail "me $i-$j: served by '${by}'"
    verifiers+="$by"
  done
  distinct="$(tr ' ' '\n' <<<"$verifiers" | sort -u | grep -c .)"
  ((distinct == 3)) || fail "token $i was only used on: $(tr ' ' '\n' <<<"$verifiers" | sort -u | xargs)"
  log "token $i issued by ${issuer% }, accepted by all of: $(tr ' ' '\n' <<<"$verifiers" | sort -u | xargs)"
done
[[ "$(tr ' ' '\n' <<<"$issuers" | sort -u | grep -c .)" == 3 ]] \
  || fail "the three logins did not land on three replicas: $issuers"

# --- load while one replica is SIGKILLed, then while another drains ----------------------------
cat >"$WORK/load.py" <<'PY'
"""Bounded load through the balancer while one replica is SIGKILLed (ACTION=kill) or
stopped with SIGTERM (ACTION=stop), then the checks."""
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse

host, port = urllib.parse.urlsplit(os.environ["BASE"]).netloc.split(":")
port = int(port)
workers = int(os.environ.get("WORKERS", "8"))
load_seconds = float(os.environ.get("LOAD_SECONDS", "20"))
kill_after = float(os.environ.get("KILL_AFTER", "6"))
max_requests = int(os.environ.get("MAX_REQUESTS", "40000"))
run = os.environ["RUN"]
tokens = os.environ["TOKENS"].split()
docker = os.environ["DOCKER"]
killed, killed_id = os.environ["TARGET"], os.environ["TARGET_ID"]
action = os.environ["ACTION"]
logins_wanted = int(os.environ.get("LOGINS", "6"))
what = "killed" if action == "kill" else "stopped"

lock = threading.Lock()
results = []  # (request id, method, path, status or None, error or None, start, end)
issued = []   # access tokens issued by logins during the load
counter = iter(range(10**9))
start = time.monotonic()
stop_at = start + load_seconds


def request(conn, method, path, rid, headers=None, body=None):
    """One request; a broken connection is reported as status None and replaced."""
    headers = dict(headers or {}, **{"X-Request-Id": rid})
    t = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        status, error = resp.status, None
        if resp.getheader("connection", "").lower() == "close":
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        data, status, error = b"", None, f"{type(e).__name__}: {e}"
        conn.close()
    with lock:
        results.append((rid, method, path, status, error, t - start, time.monotonic() - start))
    return status, data


def reader(n):
    conn = http.client.HTTPConnection(host, port, timeout=15)
    i = 0
    while time.monotonic() < stop_at:
        k = next(counter)
        if k >= max_requests:
            break
        rid = f"{run}-load-{n}-{i}"
        if i % 2:
            tok = tokens[i % len(tokens)]
            request(conn, "GET", "/api/v1/auth/me", rid, {"Authorization": f"Bearer {tok}"})
        else:
            request(conn, "GET", "/health/liveness", rid)
        i += 1
    conn.close()


def logins():
    """A few logins (POST: never retried by the balancer once sent), spread over the run.
    Six at most, so this run stays under the login limit of 10 per client even with
    shared limits (plus the three logins before)."""
    conn = http.client.HTTPConnection(host, port, timeout=15)
    body = urllib.parse.urlencode({"username": os.environ["SMOKE_USER"], "password": os.environ["SMOKE_PASS"]})
    for i in range(logins_wanted):
        status, data = request(conn, "POST", "/api/v1/auth/token", f"{run}-loadlogin-{i}",
                               {"Content-Type": "application/x-www-form-urlencoded"}, body)
        if status == 200:
            issued.append(json.loads(data)["access_token"])
        time.sleep(load_seconds / 7)
    conn.close()


threads = [threading.Thread(target=reader, args=(n,)) for n in range(workers)]
threads.append(threading.Thread(target=logins))
for t in threads:
    t.start()
time.sleep(kill_after)
kill_at = time.monotonic() - start
# `docker stop` blocks while the replica drains: run it beside the load.
cmd = ([docker, "kill", "-s", "KILL", killed_id] if action == "kill"
       else [docker, "stop", "-t", "10", killed_id])
stopper = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
for t in threads:
    t.join(timeout=load_seconds + 30)
if any(t.is_alive() for t in threads):
    sys.exit("FAIL: load threads did not finish in time")
if stopper.wait(timeout=30) != 0:
    sys.exit(f"FAIL: {' '.join(cmd)} failed")

failures = []
gets = [r for r in results if r[1] == "GET"]
posts = [r for r in results if r[1] == "POST"]
after_kill = [r for r in results if r[5] >= kill_at]
bad_gets = [r for r in gets if r[3] != 200]

# A failed POST is allowed only if HAProxy sent it to the killed replica (it may have
# reached the handler, so the balancer rightly did not re-send it).
lb_log = subprocess.run([docker, "logs", os.environ["LB_ID"]], capture_output=True, text=True).stdout
sent_to = {}
retried = 0
for line in lb_log.splitlines():
    m = re.search(r" replicas/(\S+) .* \S+/\S+/\S+/\S+/(\+?)(\d+) .*\{([^}]*)\}", line)
    if m:
        sent_to[m.group(4)] = m.group(1)
        if int(m.group(3)) > 0:
            retried += 1
bad_posts = [r for r in posts if r[3] != 200 and sent_to.get(r[0]) != killed]
excused_posts = [r for r in posts if r[3] != 200 and sent_to.get(r[0]) == killed]

latency = sorted(r[6] - r[5] for r in gets)
def pct(p):
    return latency[min(len(latency) - 1, int(p * len(latency)))] * 1000 if latency else 0.0

print(f"[replicas-smoke] {action}: {len(results)} requests in {max((r[6] for r in results), default=0):.1f}s "
      f"({len(gets)} GET, {len(posts)} POST), {action} {killed} at {kill_at:.1f}s, {len(after_kill)} requests after it; "
      f"GET latency p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {pct(1.0):.0f} ms; "
      f"{retried} requests retried by HAProxy", file=sys.stderr)
if len(gets) < 200:
    failures.append(f"only {len(gets)} GET requests were made; the load did not run")
if len(after_kill) < 50:
    failures.append(f"only {len(after_kill)} requests after the {action}")
for r in bad_gets[:10]:
    failures.append(f"GET {r[2]} ({r[0]}) at {r[5]:.2f}s failed: {r[3] or r[4]}")
if len(bad_gets) > 10:
    failures.append(f"... {len(bad_gets)} failed GET requests in all")
for r in bad_posts:
    failures.append(f"POST {r[2]} ({r[0]}) failed ({r[3] or r[4]}) but was sent to "
                    f"{sent_to.get(r[0], 'no replica')}, not the {what} {killed}")
for r in excused_posts:
    print(f"[replicas-smoke] POST {r[0]} failed ({r[3] or r[4]}): it was in flight on the {what} replica",
          file=sys.stderr)

# Nothing issued is lost: every access token (from before and during the load) still
# works, and the refresh token from before the kill still refreshes.
conn = http.client.HTTPConnection(host, port, timeout=15)
for n, tok in enumerate(tokens + issued):
    status, _ = request(conn, "GET", "/api/v1/auth/me", f"{run}-after-{n}", {"Authorization": f"Bearer {tok}"})
    if status != 200:
        failures.append(f"access token {n} no longer works after the {action}: {status}")
refreshed = "not checked"
if os.environ.get("REFRESH_BEFORE"):
    # once only: a refresh token is spent when used
    status, data = request(conn, "POST", "/api/v1/auth/refresh", f"{run}-refresh-after",
                           {"Content-Type": "application/json"},
                           json.dumps({"refresh_token": os.environ["REFRESH_BEFORE"]}))
    if status != 200:
        failures.append(f"the refresh token issued before the {action} does not refresh: {status} {data[:200]!r}")
    refreshed = str(status == 200)
print(f"[replicas-smoke] after the {action}: {len(tokens) + len(issued)} access tokens "
      f"({len(issued)} issued during the load) all work; the earlier refresh token refreshes: "
      f"{refreshed}", file=sys.stderr)

if failures:
    for f in failures:
        print(f"[replicas-smoke] FAIL: {f}", file=sys.stderr)
    sys.exit(1)
PY

# load_with ACTION SERVICE SECONDS AFTER LOGINS [REFRESH_TOKEN]: load through the balancer;
# AFTER seconds in, `kill` (SIGKILL) or `stop` (SIGTERM, drain) SERVICE; then the checks.
load_with() {
  local id
  id="$(cid "$2")"
  [[ -n "$id" ]] || fail "no container for $2"
  log "load: ${WORKERS:-8} workers, ${3}s at most; $1 $2 after ${4}s"
  ACTION="$1" TARGET="$2" TARGET_ID="$id" LOAD_SECONDS="$3" KILL_AFTER="$4" LOGINS="$5" \
    REFRESH_BEFORE="${6:-}" RUN="$run-$1" python3 "$WORK/load.py" \
    || fail "the $1 run or its checks failed (the reasons are above)"
  log "$2 afterwards: $("$DOCKER" inspect -f '{{.State.Status}} (exit {{.State.ExitCode}}, restarts: {{.RestartCount}})' "$id"); HAProxy UP: $(lb_servers_up)/3"
}
export BASE WORK SMOKE_USER="$user" SMOKE_PASS="$pass" LB_ID="$(cid lb)" TOKENS="${tokens[*]}"
load_with kill "$KILL" "${LOAD_SECONDS:-20}" "${KILL_AFTER:-6}" 6 "$refresh_before"
# SIGTERM: readiness 503, no new connections, requests in flight finish, exit 0.
load_with stop "$STOP" "${DRAIN_SECONDS:-10}" 3 0
code="$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$(cid "$STOP")")"
[[ "$code" == 0 ]] || fail "$STOP exited $code on SIGTERM (expected a clean 0)"

# --- a forged X-Forwarded-For does not buy a fresh rate-limit key ----------------------------
# Logins with a wrong password, each with another forged address. The limit is 10 per
# client and minute on each replica (once in all with shared limits), so a 429 must come
# within 3 x 10 + 1 attempts, plus a margin for the GCRA refill (one every 6 s) during
# these ~3 s: the balancer drops the client's header and writes its own.
limited=0
for n in $(seq 1 40); do
  code="$(curl_ -H "X-Forwarded-For: 198.51.100.$n" -H "X-Request-Id: $run-forged-$n" \
    --data-urlencode "username=$user" --data-urlencode "password=wrong-$n" "$BASE/api/v1/auth/token")"
  case "$code" in
    429) limited=$n; break ;;
    401) ;;
    *) fail "forged login $n: HTTP $code $(cat "$WORK/body")" ;;
  esac
done
((limited > 0)) || fail "40 logins with forged X-Forwarded-For were never limited: clients pick their own key"
log "forged X-Forwarded-For: still limited (429 at attempt $limited)"

# --- a forged X-Forwarded-Host / -Proto does not bend the RFC 8414 metadata -----------------
# AUTHCTL_ISSUER is empty here, so the document's URLs come from the request: the
# balancer drops the client's X-Forwarded-Host and -Proto and sets the scheme itself.
code="$(curl_ -H "X-Forwarded-Host: evil.example" -H "X-Forwarded-Proto: https" \
  "$BASE/.well-known/oauth-authorization-server")"
[[ "$code" == 200 ]] || fail "metadata: HTTP $code $(cat "$WORK/body")"
endpoint="$(json_field token_endpoint)"
[[ "$endpoint" == "$BASE/api/v1/auth/token" ]] ||
  fail "metadata names $endpoint: a client's X-Forwarded-Host/-Proto went through the balancer"
log "forged X-Forwarded-Host/-Proto: metadata still names $endpoint"

log "summary: 3 replicas behind HAProxy; tokens from each replica accepted by all; SIGKILL and SIGTERM under load failed no GET; project $COMPOSE_PROJECT_NAME"
