# syntax=docker/dockerfile:1
#
# Brook's container image: brook-broker (the default command), the `brook` CLI and
# brook-connect, on a distroless glibc base, running as a non-root user.
#
#   docker build -t brook .
#   docker run -p 7400:7400 -p 7401:7401 -v brook-data:/var/lib/brook brook
#   docker run --rm --network host brook brook topic list
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.
# scripts/validate-deploy.sh checks that every `-p CRATE` below is a workspace member.

# ---------------------------------------------------------------------------------------------
# Builder. Bookworm, like the runtime stage, so the binaries need no newer glibc than
# Debian 12's. The rust image (buildpack-deps) already has gcc, make, perl and pkg-config:
# rdkafka builds librdkafka from source with its own configure script and make (no cmake
# unless rdkafka's `cmake-build` feature is turned on).
# The toolchain the test suite runs with (the workspace needs 1.89 or newer).
ARG RUST_VERSION=1.95.0
FROM rust:${RUST_VERSION}-bookworm AS builder

WORKDIR /src

# LIBZ_SYS_STATIC: zlib (libz-sys, used by librdkafka) is linked statically, since the
# distroless runtime has no libz.so.1; without it libz-sys links the builder's system zlib
# dynamically. CARGO_PROFILE_RELEASE_*: the workspace's release profile keeps line tables
# (debug = 1) for profiling, which the image does not need; symbols stay, so panics still
# print readable backtraces.
ENV LIBZ_SYS_STATIC=1 \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never

COPY . .

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p brook-broker -p brook-client -p brook-connectors \
 && mkdir -p /out/bin /out/data \
 && cp target/release/brook-broker target/release/brook target/release/brook-connect /out/bin/

# ---------------------------------------------------------------------------------------------
# Runtime: glibc, libgcc and CA certificates, no shell, no package manager. The binaries link
# only libc, libm and libgcc_s (librdkafka, zstd and zlib are static).
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /out/bin/ /usr/local/bin/
# The data directory, owned by the image's non-root user (uid 65532), so a fresh named volume
# mounted here (which Docker initialises from the image) is writable by the broker.
COPY --from=builder --chown=65532:65532 /out/data/ /var/lib/brook/

USER 65532:65532
WORKDIR /var/lib/brook
VOLUME ["/var/lib/brook"]

# The broker's settings from the environment (BROOK_<SECTION>_<KEY>, see
# broker/brook-broker.example.toml): reachable from outside the container, data on the
# volume. They beat a --config file; flags (--listen, --data-dir, --node-id) beat them.
ENV BROOK_SERVER_LISTEN=0.0.0.0:7400 \
    BROOK_SERVER_HTTP_LISTEN=0.0.0.0:7401 \
    BROOK_SERVER_DATA_DIR=/var/lib/brook

# 7400 gRPC (brook-broker), 7401 HTTP /health /ready /metrics (brook-broker),
# 7501 HTTP /health /metrics (brook-connect, when run with http.listen = "0.0.0.0:7501").
EXPOSE 7400 7401 7501

# No HEALTHCHECK: distroless has no shell or curl, and the same image also runs brook-connect
# and one-shot `brook` commands. Probe the broker from outside instead: GET :7401/health (200
# while the process runs) or :7401/ready (200 while serving); or, inside the container,
# `brook cluster status` (exec form; docker-compose.yml's broker healthcheck does this).
# SIGTERM (docker stop) shuts the broker down gracefully; allow it up to
# server.shutdown_timeout_ms (30 s) with `docker stop -t 35` / compose stop_grace_period.
STOPSIGNAL SIGTERM
CMD ["brook-broker"]
