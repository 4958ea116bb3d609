#!/usr/bin/env bash
# Checks the OpenAPI document against a real validator and fuzzes a live server with it.
#
#   1. `authctl openapi > target/openapi.json`, validated by openapi-spec-validator;
#   2. `authctl serve` on a free 127.0.0.1 port (temporary SQLite database, bcrypt cost 4,
#      rate limits off, a test key), then schemathesis against it, with that document:
#      no 5xx, every status / content type / header / body as documented, invalid input
#      refused, wrong methods 405 with Allow, /me refusing missing or bad tokens, and
#      stateful runs along the document's links (register → login → refresh → revoke).
#
# Python tools are installed, pinned, in target/ci-venv (PyPI must be reachable the first
# time). Knobs: OPENAPI_CHECK_EXAMPLES (per operation, default 100),
# OPENAPI_CHECK_SEED (reproduce a run), OPENAPI_CHECK_SKIP_BUILD=1 (use the binary as is).
# Exit status: non-zero on any failure.
set -euo pipefail

OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${OPENAPI_CHECK_EXAMPLES:-100}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=$root/target/ci-venv
bin=$root/target/debug/authctl
doc=$root/target/openapi.json
report_dir=$root/target/schemathesis

say() { printf '\n==> %s\n' "$*"; }

# ----- tools ---------------------------------------------------------------------------
say "Python tools (openapi-spec-validator $OPENAPI_SPEC_VALIDATOR_VERSION, schemathesis $SCHEMATHESIS_VERSION)"
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" - "$OPENAPI_SPEC_VALIDATOR_VERSION" "$SCHEMATHESIS_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("openapi-spec-validator"), version("schemathesis")) == tuple(sys.argv[1:3]) else 1)
EOF
then
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" \
        "schemathesis==$SCHEMATHESIS_VERSION"
fi

# ----- the document --------------------------------------------------------------------
if [[ ${OPENAPI_CHECK_SKIP_BUILD:-0} != 1 ]]; then
    say "cargo build --locked --bin authctl"
    cargo build --locked --bin authctl
fi
tmp=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Commands run in $tmp so that no ./.env or ./authctl.toml of the checkout applies.
say "authctl openapi > target/openapi.json"
(cd "$tmp" && "$bin" openapi) > "$doc"
say "openapi-spec-validator"
"$venv/bin/openapi-spec-validator" "$doc"

# ----- the server ----------------------------------------------------------------------
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export DATABASE_URL="sqlite://$tmp/authctl.db"
export SECRET_KEY=ci-openapi-check-key-0123456789abcdefghij
export AUTHCTL_BCRYPT_COST=4
export AUTHCTL_RATE_LIMIT_ENABLED=false
export AUTHCTL_BIND=127.0.0.1:$port
export AUTHCTL_LOG_FORMAT=text
export LOG_LEVEL=info
# Email on, to files: /verify/request and /recover then answer their documented 202
# (without email.url they are 501 by design, which this check counts as a 5xx).
export AUTHCTL_EMAIL_URL="file://$tmp/mail"
export AUTHCTL_EMAIL_FROM="authctl <ci@example.com>"
# Lockout off: fuzzed wrong current passwords (password change, MFA enrolment) would
# lock the fuzz user whose token the Bearer operations need; lockout has its own tests.
export AUTHCTL_LOCKOUT_THRESHOLD=0

say "authctl serve on $base"
(cd "$tmp" && exec "$bin" serve) > "$tmp/server.log" 2>&1 &
server_pid=$!
ready=0
for _ in $(seq 1 150); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        break
    fi
    if (cd "$tmp" && "$bin" health --url "$base" --check readiness --timeout 1s) >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.2
done
if [[ $ready != 1 ]]; then
    echo "error: the server did not become ready; its log:" >&2
    cat "$tmp/server.log" >&2
    exit 1
fi
# Log lines up to here are startup (readiness is 503 until it is done).
startup_lines=$(wc -l < "$tmp/server.log")

# A user for the Bearer scheme: schemathesis logs in as it before testing /me.
password=ci-openapi-check-password
printf '%s\n' "$password" |
    (cd "$tmp" && "$bin" user add --email fuzz@example.com --username fuzz --password-stdin) >/dev/null

cat > "$tmp/schemathesis.toml" <<EOF
[auth.dynamic.openapi.bearer]
path = "/api/v1/auth/token"
payload = { username = "fuzz", password = "$password" }
payload_content_type = "application/x-www-form-urlencoded"
extract_selector = "/access_token"

# 411 (a chunked body; the API wants a Content-Length) and 413 are refusals too.
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 411, 413, 415, 422, 428, 429, "5xx"]

[warnings]
fail-on = ["unused_openapi_auth", "unresolvable_reference", "unsupported_regex", "missing_deserializer", "base_url_mismatch"]
EOF

# positive_data_acceptance is left out: JSON Schema cannot say "at most 72 bytes of UTF-8"
# (the password limit) nor pin down one email syntax, so a schema-valid value may
# rightly be a 422.
seed_args=()
if [[ -n ${OPENAPI_CHECK_SEED:-} ]]; then
    seed_args=(--seed "$OPENAPI_CHECK_SEED")
fi
# Both runs together get at most 300 s.
deadline=$((SECONDS + 300))
fuzz() {
    local name=$1 examples=$2 left=$((deadline - SECONDS))
    shift 2
    if ((left < 10)); then
        echo "error: no time left for schemathesis run '$name'" >&2
        return 124
    fi
    (cd "$tmp" && timeout "$left" "$venv/bin/schemathesis" --config-file "$tmp/schemathesis.toml" \
        run "$doc" \
        --url "$base" \
        --checks all \
        --exclude-checks positive_data_acceptance \
        --max-examples "$examples" \
        --workers 2 \
        --generation-database none \
        --request-timeout 10 \
        --report junit --report-junit-path "$report_dir/junit-$name.xml" \
        "${seed_args[@]}" "$@")
}
# A run that found nothing but died of CPython 3.11's "AST constructor recursion depth
# mismatch" (a SystemError inside hypothesis's lambda pretty-printer, not a finding
# about the API) is run once more; a second such crash, or any real failure, fails.
python_crash_only() {
    grep -q 'AST constructor recursion depth mismatch' "$1" &&
        ! grep -q '^=* FAILURES =*$' "$1" &&
        grep -Eq '^ *[0-9]+ generated, [0-9]+ passed' "$1" &&
        ! grep -Eq '(^|[^0-9])[1-9][0-9]* failed' "$1"
}
status=0
# 1. Every phase (examples, coverage, fuzzing, stateful) with any Unicode.
say "schemathesis: all phases, $EXAMPLES examples per operation"
fuzz all "$EXAMPLES" 2>&1 | tee "$tmp/fuzz-all.log" || status=${PIPESTATUS[0]}
if [[ $status != 0 ]] && python_crash_only "$tmp/fuzz-all.log"; then
    say "schemathesis crashed in CPython (not an API finding): running it once more"
    status=0
    fuzz all "$EXAMPLES" 2>&1 | tee "$tmp/fuzz-all-2.log" || status=${PIPESTATUS[0]}
fi
# 2. The stateful phase again with ASCII strings, so that most registrations succeed
#    and the links (register → login → refresh → revoke) run with real tokens: with
#    any Unicode most generated passwords exceed 72 bytes and the chains stop early.
if [[ $status == 0 ]]; then
    say "schemathesis: stateful token flows, ASCII data"
    fuzz stateful $((EXAMPLES * 3)) --phases stateful --generation-codec ascii || status=$?
fi

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "error: the server died during the run; its log:" >&2
    cat "$tmp/server.log" >&2
    exit 1
fi
if tail -n +"$((startup_lines + 1))" "$tmp/server.log" | grep 'status=5[0-9][0-9]' >&2; then
    echo "error: the server answered 5xx during the run (above)" >&2
    status=1
fi
if [[ $status != 0 ]]; then
    if [[ $status == 124 ]]; then
        echo "error: schemathesis did not finish within 300 s in all" >&2
    fi
    echo "error: the OpenAPI check failed (schemathesis exit $status); JUnit reports in $report_dir" >&2
    exit "$status"
fi
say "OpenAPI document valid, schemathesis found no issues"
