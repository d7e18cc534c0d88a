# syntax=docker/dockerfile:1
#
# tina4-sidecar: the caching reverse proxy that runs in front of a Tina4 app.
#
#   docker build -t tina4-sidecar .
#   docker run --rm -p 7145:7145 -e TINA4_SIDECAR_UPSTREAM=http://app:7146 tina4-sidecar
#
# Every setting is an environment variable (docs/configuration.md). docker-compose.yml runs this
# image with the demo Tina4 app and Redis.

# --- builder: the project's wheel and the wheels of its runtime dependencies -------------------
FROM python:3.12-slim AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the wheel is built from: the cache of this layer survives edits to tests and docs.
COPY pyproject.toml README.md ./
COPY proxy/ proxy/
COPY client/ client/
COPY config/ config/
COPY store/ store/
# Every runtime dependency ships manylinux wheels: nothing is compiled, and the final stage
# installs from /wheels without reaching an index.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheels installed, no build tools, a user without privileges ------------------
FROM python:3.12-slim

LABEL org.opencontainers.image.title="tina4-sidecar" \
      org.opencontainers.image.description="Caching reverse-proxy sidecar for Tina4 Python web apps" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TINA4_SIDECAR_LISTEN=0.0.0.0:7145 \
    TINA4_CACHE_DIR=/var/cache/tina4-sidecar

# The wheels are bind-mounted from the builder, so they never become a layer of this image.
# pip compiles the bytecode at install time; PYTHONDONTWRITEBYTECODE keeps the running
# sidecar (which cannot write site-packages anyway) from trying.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/tina4_sidecar-*.whl \
    && groupadd --system --gid 10001 sidecar \
    && useradd --system --no-log-init --uid 10001 --gid sidecar --create-home \
       --home-dir /home/sidecar --shell /usr/sbin/nologin sidecar \
    && install -d -o sidecar -g sidecar -m 0750 /var/cache/tina4-sidecar

# The working directory is where a .env file is read from (mount one here if you prefer it to
# environment variables). TINA4_CACHE_DIR is the file store, also the fallback while a network
# store is down: mount a volume there to keep it across restarts.
WORKDIR /home/sidecar
# Numeric, so that a runtime that enforces non-root users (runAsNonRoot) can verify it.
USER 10001:10001

EXPOSE 7145

# Readiness (store answers, app answers): unhealthy while the app or the store is down. The port
# and the admin prefix follow TINA4_SIDECAR_LISTEN and TINA4_SIDECAR_ADMIN_PREFIX when they are
# set in the environment. slim has no curl: Python's urllib, whose HTTPError (a 503) or
# URLError (refused) ends the check with status 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('TINA4_SIDECAR_LISTEN', ':7145').rpartition(':')[2]; prefix = os.environ.get('TINA4_SIDECAR_ADMIN_PREFIX', '/__sidecar/'); urllib.request.urlopen(f'http://127.0.0.1:{port}{prefix}ready', timeout=4)"]

ENTRYPOINT ["tina4-sidecar"]
CMD ["serve"]
