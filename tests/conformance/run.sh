#!/usr/bin/env bash
# Measure tina4-sidecar against the RFC 9111 HTTP-cache test suite (http-tests/cache-tests,
# the suite behind https://cache-tests.fyi), the way that project measures reverse proxies:
#
#   cache-tests CLI  -->  tina4-sidecar (127.0.0.1:free port)  -->  cache-tests origin (127.0.0.1:free port)
#
# The suite is copied to a fresh temp dir (the original is never touched), its npm
# dependencies are installed there with `npm ci`, both servers are started on free loopback
# ports and always stopped on exit, and the results are scored by score.py.
#
# Usage: tests/conformance/run.sh [--out FILE] [--rules FILE] [--id TESTID] [--failures] [--keep]
#   --out FILE     where to write the raw results JSON (default: <temp dir>/results.json, kept)
#   --rules FILE   static rules file for the sidecar (TINA4_SIDECAR_RULES_FILE)
#   --id TESTID    run one test only; prints the suite's request/response dump instead of a score
#   --failures     also list the failed required tests
#   --keep         keep the temp dir (suite copy, node_modules, logs) after the run
# Environment:
#   CACHE_TESTS_DIR  the suite (default /work/shared/cache-tests); only read
#   HONOR            value of TINA4_SIDECAR_HONOR_CACHE_CONTROL ("standards mode"), default true
#   CLI_TIMEOUT      seconds the whole test client may run (default 600)
#   ORIGIN_KEEP_ALIVE_TIMEOUT  idle keep-alive seconds of the test server (default: Node's 5 s)
#   SIDECAR_BIN      the sidecar command (default <project>/.venv/bin/tina4-sidecar)
#   PYTHON           Python for score.py and port picking (default <project>/.venv/bin/python)
# Other TINA4_* variables in the environment reach the sidecar unchanged (e.g.
# TINA4_SIDECAR_FAST_PATH=false), except those this script sets.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
SUITE_SRC=${CACHE_TESTS_DIR:-/work/shared/cache-tests}
SIDECAR_BIN=${SIDECAR_BIN:-$PROJECT_DIR/.venv/bin/tina4-sidecar}
PYTHON=${PYTHON:-$PROJECT_DIR/.venv/bin/python}
CLI_TIMEOUT=${CLI_TIMEOUT:-600}
START_WAIT=30 # seconds each server gets to start answering

OUT=""
RULES=""
TEST_ID=""
FAILURES=0
KEEP=0

die() {
    echo "run.sh: $*" >&2
    exit 2
}
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) [[ $# -ge 2 ]] || die "--out needs a file"; OUT=$2; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        --rules) [[ $# -ge 2 ]] || die "--rules needs a file"; RULES=$2; shift 2 ;;
        --rules=*) RULES=${1#*=}; shift ;;
        --id) [[ $# -ge 2 ]] || die "--id needs a test id"; TEST_ID=$2; shift 2 ;;
        --id=*) TEST_ID=${1#*=}; shift ;;
        --failures) FAILURES=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
done

# --- prerequisites -----------------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found on PATH: install Node.js 18 or newer (the suite's client needs fetch)"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH: install npm (it comes with Node.js)"
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
[[ $NODE_MAJOR -ge 18 ]] || die "Node.js $(node --version) is too old: the suite's client needs 18 or newer"
command -v curl >/dev/null 2>&1 || die "curl not found on PATH"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) not found on PATH"
[[ -x $SIDECAR_BIN ]] || die "sidecar not found at $SIDECAR_BIN (set SIDECAR_BIN, or create the venv)"
[[ -x $PYTHON ]] || die "python not found at $PYTHON (set PYTHON)"
[[ -f $SUITE_SRC/test-engine/cli.mjs && -f $SUITE_SRC/test-engine/server/server.mjs ]] \
    || die "no cache-tests suite at $SUITE_SRC (set CACHE_TESTS_DIR)"
if [[ -n $RULES ]]; then
    [[ -f $RULES ]] || die "rules file not found: $RULES"
    RULES=$(cd "$(dirname "$RULES")" && pwd)/$(basename "$RULES")
fi
if [[ -n $OUT ]]; then
    mkdir -p "$(dirname "$OUT")"
    OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
fi

# --- temp dir and cleanup ----------------------------------------------------------------------
T0=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cache-tests-run.XXXXXX")
SUITE=$WORK/suite
ORIGIN_PID=""
SIDECAR_PID=""
CLI_PID=""
STATUS=1

stop() { # stop <pid> <name>: TERM, then KILL if it is still there after 5 s
    local pid=$1 name=$2 i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: $name (pid $pid) did not stop on TERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop "$CLI_PID" "test client"
    stop "$SIDECAR_PID" sidecar
    stop "$ORIGIN_PID" "test server"
    if [[ $KEEP -eq 1 || $STATUS -ne 0 ]]; then
        echo "run.sh: temp dir kept: $WORK (logs: origin.log, sidecar.log, cli.stderr)" >&2
    elif [[ $OUT == "$WORK"/* ]]; then
        rm -rf "$SUITE/node_modules" # keep the results and logs, drop the bulk
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_bg <var> <logfile> <dir> <command...>: start a server in the background, its pid in <var>
# (exec, so the pid is the server's own and `kill <pid>` reaches it)
run_bg() {
    local var=$1 log=$2 dir=$3
    shift 3
    (cd "$dir" && exec "$@") >"$log" 2>&1 </dev/null &
    printf -v "$var" '%s' "$!"
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http <url> <pid> <name> <log>: wait until the server answers HTTP at all; code in HTTP_CODE
HTTP_CODE=""
wait_http() {
    local url=$1 pid=$2 name=$3 log=$4 i
    for ((i = 0; i < START_WAIT * 5; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: $name exited during start-up; its log:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        HTTP_CODE=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [[ $HTTP_CODE == 000 || -z $HTTP_CODE ]] || return 0
        sleep 0.2
    done
    echo "run.sh: $name did not answer $url within ${START_WAIT}s; its log:" >&2
    tail -n 20 "$log" >&2
    exit 1
}

# --- the suite: a private copy with its dependencies -------------------------------------------
echo "==> copying $SUITE_SRC to $SUITE"
mkdir -p "$SUITE"
tar -C "$SUITE_SRC" --exclude=./node_modules -cf - . | tar -C "$SUITE" -xf -
chmod -R u+w "$SUITE" # the original may be read-only; npm ci writes node_modules here
echo "    suite commit: $(cat "$SUITE/COMMIT" 2>/dev/null || echo unknown)"
echo "==> npm ci (quiet; log in $WORK/npm-ci.log)"
if ! (cd "$SUITE" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) >"$WORK/npm-ci.log" 2>&1; then
    tail -n 20 "$WORK/npm-ci.log" >&2
    die "npm ci failed in $SUITE"
fi

# The test server calls server.listen(port), i.e. on every interface; this preload makes a
# listen() given only a port bind 127.0.0.1, so nothing outside this machine can reach it.
# With ORIGIN_KEEP_ALIVE_TIMEOUT=N it also keeps idle connections open N s instead of Node's
# default 5 s (a diagnosis aid: it hides a proxy's reuse of connections the origin closed).
cat >"$WORK/loopback-listen.mjs" <<'EOF'
import net from 'node:net'
const listen = net.Server.prototype.listen
const keepAlive = Number(process.env.ORIGIN_KEEP_ALIVE_TIMEOUT || 0)
net.Server.prototype.listen = function (...args) {
  const portOnly = /^\d+$/.test(String(args[0])) && (args.length === 1 || typeof args[1] === 'function')
  if (portOnly) args.splice(1, 0, '127.0.0.1')
  if (keepAlive > 0 && 'keepAliveTimeout' in this) {
    this.keepAliveTimeout = keepAlive * 1000
    this.headersTimeout = keepAlive * 1000 + 1000
  }
  return listen.apply(this, args)
}
EOF

# --- origin (the suite's test server) ----------------------------------------------------------
ORIGIN_PORT=$(free_port)
SIDECAR_PORT=$(free_port)
while [[ $SIDECAR_PORT == "$ORIGIN_PORT" ]]; do SIDECAR_PORT=$(free_port); done
ORIGIN=http://127.0.0.1:$ORIGIN_PORT
BASE=http://127.0.0.1:$SIDECAR_PORT

# server.mjs reads npm_config_<name> || npm_package_config_<name> (what `npm run server --port=N` sets)
echo "==> starting the test server on $ORIGIN"
run_bg ORIGIN_PID "$WORK/origin.log" "$SUITE" env \
    npm_config_protocol=http npm_config_port="$ORIGIN_PORT" npm_config_pidfile="$WORK/origin.pid" \
    node --import "$WORK/loopback-listen.mjs" test-engine/server/server.mjs
wait_http "$ORIGIN/" "$ORIGIN_PID" "test server" "$WORK/origin.log"

# --- the sidecar -------------------------------------------------------------------------------
export TINA4_SIDECAR_HONOR_CACHE_CONTROL=${HONOR:-true}
echo "==> starting tina4-sidecar on $BASE -> $ORIGIN" \
    "(memory store, rules: ${RULES:-none}, TINA4_SIDECAR_HONOR_CACHE_CONTROL=$TINA4_SIDECAR_HONOR_CACHE_CONTROL)"
inherited=$(env | grep -o '^TINA4_[A-Za-z0-9_]*' | grep -vxE 'TINA4_SIDECAR_HONOR_CACHE_CONTROL' \
    | grep -vxE 'TINA4_(CACHE_BACKEND|SIDECAR_(LISTEN|UPSTREAM|RULES_FILE|WORKERS|ADMIN_LISTEN))' \
    | tr '\n' ' ' || true)
[[ -z $inherited ]] || echo "    also passed on from the environment: $inherited"
# cwd = the temp dir, so no .env file of the project or the caller is read
run_bg SIDECAR_PID "$WORK/sidecar.log" "$WORK" env \
    TINA4_CACHE_BACKEND=memory \
    TINA4_SIDECAR_LISTEN="127.0.0.1:$SIDECAR_PORT" \
    TINA4_SIDECAR_UPSTREAM="$ORIGIN" \
    TINA4_SIDECAR_RULES_FILE="$RULES" \
    TINA4_SIDECAR_WORKERS=1 \
    TINA4_SIDECAR_ADMIN_LISTEN= \
    "$SIDECAR_BIN" serve
admin_prefix=${TINA4_SIDECAR_ADMIN_PREFIX:-/__sidecar/}
wait_http "$BASE${admin_prefix}health" "$SIDECAR_PID" sidecar "$WORK/sidecar.log"
[[ $HTTP_CODE == 200 ]] || echo "run.sh: warning: the sidecar's health check answered $HTTP_CODE" >&2

# --- the test client ---------------------------------------------------------------------------
# cli.mjs reads npm_config_base || npm_package_config_base, and npm_config_id ||
# npm_package_config_id, and runs every test only when that id is exactly '' (npm's default
# from package.json), so both id variables are set, empty for a full run.
# run_cli <stdout> <stderr>: the client runs in the background and is waited for, so that
# Ctrl-C or TERM reaches the trap at once (timeout(1) puts it in its own process group).
run_cli() {
    (cd "$SUITE" && exec env npm_config_base="$BASE" npm_package_config_base="$BASE" \
        npm_config_id="$TEST_ID" npm_package_config_id="$TEST_ID" \
        timeout --kill-after=10 "$CLI_TIMEOUT" node --no-warnings test-engine/cli.mjs) >"$1" 2>"$2" </dev/null &
    CLI_PID=$!
    local rc=0
    wait "$CLI_PID" || rc=$?
    CLI_PID=""
    return "$rc"
}

if [[ -n $TEST_ID ]]; then
    echo "==> running test $TEST_ID against $BASE"
    OUT=${OUT:-$WORK/$TEST_ID.txt}
    rc=0
    run_cli "$OUT" "$WORK/cli.stderr" || rc=$?
    cat "$OUT" "$WORK/cli.stderr"
    [[ $rc -eq 0 ]] || die "the test client failed (exit $rc)"
    echo "==> output saved to $OUT; ran in $((SECONDS - T0)) s"
    STATUS=0
    exit 0
fi

OUT=${OUT:-$WORK/results.json}
echo "==> running the suite against $BASE (at most ${CLI_TIMEOUT}s)"
T1=$SECONDS
rc=0
run_cli "$WORK/cli.stdout" "$WORK/cli.stderr" || rc=$?
T2=$SECONDS
for server in "test server:$ORIGIN_PID:origin.log" "sidecar:$SIDECAR_PID:sidecar.log"; do
    IFS=: read -r name pid log <<<"$server"
    if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 10 "$WORK/$log" >&2
        die "the $name exited during the run, so the results mean nothing (partial output: $WORK/cli.stdout)"
    fi
done
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    die "the test client did not finish within ${CLI_TIMEOUT}s (CLI_TIMEOUT); see $WORK/cli.stderr"
elif [[ $rc -ne 0 ]]; then
    tail -n 20 "$WORK/cli.stderr" >&2
    die "the test client failed (exit $rc)"
fi
"$PYTHON" -c 'import json, sys; json.load(open(sys.argv[1]))' "$WORK/cli.stdout" 2>/dev/null \
    || die "the test client's output is not JSON: $WORK/cli.stdout"
mv "$WORK/cli.stdout" "$OUT"
if [[ -s $WORK/cli.stderr ]]; then
    # e.g. "ERROR: <uuid> Setup PUT config resulted in 502 Bad Gateway": the proxy failed one of
    # the harness's own control requests, and that test's result is not about caching
    echo "    test client stderr ($(wc -l <"$WORK/cli.stderr") lines; such tests fail for a harness reason):"
    head -n 20 "$WORK/cli.stderr" | cut -c1-160 | sed 's/^/      /'
fi
echo "==> results: $OUT"
score_args=("$OUT" --suite "$SUITE")
[[ $FAILURES -eq 0 ]] || score_args+=(--failures)
"$PYTHON" "$SCRIPT_DIR/score.py" "${score_args[@]}"
echo "==> suite ran in $((T2 - T1)) s; whole script $((SECONDS - T0)) s"
STATUS=0
