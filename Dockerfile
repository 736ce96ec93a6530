# syntax=docker/dockerfile:1.7
# One image, three binaries: `api` (default), `worker`, `ml-standin`.
#   docker build -t drishtiksha .
# SQL is checked against the query metadata in .sqlx/ (SQLX_OFFLINE), so no database is needed.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
ENV SQLX_OFFLINE=true \
    CARGO_TARGET_DIR=/src/target \
    CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,id=drishtiksha-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=drishtiksha-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=drishtiksha-target,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p drishtiksha-api --bin api \
        -p drishtiksha-worker --bin worker \
        -p drishtiksha-standin --bin ml-standin \
 && mkdir -p /out \
 && cp target/release/api target/release/worker target/release/ml-standin /out/

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ffmpeg for ffprobe (worker), curl for health checks, CA roots for TLS to S3/Temporal Cloud/ML.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 drishtiksha \
 && useradd --system --uid 10001 --gid drishtiksha --home-dir /app --create-home --shell /usr/sbin/nologin drishtiksha \
 && mkdir -p /app/data/media \
 && chown -R drishtiksha:drishtiksha /app
COPY --from=build /out/api /out/worker /out/ml-standin /usr/local/bin/
WORKDIR /app
USER drishtiksha:drishtiksha
ENV PORT=3000 \
    LOCAL_STORAGE_PATH=/app/data/media \
    LOG_FORMAT=json \
    RUST_LOG=info
# 3000: api (REST + Socket.IO); 8000: ml-standin.
EXPOSE 3000 8000
# Liveness of the api. Containers running `worker` or `ml-standin` override it (docker-compose.yml).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT:-3000}/api/health" >/dev/null || exit 1
CMD ["api"]
