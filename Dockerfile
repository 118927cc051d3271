# Tessera's container image.
#
#   docker build -t tessera .
#   docker run --rm tessera --help
#
# Stage 1 compiles in two steps so that a change to Tessera's own sources does
# not recompile its ~400 dependencies:
#   1. only Cargo.toml, Cargo.lock and the member crates' manifests, with an
#      empty stand-in for each crate's sources: `cargo build` compiles every
#      dependency into a layer that stays cached until a manifest or the lock
#      file changes;
#   2. the real sources on top, which rebuilds the three workspace crates only.
#      COPY keeps the files' own modification times, older than the stand-ins'
#      build, and cargo would take the stand-in binary as up to date: hence
#      the `touch` of each crate root before the second build.
# Plain layers rather than BuildKit cache mounts: they work with any builder
# and can be shared through a registry cache (--cache-to/--cache-from), while
# a cache mount stays on the one machine that filled it.
# A new workspace member, build script or `include_str!` of another file needs
# its own COPY line below, and must not be excluded by .dockerignore.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY entity/Cargo.toml entity/
COPY migration/Cargo.toml migration/
RUN mkdir -p src entity/src migration/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs entity/src/lib.rs migration/src/lib.rs \
    && cargo build --release --locked --bin tessera

COPY src src
COPY entity/src entity/src
COPY migration/src migration/src
# The link pages (src/api/pages.rs include_str!s them).
COPY assets assets
RUN touch src/main.rs src/lib.rs entity/src/lib.rs migration/src/lib.rs \
    && cargo build --release --locked --bin tessera

# Stage 2: Debian bookworm like the build stage (same glibc), with CA
# certificates for TLS to PostgreSQL and Redis. It keeps a shell and
# coreutils: the Kubernetes preStop hook runs /bin/sleep, and
# docker-compose.yml's healthcheck uses bash's /dev/tcp.
FROM debian:bookworm-slim
# DL3008: ca-certificates is not pinned on purpose. It must follow Debian's
# security updates, and a pinned version vanishes from the archive as soon as
# it is superseded, which would break every later build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tessera \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tessera \
        --no-create-home --shell /usr/sbin/nologin tessera \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/tessera
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
# Numeric, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/tessera
ENV TESSERA_BIND=0.0.0.0:8080 TESSERA_LOG_FORMAT=json
EXPOSE 8080
# SIGTERM: stop accepting, drain in-flight requests for up to 30 s, exit 0.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: the image has no curl, Kubernetes ignores HEALTHCHECK and
# probes GET /readyz and /healthz itself (deploy/base/deployment.yaml), and
# docker-compose.yml defines its own check.
ENTRYPOINT ["/usr/local/bin/tessera"]
CMD ["serve"]
