# syntax=docker/dockerfile:1
#
# tina4-sidecar: the caching reverse proxy that runs in front of a Tina4 app.
#
#   docker build -t tina4-sidecar .
#   docker run --rm -p 7145:7145 -e TINA4_SIDECAR_UPSTREAM=http://app:7146 tina4-sidecar
#
# Every setting is an environment variable (docs/configuration.md). docker-compose.yml runs this
# image with the demo Tina4 app and Redis.

# --- builder: a virtual environment holding exactly what uv.lock pins -------------------------
# The base image is pinned to a patch release (both stages, and the demo app's image, use the
# same one); uv is the version .ci/uv.sh pins for every machine.
FROM python:3.12.12-slim-bookworm AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/tina4-sidecar \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /src
# The dependencies first, from the lock alone: this layer survives edits of the code.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --no-editable --no-cache
# Then the package (tina4_sidecar/ holds relative symlinks to the four folders), installed as
# a wheel, not editable; --locked fails the build if uv.lock no longer matches pyproject.toml.
COPY tina4_sidecar/ tina4_sidecar/
COPY proxy/ proxy/
COPY client/ client/
COPY config/ config/
COPY store/ store/
RUN uv sync --locked --no-dev --no-editable --no-cache

# --- runtime: the locked environment, no build tools, a user without privileges ----------------
FROM python:3.12.12-slim-bookworm

LABEL org.opencontainers.image.title="tina4-sidecar" \
      org.opencontainers.image.description="Caching reverse-proxy sidecar for Tina4 Python web apps" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TINA4_SIDECAR_LISTEN=0.0.0.0:7145 \
    TINA4_CACHE_DIR=/var/cache/tina4-sidecar

# The builder's environment as it is: the same interpreter path (same base image), so its
# scripts and compiled bytecode work here unchanged. No pip, no uv and no build tools run here.
COPY --from=builder /opt/tina4-sidecar /opt/tina4-sidecar
ENV PATH=/opt/tina4-sidecar/bin:$PATH

RUN groupadd --system --gid 10001 sidecar \
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

# The file store (TINA4_CACHE_DIR; the fallback too) lives in a volume, not the container's layer.
VOLUME ["/var/cache/tina4-sidecar"]

# Readiness: the sidecar can serve (listening, rules loaded once, the store or its fallback
# answers); the app being down does not make it unhealthy (it serves stale content meanwhile). The port
# and the admin prefix follow TINA4_SIDECAR_LISTEN and TINA4_SIDECAR_ADMIN_PREFIX when they are
# set in the environment. slim has no curl: Python's urllib, whose HTTPError (a 503) or
# URLError (refused) ends the check with status 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('TINA4_SIDECAR_LISTEN', ':7145').rpartition(':')[2]; prefix = os.environ.get('TINA4_SIDECAR_ADMIN_PREFIX', '/__sidecar/'); urllib.request.urlopen(f'http://127.0.0.1:{port}{prefix}ready', timeout=4)"]

ENTRYPOINT ["tina4-sidecar"]
CMD ["serve"]
