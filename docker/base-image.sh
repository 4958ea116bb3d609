#!/usr/bin/env bash
# Build a local Debian bookworm base image tagged debian:bookworm-slim.
#
# No container registry is reachable here, so `FROM debian:bookworm-slim` cannot be
# pulled. This script makes a stand-in: a `debootstrap --variant=minbase bookworm`
# rootfs from the Debian mirror this machine's apt already uses, imported with
# `docker import`. It is NOT the official image (see the image's labels).
#
# Idempotent: exits at once when the image already exists (FORCE=1 rebuilds).
# Needs root (debootstrap). Env overrides:
#   DOCKER=/usr/bin/docker   docker client to use
#   DEBIAN_MIRROR=URL        mirror to use instead of the one read from apt's sources
#   IMAGE=debian:bookworm-slim
set -euo pipefail

IMAGE="${IMAGE:-debian:bookworm-slim}"
SUITE=bookworm
if [[ -z "${DOCKER:-}" ]]; then
  if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi

log() { printf '[base-image] %s\n' "$*" >&2; }

if [[ "${FORCE:-0}" != 1 ]] && "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already exists; skipping (FORCE=1 to rebuild)"
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  log "debootstrap needs root"; exit 1
fi

# --- Find the Debian mirror apt uses on this machine -------------------------------
# Reads one-line sources (/etc/apt/sources.list, sources.list.d/*.list) and deb822
# sources (sources.list.d/*.sources). Picks the first enabled `deb` entry whose
# suites include "$SUITE" (the main archive), and the first one with
# "$SUITE-security" (the security archive, optional). Prints "main|security|file".
find_mirrors() {
  local files=() f
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && files+=("$f")
  done
  ((${#files[@]})) || return 1
  awk -v suite="$SUITE" '
    function consider(types, uris, suites, enabled, file,   n, i, s, u, nu, t, isdeb) {
      if (tolower(enabled) == "no") return
      isdeb = 0; n = split(types, t, /[ \t]+/)
      for (i = 1; i <= n; i++) if (t[i] == "deb") isdeb = 1
      if (!isdeb) return
      nu = split(uris, u, /[ \t]+/)
      n = split(suites, s, /[ \t]+/)
      for (i = 1; i <= n; i++) {
        if (s[i] == suite && main == "")               { main = u[1]; mainfile = file }
        if (s[i] == suite "-security" && sec == "")    { sec = u[1] }
      }
    }
    function flush() {
      if (ptypes != "") consider(ptypes, puris, psuites, penabled, pfile)
      ptypes = puris = psuites = penabled = ""
    }
    FNR == 1 { flush() }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      if ($0 ~ /^[ \t]*#/) next
      if (match($0, /^[A-Za-z-]+:/)) {
        key = tolower(substr($0, 1, RLENGTH - 1)); val = substr($0, RLENGTH + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (key == "types") ptypes = val
        else if (key == "uris") puris = val
        else if (key == "suites") psuites = val
        else if (key == "enabled") penabled = val
        pfile = FILENAME
      }
      next
    }
    {   # one-line format: deb [opts] URI suite comp...
      line = $0; sub(/#.*/, "", line)
      n = split(line, w, /[ \t]+/); if (w[1] == "") { for (i = 1; i < n; i++) w[i] = w[i+1]; n-- }
      if (w[1] != "deb") next
      i = 2
      if (w[i] ~ /^\[/) { while (i <= n && w[i] !~ /\]$/) i++; i++ }
      consider("deb", w[i], w[i+1], "yes", FILENAME)
    }
    END { flush(); if (main == "") exit 1; print main "|" sec "|" mainfile }
  ' "${files[@]}"
}

if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
  MIRROR="$DEBIAN_MIRROR"; SEC_MIRROR=""; MIRROR_SRC="DEBIAN_MIRROR env"
else
  if ! found="$(find_mirrors)"; then
    log "no 'deb' source for suite $SUITE found in /etc/apt; set DEBIAN_MIRROR"; exit 1
  fi
  IFS='|' read -r MIRROR SEC_MIRROR MIRROR_SRC <<<"$found"
fi
MIRROR="${MIRROR%/}"; SEC_MIRROR="${SEC_MIRROR%/}"
log "mirror: $MIRROR (from $MIRROR_SRC)${SEC_MIRROR:+; security: $SEC_MIRROR}"

# --- debootstrap ------------------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/authctl-rootfs.XXXXXX")"
cleanup() {
  # debootstrap mounts proc/sys while it runs; never rm -rf through a live mount
  local m
  for m in "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/dev/pts"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
  if ! grep -q " ${ROOTFS}/" /proc/mounts; then rm -rf --one-file-system "$ROOTFS"; fi
}
trap cleanup EXIT

t0=$SECONDS
log "debootstrap --variant=minbase $SUITE $ROOTFS $MIRROR"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
  tail -n 30 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
log "debootstrap took $((SECONDS - t0))s"

# --- configure apt in the rootfs -----------------------------------------------------
{
  echo "deb $MIRROR $SUITE main"
  echo "deb $MIRROR $SUITE-updates main"
  [[ -n "$SEC_MIRROR" ]] && echo "deb $SEC_MIRROR $SUITE-security main"
} >"$ROOTFS/etc/apt/sources.list"
rm -f "$ROOTFS"/etc/apt/sources.list.d/*

# Same settings as the official image: no package cache, no translations.
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
echo 'Acquire::Languages "none";' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
# If this machine's apt accepts expired Release files (a snapshot-backed mirror),
# the image must too, or `apt-get update` in builds can fail once they expire.
if apt-config dump 2>/dev/null | grep -qi '^Acquire::Check-Valid-Until "false"'; then
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' \
    >"$ROOTFS/etc/apt/apt.conf.d/99mirror-snapshot"
fi

# --- clean -----------------------------------------------------------------------------
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* \
       "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/log/bootstrap.log \
       "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
mkdir -p "$ROOTFS/var/lib/apt/lists/partial" "$ROOTFS/var/cache/apt/archives/partial"
# host-specific files debootstrap copied in; docker bind-mounts its own
: >"$ROOTFS/etc/resolv.conf"; : >"$ROOTFS/etc/hostname"

# --- import ------------------------------------------------------------------------------
t1=$SECONDS
log "importing as $IMAGE"
tar --numeric-owner --xattrs -C "$ROOTFS" -c . | "$DOCKER" import \
  --change 'CMD ["bash"]' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL org.opencontainers.image.description=\"Local stand-in for $IMAGE: debootstrap --variant=minbase $SUITE from $MIRROR, built by authctl docker/base-image.sh. NOT the official Docker Hub image.\"" \
  --change 'LABEL local.authctl.built-by="debootstrap"' \
  --change "LABEL local.authctl.mirror=\"$MIRROR\"" \
  --message "debootstrap --variant=minbase $SUITE $MIRROR (local build, not the official image)" \
  - "$IMAGE" >/dev/null
log "import took $((SECONDS - t1))s; total $((SECONDS - t0))s"
"$DOCKER" image ls "$IMAGE" >&2
