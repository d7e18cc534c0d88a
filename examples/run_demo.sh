#!/usr/bin/env bash
# Runs the demo Tina4 app (port 7146) and the sidecar in front of it (port 7145, memory store).
# Ctrl-C stops both. Ports: DEMO_APP_PORT, DEMO_SIDECAR_PORT. Needs .venv (make setup).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
app_port="${DEMO_APP_PORT:-7146}"
sidecar_port="${DEMO_SIDECAR_PORT:-7145}"

for port in "$app_port" "$sidecar_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "demo: port $port is already in use (set DEMO_APP_PORT / DEMO_SIDECAR_PORT)" >&2
        exit 1
    fi
done

# Tina4 creates src/ data/ logs/ in its working dir: a folder of this run's own, so that two demos
# never share (or clean up) each other's, removed when the demo stops.
workdir="$(mktemp -d "${TMPDIR:-/tmp}/tina4-sidecar-demo.XXXXXX")"
echo "demo: starting the Tina4 demo app on http://127.0.0.1:$app_port (log: $workdir/app.log)"
(
    cd "$workdir"
    TINA4_OVERRIDE_CLIENT=true TINA4_NO_TAKEOVER=true TINA4_NO_BROWSER=true TINA4_DEBUG=false \
    TINA4_DEFAULT_WEBSERVER=true TINA4_HOST=127.0.0.1 TINA4_PORT="$app_port" \
    TINA4_SECRET="demo-secret-change-me-0123456789abcdef" PYTHONPATH="$repo/examples/demo_app" \
        exec "$repo/.venv/bin/python" "$repo/examples/demo_app/app.py"
) >"$workdir/app.log" 2>&1 &
app_pid=$!
stop() {
    kill "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
    rm -rf "$workdir"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 1 100); do
    if "$repo/.venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "http://127.0.0.1:$app_port/__tina4/cache-manifest" 2>/dev/null; then break; fi
    if ! kill -0 "$app_pid" 2>/dev/null; then echo "demo: the app failed to start:" >&2; tail -20 "$workdir/app.log" >&2; exit 1; fi
    sleep 0.2
done

cat <<EOT
demo: the sidecar is starting on http://127.0.0.1:$sidecar_port (memory store). Try, in another terminal:
    curl -i http://127.0.0.1:$sidecar_port/api/products          # X-Cache: MISS, X-Cache-TTL: 300
    curl -i http://127.0.0.1:$sidecar_port/api/products          # X-Cache: HIT, X-Cache-TTL counting down
    curl -i "http://127.0.0.1:$sidecar_port/api/store/products?category=Electronics&page=1"
    curl -i http://127.0.0.1:$sidecar_port/api/time              # not cached: no X-Cache header
    curl http://127.0.0.1:$app_port/__tina4/cache-manifest       # what the app told the sidecar
    $repo/.venv/bin/tina4-sidecar routes --upstream http://127.0.0.1:$app_port
Ctrl-C stops both.
EOT
TINA4_CACHE_BACKEND=memory "$repo/.venv/bin/tina4-sidecar" serve \
    --upstream "http://127.0.0.1:$app_port" --listen "127.0.0.1:$sidecar_port"
