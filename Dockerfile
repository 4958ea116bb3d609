# authctl container image.
#
# Two ways to get the binary, ONE runtime stage:
#
#   From source (needs a registry for the Rust image; `docker build .` does it):
#       docker build -t authctl:latest .
#
#   Offline, from a binary built on the host (needs BuildKit, no registry):
#       cargo build --release --locked
#       DOCKER_BUILDKIT=1 docker build --build-arg AUTHCTL_BINARY_FROM=prebuilt \
#           --target runtime -t authctl:latest .
#     or simply `make image` (docker/build-image.sh), which also creates the local
#     debian:bookworm-slim base with docker/base-image.sh when it is missing.
#
# BuildKit builds only the stages the target needs, so the prebuilt path never touches
# ${RUST_IMAGE}. The legacy builder builds every stage and would try to pull it: use
# BuildKit (DOCKER_BUILDKIT=1; Debian's /usr/bin/docker has it, a client without
# BuildKit does not).
#
# The runtime image is `scratch` plus: the binary, the shared libraries `ldd` lists
# for it (from Debian bookworm's libc6 / libgcc-s1, with their copyright files),
# Debian's CA bundle, a minimal /etc/passwd, /etc/group and /etc/nsswitch.conf, /tmp
# and /data. No shell, no package manager, no coreutils. The binary must not need a
# newer glibc than bookworm's 2.36: the rootfs stage runs it and fails otherwise.
#
# No "# syntax=" line on purpose: it would make BuildKit pull a frontend image.

# Where the binary comes from: "builder" (compile here) or "prebuilt" (host binary).
ARG AUTHCTL_BINARY_FROM=builder
# Rust >= 1.94 (sqlx 0.9). Official image on a machine with a registry.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
# Debian bookworm: the official image, or the local stand-in docker/base-image.sh makes.
ARG BASE_IMAGE=debian:bookworm-slim

# ---- builder: compile from source ------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Only what the crate needs to build (see also .dockerignore, an allow-list).
COPY Cargo.toml Cargo.lock build.rs ./
# Build settings (the bundled SQLite's compile flags).
COPY .cargo ./.cargo
COPY migrations ./migrations
COPY assets ./assets
COPY src ./src
# The workspace's other members: cargo loads every member's manifest even to build one.
COPY bench ./bench
COPY crates ./crates
RUN cargo build --release --locked --bin authctl \
 && install -D -m 0755 target/release/authctl /out/authctl

# ---- prebuilt: a binary built on the host --------------------------------------------
FROM scratch AS prebuilt
# Directory in the build context that holds `authctl` (.dockerignore lets only
# target/release/authctl in; allow your directory there if you change this).
ARG AUTHCTL_BINARY_DIR=target/release
# "authct[l]" may match nothing: the legacy builder builds every stage, also on the
# from-source path where no host binary exists. (Cargo.toml just makes the source
# list non-empty.) With AUTHCTL_BINARY_FROM=prebuilt the rootfs stage fails if the
# binary is missing.
COPY Cargo.toml ${AUTHCTL_BINARY_DIR}/authct[l] /out/

# ---- binary: whichever of the two was chosen ---------------------------------------------
FROM ${AUTHCTL_BINARY_FROM} AS binary

# ---- rootfs: assemble the runtime filesystem from Debian bookworm -----------------------
FROM ${BASE_IMAGE} AS rootfs
# CA roots: `authctl health --url https://…` verifies servers against the system
# bundle (plain-http probes, the HEALTHCHECK's, need none). Before the binary is
# copied, so this layer stays cached.
RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    test -s /etc/ssl/certs/ca-certificates.crt
COPY --from=binary /out/authctl /rootfs/usr/local/bin/authctl
RUN set -eu; \
    bin=/rootfs/usr/local/bin/authctl; \
    chmod 0755 "$bin"; \
    # fails here, not at run time, if the binary needs a newer glibc than bookworm's
    "$bin" --version; \
    # merged /usr like the base: /lib, /lib64 (and /bin...) are links into /usr
    for d in bin sbin lib lib64; do \
      if [ -L "/$d" ]; then mkdir -p "/rootfs/$(readlink "/$d")"; ln -s "$(readlink "/$d")" "/rootfs/$d"; fi; \
    done; \
    # the shared libraries and the dynamic loader that ldd lists, at the same paths
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do \
      real="$(readlink -f "$lib")"; \
      mkdir -p "/rootfs$(dirname "$lib")" "/rootfs$(dirname "$real")"; \
      cp -a "$real" "/rootfs$real"; \
      [ -e "/rootfs$lib" ] || cp -a "$lib" "/rootfs$lib"; \
      pkg="$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || true)"; \
      pkg="$(printf '%s\n' "$pkg" | head -n1 | cut -d: -f1)"; \
      if [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ]; then \
        mkdir -p "/rootfs/usr/share/doc/$pkg"; \
        cp "/usr/share/doc/$pkg/copyright" "/rootfs/usr/share/doc/$pkg/copyright"; \
      fi; \
    done; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/data /rootfs/usr/share/doc/ca-certificates; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt; \
    cp /usr/share/doc/ca-certificates/copyright /rootfs/usr/share/doc/ca-certificates/copyright; \
    chmod 1777 /rootfs/tmp; \
    # the volume's mount point belongs to the service user (a new named volume copies it)
    chown 10001:10001 /rootfs/data; chmod 0750 /rootfs/data; \
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nauthctl:x:10001:10001:authctl:/data:/usr/sbin/nologin\n' > /rootfs/etc/passwd; \
    printf 'root:x:0:\nauthctl:x:10001:\n' > /rootfs/etc/group; \
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' > /rootfs/etc/nsswitch.conf; \
    # the assembled tree must run on its own (chroot: no library from outside it)
    chroot /rootfs /usr/local/bin/authctl --version; \
    find /rootfs \( -type f -o -type l \) -exec ls -ld {} +

# ---- runtime: the image that ships (same for both paths) -------------------------------
FROM scratch AS runtime
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
# BuildKit keeps the owners set in rootfs (root everywhere, 10001 on /data)
COPY --from=rootfs /rootfs/ /

LABEL org.opencontainers.image.title="authctl" \
      org.opencontainers.image.description="JWT authentication REST API (warp) and its operator CLI, in one binary" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.base.name="scratch" \
      local.authctl.runtime-files="glibc, libgcc_s and the CA bundle, copied from the Debian bookworm base image the build used"

ENV AUTHCTL_BIND=0.0.0.0:8000 \
    DATABASE_URL=sqlite:///data/authctl.db

USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8000

# `authctl health` probes http://127.0.0.1:<port of AUTHCTL_BIND>/health/readiness.
# Change the port with AUTHCTL_BIND, not `serve --bind`, so this probe follows it.
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/authctl", "health"]

# authctl handles SIGTERM itself (PID 1): stops accepting, drains, closes the pool, exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/authctl"]
CMD ["serve"]
