#!/usr/bin/env bash
# Build authctl-postgres:15 (PostgreSQL 15 from Debian bookworm) from docker/postgres/.
# Builds the local debian:bookworm-slim base first if it is missing (base-image.sh).
# Re-running is cheap: BuildKit's layer cache makes an unchanged build a no-op.
# Env: DOCKER (default /usr/bin/docker, whose BuildKit skips registry pulls for local
# images), IMAGE (default authctl-postgres:15), NO_CACHE=1 to rebuild from scratch.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE="${IMAGE:-authctl-postgres:15}"
if [[ -z "${DOCKER:-}" ]]; then
  if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
export DOCKER

# IMAGE names this script's image; the base keeps its own name (the Dockerfile FROMs it)
IMAGE=debian:bookworm-slim "$HERE/base-image.sh"

args=(build --tag "$IMAGE" --label "local.authctl.built-by=docker/postgres-image.sh")
[[ "${NO_CACHE:-0}" == 1 ]] && args+=(--no-cache)
t0=$SECONDS
# --pull is never passed: there is no registry; FROM uses the local base image.
DOCKER_BUILDKIT=1 "$DOCKER" "${args[@]}" "$HERE/postgres"
printf '[postgres-image] %s built in %ss\n' "$IMAGE" "$((SECONDS - t0))" >&2
"$DOCKER" image ls "$IMAGE" >&2
