# syntax=docker/dockerfile:1
# pushwire's image: built with cargo, run on slim Debian as an unprivileged user.
# Askama templates and the static files are compiled into the binary; the
# static files are also served from PUSHWIRE_STATIC_DIR, so that an operator can
# replace the page without rebuilding.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY templates templates
COPY static static
# The workspace's other member, the load tool: its manifest and sources must
# be there for cargo to read the workspace; only the server is built.
COPY bench bench
# Cache mounts keep the registry and the build directory between builds, so a
# source change recompiles pushwire, not its dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package pushwire \
    && cp target/release/pushwire /usr/local/bin/pushwire

FROM debian:bookworm-slim
# curl answers the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pushwire
COPY --from=build /usr/local/bin/pushwire /usr/local/bin/pushwire
COPY static /usr/share/pushwire/static
ENV PUSHWIRE_BIND=0.0.0.0:8080 \
    PUSHWIRE_STATIC_DIR=/usr/share/pushwire/static
USER pushwire
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["pushwire"]
