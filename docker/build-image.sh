#!/usr/bin/env bash
# Build authctl:latest without a registry: the binary is built on the host and packed
# into the Dockerfile's runtime stage (AUTHCTL_BINARY_FROM=prebuilt).
#
#   1. the local debian:bookworm-slim base (docker/base-image.sh; skipped if present)
#   2. cargo build --release --locked (a no-op when nothing changed)
#   3. BuildKit build of target "runtime" from the prebuilt binary (cached layers)
#
# The host binary links glibc dynamically; it must not need a newer glibc than
# bookworm's 2.36. The Dockerfile's rootfs stage runs it inside bookworm and fails the
# build if it does not run there. (Build on a bookworm host or container then.)
#
# Env: DOCKER (default /usr/bin/docker: needs BuildKit), IMAGE (default authctl:latest),
#      CARGO (default cargo), SKIP_CARGO=1 (use target/release/authctl as it is),
#      NO_CACHE=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-authctl:latest}"
CARGO="${CARGO:-cargo}"
if [[ -z "${DOCKER:-}" ]]; then
  if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
export DOCKER

log() { printf '[build-image] %s\n' "$*" >&2; }
t0=$SECONDS

"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
  log "cannot talk to the Docker daemon with $DOCKER"; exit 1; }

# IMAGE names our image; the base keeps its own name (the Dockerfile FROMs it)
IMAGE=debian:bookworm-slim "$ROOT/docker/base-image.sh"

cd "$ROOT"
if [[ "${SKIP_CARGO:-0}" != 1 ]]; then
  t1=$SECONDS
  log "cargo build --release --locked --bin authctl"
  "$CARGO" build --release --locked --bin authctl
  log "cargo took $((SECONDS - t1))s"
fi
BIN=target/release/authctl
[[ -x "$BIN" ]] || { log "$BIN is missing"; exit 1; }

# Labels that stay the same for the same commit, so an unchanged tree gives the same
# image (created = commit time, not build time).
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "$REVISION" != unknown ]] && ! git diff --quiet HEAD -- 2>/dev/null; then
  REVISION="$REVISION-dirty"
fi
CREATED="$(git log -1 --format=%cI 2>/dev/null || echo unknown)"
VERSION="$("$BIN" --version 2>/dev/null | awk '{print $2}')"

args=(build
  --build-arg AUTHCTL_BINARY_FROM=prebuilt
  --build-arg "AUTHCTL_BINARY_DIR=$(dirname "$BIN")"
  --build-arg "VERSION=${VERSION:-unknown}"
  --build-arg "REVISION=$REVISION"
  --build-arg "CREATED=$CREATED"
  --target runtime
  --tag "$IMAGE")
[[ "${NO_CACHE:-0}" == 1 ]] && args+=(--no-cache)
[[ -n "${PROGRESS:-}" ]] && args+=(--progress "$PROGRESS")

t2=$SECONDS
# BuildKit: only the stages "runtime" needs (prebuilt, rootfs) are built, so the
# registry-only Rust image of the from-source stage is never pulled. No --pull.
DOCKER_BUILDKIT=1 "$DOCKER" "${args[@]}" .
log "docker build took $((SECONDS - t2))s; total $((SECONDS - t0))s"
"$DOCKER" image ls "$IMAGE" >&2
