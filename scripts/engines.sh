#!/usr/bin/env bash
# Start, stop or inspect the real database engines that the integration tests use.
#
#   eval "$(scripts/engines.sh start)"      # start every engine, export SDK_TEST_*_URL
#   scripts/engines.sh start postgres        # only some: postgres weaviate milvus qdrant toxiproxy
#   scripts/engines.sh status                # what runs (exit 3 when something is missing)
#   scripts/engines.sh stop                  # stop what `start` started (pid files / pg_ctl)
#
# When a Docker daemon answers (and SDK_ENGINES_NATIVE is not 1), `start` runs docker-compose.yml
# and prints the servers' URLs. Otherwise it starts the engines natively, because no machine of this
# project has a Docker engine (see shared/ENVIRONMENT.md):
#   - PostgreSQL 15 (Debian) + pgvector 0.8.0 built from Debian trixie's SOURCE package (bookworm has
#     no pgvector binary); a throwaway trust-auth cluster under the state dir.
#   - Weaviate: the real server built with `go install` from the Go module proxy, cached under
#     $CACHE_DIR/go so later runs (CI on the same machine, from a clean clone) skip the slow build.
#   - Milvus Lite 2.5.1 and Qdrant local mode run inside the test process: nothing to start, `status`
#     only checks that they import.
#   - Toxiproxy (the fault-injecting TCP proxy of tests/reliability): its server built with `go install`
#     into the same Go cache, always native (docker-compose.yml has no service for it); the tests
#     create their proxies in front of PostgreSQL and Weaviate through its HTTP API.
#
# Only `export` lines go to stdout; progress goes to stderr, server logs to files in the state dir.
#
# Settings (environment):
#   SDK_ENGINES_DIR        state dir (data, logs, pid files)      default: <repo>/.engines
#   SDK_ENGINES_CACHE      build cache (Go module/build cache)     default: ${XDG_CACHE_HOME:-~/.cache}/retrieval-forge
#   SDK_ENGINES_NATIVE=1   never use Docker
#   SDK_PG_PORT            PostgreSQL port                         default: 5432 (= docker-compose.yml)
#   SDK_WEAVIATE_VERSION   weaviate-server module version          default: v1.39.0
#   SDK_WEAVIATE_HTTP_PORT / SDK_WEAVIATE_GRPC_PORT                default: 8080 / 50051
#   SDK_WEAVIATE_READY_TIMEOUT  seconds to wait for readiness      default: 180
#   SDK_TOXIPROXY_VERSION  toxiproxy module version                default: v2.5.0
#   SDK_TOXIPROXY_PORT     toxiproxy HTTP API port                 default: 8474
#   SDK_PGVECTOR_REBUILD=1 rebuild and reinstall pgvector even if vector.control exists
#   SDK_PYTHON             interpreter for the embedded checks     default: <repo>/.venv/bin/python or python3
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${SDK_ENGINES_DIR:-$ROOT/.engines}"
CACHE_DIR="${SDK_ENGINES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/retrieval-forge}"
GO_DIR="$CACHE_DIR/go"

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
PG_PORT="${SDK_PG_PORT:-5432}"
PGVECTOR_DEB_VERSION="0.8.0-1"
PGVECTOR_CONTROL="/usr/share/postgresql/$PG_MAJOR/extension/vector.control"
PG_DB="sdk"

WEAVIATE_MODULE="github.com/weaviate/weaviate/cmd/weaviate-server"
WEAVIATE_VERSION="${SDK_WEAVIATE_VERSION:-v1.39.0}"
WEAVIATE_HTTP_PORT="${SDK_WEAVIATE_HTTP_PORT:-8080}"
WEAVIATE_GRPC_PORT="${SDK_WEAVIATE_GRPC_PORT:-50051}"
# Internal cluster ports of a single node; fixed, as in the Weaviate docs' single-node examples.
WEAVIATE_RAFT_PORT=8300
WEAVIATE_RAFT_RPC_PORT=8301
WEAVIATE_GOSSIP_PORT=7100
WEAVIATE_DATA_PORT=7101
WEAVIATE_READY_TIMEOUT="${SDK_WEAVIATE_READY_TIMEOUT:-180}"
WEAVIATE_BIN="$GO_DIR/bin/$WEAVIATE_VERSION/weaviate-server"

TOXIPROXY_MODULE="github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_VERSION="${SDK_TOXIPROXY_VERSION:-v2.5.0}"
TOXIPROXY_PORT="${SDK_TOXIPROXY_PORT:-8474}"
TOXIPROXY_BIN="$GO_DIR/bin/toxiproxy-$TOXIPROXY_VERSION/toxiproxy-server"

ALL_ENGINES=(postgres weaviate milvus qdrant toxiproxy)

log() { printf '[engines] %s\n' "$*" >&2; }
die() {
    printf '[engines] ERROR: %s\n' "$*" >&2
    exit 1
}

python_bin() {
    if [[ -n "${SDK_PYTHON:-}" ]]; then
        echo "$SDK_PYTHON"
    elif [[ -x "$ROOT/.venv/bin/python" ]]; then
        echo "$ROOT/.venv/bin/python"
    else
        echo python3
    fi
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

docker_mode_available() {
    [[ "${SDK_ENGINES_NATIVE:-0}" != 1 ]] || return 1
    command -v docker >/dev/null 2>&1 || return 1
    docker info >/dev/null 2>&1 || return 1
    docker compose version >/dev/null 2>&1 || return 1
}

# ------------------------------------------------------------------------------------------------
# PostgreSQL + pgvector
# ------------------------------------------------------------------------------------------------
PG_DIR="$STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PG_LOG="$STATE_DIR/postgres.log"
APT_LOG="$STATE_DIR/apt.log"

# Run as the cluster owner: postgres refuses to run as root.
as_pg_owner() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

debian_mirror() {
    local uri=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        uri="$(awk '/^URIs:/ && $2 ~ /debian\/?$/ && $2 !~ /security/ { print $2; exit }' \
            /etc/apt/sources.list.d/debian.sources)"
    fi
    if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
        uri="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
            /etc/apt/sources.list)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

ensure_pgvector() {
    if [[ -x "$PG_BIN/pg_ctl" && -f "$PGVECTOR_CONTROL" && "${SDK_PGVECTOR_REBUILD:-0}" != 1 ]]; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "pgvector is missing and apt-get is not available: install PostgreSQL $PG_MAJOR + pgvector, or use Docker"
    local start src ver tmp
    # apt allows one client at a time: a concurrent `start` waits here, then finds pgvector built.
    mkdir -p "$CACHE_DIR"
    exec 8>"$CACHE_DIR/pgvector-build.lock"
    flock 8
    if [[ -x "$PG_BIN/pg_ctl" && -f "$PGVECTOR_CONTROL" && "${SDK_PGVECTOR_REBUILD:-0}" != 1 ]]; then
        flock -u 8
        return 0
    fi
    start="$(now)"
    log "building pgvector from Debian trixie's source package (apt output: $APT_LOG)"
    src=/etc/apt/sources.list.d/retrieval-forge-trixie-src.sources
    if [[ ! -f "$src" ]]; then
        as_root tee "$src" >/dev/null <<EOF
Types: deb-src
URIs: $(debian_mirror)
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    # --no-upgrade everywhere: without it apt upgrades PostgreSQL itself.
    as_root apt-get update >>"$APT_LOG" 2>&1 || die "apt-get update failed, see $APT_LOG"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-upgrade "postgresql-$PG_MAJOR" \
        >>"$APT_LOG" 2>&1 || die "installing postgresql-$PG_MAJOR failed, see $APT_LOG"
    ver="$(dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends --no-upgrade \
        "postgresql-server-dev-$PG_MAJOR=$ver" dpkg-dev make gcc \
        >>"$APT_LOG" 2>&1 || die "installing build dependencies failed, see $APT_LOG"
    tmp="$(mktemp -d)"
    (
        cd "$tmp"
        apt-get source "pgvector=$PGVECTOR_DEB_VERSION"
        cd "pgvector-${PGVECTOR_DEB_VERSION%-*}"
        make -j"$(nproc)" PG_CONFIG="$PG_BIN/pg_config"
        as_root make install PG_CONFIG="$PG_BIN/pg_config"
    ) >>"$APT_LOG" 2>&1 || die "building pgvector failed, see $APT_LOG"
    rm -rf "$tmp"
    [[ -f "$PGVECTOR_CONTROL" ]] || die "pgvector built but $PGVECTOR_CONTROL is missing, see $APT_LOG"
    log "pgvector $PGVECTOR_DEB_VERSION installed in $(elapsed "$start") s"
    flock -u 8
}

# A server this state dir did not start, reachable with trust auth as postgres, with pgvector 0.8.
pg_foreign_ok() {
    [[ "$(psql_q postgres -tAc "SELECT 1 FROM pg_available_extensions WHERE name = 'vector' AND default_version LIKE '0.8.%'" 2>/dev/null)" == 1 ]]
}

pg_running() { [[ -f "$PG_DATA/PG_VERSION" ]] && as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

psql_q() {
    local db="$1"
    shift
    PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" "$@"
}

start_postgres() {
    local start
    start="$(now)"
    ensure_pgvector
    if pg_running; then
        log "postgres: already running on 127.0.0.1:$PG_PORT"
    elif port_busy "$PG_PORT"; then
        # Another checkout (a CI clone on this machine, say) started one: share it if it is usable.
        pg_foreign_ok ||
            die "port $PG_PORT is taken by a process that is not a trust-auth PostgreSQL with pgvector 0.8; stop it or set SDK_PG_PORT"
        log "postgres: reusing the server already listening on 127.0.0.1:$PG_PORT (not started from $STATE_DIR; stop leaves it alone)"
    else
        mkdir -p "$PG_DIR" "$PG_SOCK"
        touch "$PG_LOG"
        if [[ $EUID -eq 0 ]]; then
            chown -R postgres: "$PG_DIR" "$PG_LOG"
            runuser -u postgres -- test -w "$PG_DIR" ||
                die "user postgres cannot write $PG_DIR (a parent directory is not searchable); set SDK_ENGINES_DIR elsewhere"
        fi
        if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
            as_pg_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --no-sync >>"$PG_LOG" 2>&1 ||
                die "initdb failed, see $PG_LOG"
        fi
        as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
            -o "-p $PG_PORT -k $PG_SOCK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null || die "postgres did not start, see $PG_LOG"
        log "postgres: started (data $PG_DATA, log $PG_LOG)"
    fi
    if [[ "$(psql_q postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
        psql_q postgres -c "CREATE DATABASE $PG_DB" >/dev/null
    fi
    psql_q "$PG_DB" -c "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null || die "CREATE EXTENSION vector failed"
    log "postgres: ready on 127.0.0.1:$PG_PORT, pgvector $(psql_q "$PG_DB" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'vector'") ($(elapsed "$start") s)"
}

stop_postgres() {
    if pg_running; then
        as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
        log "postgres: stopped"
    else
        log "postgres: not running"
    fi
}

status_postgres() {
    if pg_running; then
        local ver
        ver="$(psql_q "$PG_DB" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'vector'" 2>/dev/null || echo '?')"
        echo "postgres: running on 127.0.0.1:$PG_PORT (data $PG_DATA, pgvector $ver)"
    elif port_busy "$PG_PORT" && pg_foreign_ok; then
        echo "postgres: running on 127.0.0.1:$PG_PORT, started elsewhere (not from $STATE_DIR)"
    elif [[ -f "$PGVECTOR_CONTROL" ]]; then
        echo "postgres: stopped (pgvector installed)"
        return 3
    else
        echo "postgres: stopped (pgvector not built yet)"
        return 3
    fi
}

# ------------------------------------------------------------------------------------------------
# Weaviate
# ------------------------------------------------------------------------------------------------
WV_DATA="$STATE_DIR/weaviate/data"
WV_LOG="$STATE_DIR/weaviate.log"
WV_PID="$STATE_DIR/weaviate.pid"

ensure_weaviate_built() {
    if [[ -x "$WEAVIATE_BIN" ]]; then
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "Go is needed to build the Weaviate server (no Docker here); install Go >= 1.24"
    mkdir -p "$GO_DIR/logs" "$(dirname "$WEAVIATE_BIN")"
    local build_log="$GO_DIR/logs/weaviate-server-$WEAVIATE_VERSION.log" start
    # One build at a time per cache: a second `start` waits for the first one's build.
    exec 9>"$GO_DIR/build.lock"
    flock 9
    if [[ ! -x "$WEAVIATE_BIN" ]]; then
        start="$(now)"
        log "weaviate: building $WEAVIATE_MODULE@$WEAVIATE_VERSION (cold: about 3 min on 2 cores, 3.7 GB cache; log $build_log)"
        if ! env GOPATH="$GO_DIR/path" GOMODCACHE="$GO_DIR/path/pkg/mod" GOCACHE="$GO_DIR/cache" \
            GOBIN="$(dirname "$WEAVIATE_BIN")" CGO_ENABLED=1 GOFLAGS=-buildvcs=false \
            go install "$WEAVIATE_MODULE@$WEAVIATE_VERSION" >>"$build_log" 2>&1; then
            tail -n 20 "$build_log" >&2
            die "building weaviate-server $WEAVIATE_VERSION failed, see $build_log"
        fi
        log "weaviate: built in $(elapsed "$start") s -> $WEAVIATE_BIN"
    fi
    flock -u 9
}

weaviate_pid() {
    local pid
    [[ -f "$WV_PID" ]] || return 1
    pid="$(cat "$WV_PID")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid.
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" == *weaviate-server* ]] || return 1
    echo "$pid"
}

weaviate_version() {
    curl -fsS --max-time 2 "http://127.0.0.1:$WEAVIATE_HTTP_PORT/v1/meta" 2>/dev/null |
        sed -n 's/.*"version":"\([^"]*\)".*/\1/p' || true
}

# A ready Weaviate that this state dir did not start, new enough for weaviate-client 4.x (>= 1.27).
weaviate_foreign_ok() {
    local version
    weaviate_ready && port_busy "$WEAVIATE_GRPC_PORT" || return 1
    version="$(weaviate_version)"
    [[ -n "$version" ]] || return 1
    [[ "$(printf '%s\n1.27.0\n' "$version" | sort -V | head -n1)" == 1.27.0 ]]
}

weaviate_ready() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$WEAVIATE_HTTP_PORT/v1/.well-known/ready" 2>/dev/null; }

start_weaviate() {
    local start pid port deadline
    start="$(now)"
    if pid="$(weaviate_pid)"; then
        log "weaviate: already running (pid $pid)"
    elif weaviate_foreign_ok; then
        log "weaviate: reusing the server $(weaviate_version) already listening on 127.0.0.1:$WEAVIATE_HTTP_PORT (not started from $STATE_DIR; stop leaves it alone)"
    else
        rm -f "$WV_PID"
        ensure_weaviate_built
        start="$(now)"
        for port in "$WEAVIATE_HTTP_PORT" "$WEAVIATE_GRPC_PORT" "$WEAVIATE_RAFT_PORT" "$WEAVIATE_RAFT_RPC_PORT" \
            "$WEAVIATE_GOSSIP_PORT" "$WEAVIATE_DATA_PORT"; do
            if port_busy "$port"; then
                die "port $port is taken by another process (Weaviate needs $WEAVIATE_HTTP_PORT, $WEAVIATE_GRPC_PORT, 8300, 8301, 7100, 7101)"
            fi
        done
        mkdir -p "$WV_DATA"
        log "weaviate: starting $WEAVIATE_VERSION on http :$WEAVIATE_HTTP_PORT, grpc :$WEAVIATE_GRPC_PORT (log $WV_LOG)"
        env PERSISTENCE_DATA_PATH="$WV_DATA" \
            AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true \
            DEFAULT_VECTORIZER_MODULE=none \
            ENABLE_MODULES= \
            DISABLE_TELEMETRY=true \
            QUERY_DEFAULTS_LIMIT=25 \
            CLUSTER_HOSTNAME=node1 \
            CLUSTER_IN_LOCALHOST=true \
            RAFT_BOOTSTRAP_EXPECT=1 \
            RAFT_JOIN="node1:$WEAVIATE_RAFT_PORT" \
            RAFT_PORT="$WEAVIATE_RAFT_PORT" \
            RAFT_INTERNAL_RPC_PORT="$WEAVIATE_RAFT_RPC_PORT" \
            CLUSTER_GOSSIP_BIND_PORT="$WEAVIATE_GOSSIP_PORT" \
            CLUSTER_DATA_BIND_PORT="$WEAVIATE_DATA_PORT" \
            GRPC_PORT="$WEAVIATE_GRPC_PORT" \
            setsid nohup "$WEAVIATE_BIN" --host 127.0.0.1 --port "$WEAVIATE_HTTP_PORT" --scheme http \
            >>"$WV_LOG" 2>&1 </dev/null &
        echo $! >"$WV_PID"
    fi
    deadline=$((SECONDS + WEAVIATE_READY_TIMEOUT))
    until weaviate_ready; do
        if ! weaviate_pid >/dev/null; then
            tail -n 20 "$WV_LOG" >&2 || true
            rm -f "$WV_PID"
            die "weaviate exited during startup, see $WV_LOG"
        fi
        ((SECONDS < deadline)) || die "weaviate not ready after ${WEAVIATE_READY_TIMEOUT}s, see $WV_LOG"
        sleep 0.5
    done
    log "weaviate: ready on 127.0.0.1:$WEAVIATE_HTTP_PORT ($(elapsed "$start") s)"
}

stop_weaviate() {
    local pid i
    if pid="$(weaviate_pid)"; then
        kill -TERM "$pid"
        for ((i = 0; i < 60; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "weaviate: did not stop within 30 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "weaviate: stopped"
    else
        log "weaviate: not running"
    fi
    rm -f "$WV_PID"
}

status_weaviate() {
    local pid version
    if pid="$(weaviate_pid)"; then
        version="$(weaviate_version)"
        if weaviate_ready; then
            echo "weaviate: running (pid $pid, version ${version:-?}, http :$WEAVIATE_HTTP_PORT, grpc :$WEAVIATE_GRPC_PORT)"
        else
            echo "weaviate: starting (pid $pid, not ready yet)"
            return 3
        fi
    elif weaviate_foreign_ok; then
        echo "weaviate: running $(weaviate_version) on http :$WEAVIATE_HTTP_PORT, started elsewhere (not from $STATE_DIR)"
    elif [[ -x "$WEAVIATE_BIN" ]]; then
        echo "weaviate: stopped (server $WEAVIATE_VERSION built: $WEAVIATE_BIN)"
        return 3
    else
        echo "weaviate: stopped (server $WEAVIATE_VERSION not built yet)"
        return 3
    fi
}

# ------------------------------------------------------------------------------------------------
# Toxiproxy (fault injection for tests/reliability)
# ------------------------------------------------------------------------------------------------
TP_LOG="$STATE_DIR/toxiproxy.log"
TP_PID="$STATE_DIR/toxiproxy.pid"

ensure_toxiproxy_built() {
    if [[ -x "$TOXIPROXY_BIN" ]]; then
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "Go is needed to build the toxiproxy server (no Docker here); install Go >= 1.24"
    local bin_dir build_log="$GO_DIR/logs/toxiproxy-server-$TOXIPROXY_VERSION.log" start
    bin_dir="$(dirname "$TOXIPROXY_BIN")"
    mkdir -p "$GO_DIR/logs" "$bin_dir"
    # Same lock as the Weaviate build: two Go builds at once would only slow each other down.
    exec 9>"$GO_DIR/build.lock"
    flock 9
    if [[ ! -x "$TOXIPROXY_BIN" ]]; then
        start="$(now)"
        log "toxiproxy: building $TOXIPROXY_MODULE@$TOXIPROXY_VERSION (cold: about 1 min on 2 cores; log $build_log)"
        if ! env GOPATH="$GO_DIR/path" GOMODCACHE="$GO_DIR/path/pkg/mod" GOCACHE="$GO_DIR/cache" \
            GOBIN="$bin_dir" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
            go install "$TOXIPROXY_MODULE@$TOXIPROXY_VERSION" >>"$build_log" 2>&1; then
            tail -n 20 "$build_log" >&2
            die "building toxiproxy-server $TOXIPROXY_VERSION failed, see $build_log"
        fi
        # `go install .../cmd/server` names the binary `server`: give it a name pid checks can recognise.
        mv -f "$bin_dir/server" "$TOXIPROXY_BIN"
        log "toxiproxy: built in $(elapsed "$start") s -> $TOXIPROXY_BIN"
    fi
    flock -u 9
}

toxiproxy_pid() {
    local pid
    [[ -f "$TP_PID" ]] || return 1
    pid="$(cat "$TP_PID")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid.
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" == *toxiproxy-server* ]] || return 1
    echo "$pid"
}

# What /version answers: plain text in v2.5 ("git" for a `go install` build), JSON in later releases.
toxiproxy_version() {
    curl -fsS --max-time 2 "http://127.0.0.1:$TOXIPROXY_PORT/version" 2>/dev/null | tr -d '\n' || true
}

toxiproxy_ready() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$TOXIPROXY_PORT/version" 2>/dev/null; }

start_toxiproxy() {
    local start pid deadline
    start="$(now)"
    if pid="$(toxiproxy_pid)"; then
        log "toxiproxy: already running (pid $pid)"
    elif toxiproxy_ready; then
        log "toxiproxy: reusing the server (/version: $(toxiproxy_version)) already listening on 127.0.0.1:$TOXIPROXY_PORT (not started from $STATE_DIR; stop leaves it alone)"
    else
        rm -f "$TP_PID"
        port_busy "$TOXIPROXY_PORT" &&
            die "port $TOXIPROXY_PORT is taken by a process that is not toxiproxy; stop it or set SDK_TOXIPROXY_PORT"
        ensure_toxiproxy_built
        start="$(now)"
        log "toxiproxy: starting $TOXIPROXY_VERSION, API on 127.0.0.1:$TOXIPROXY_PORT (log $TP_LOG)"
        setsid nohup "$TOXIPROXY_BIN" -host 127.0.0.1 -port "$TOXIPROXY_PORT" >>"$TP_LOG" 2>&1 </dev/null &
        echo $! >"$TP_PID"
    fi
    deadline=$((SECONDS + 30))
    until toxiproxy_ready; do
        if ! toxiproxy_pid >/dev/null; then
            tail -n 20 "$TP_LOG" >&2 || true
            rm -f "$TP_PID"
            die "toxiproxy exited during startup, see $TP_LOG"
        fi
        ((SECONDS < deadline)) || die "toxiproxy not answering after 30 s, see $TP_LOG"
        sleep 0.2
    done
    log "toxiproxy: ready on 127.0.0.1:$TOXIPROXY_PORT ($(elapsed "$start") s)"
}

stop_toxiproxy() {
    local pid i
    if pid="$(toxiproxy_pid)"; then
        kill -TERM "$pid"
        for ((i = 0; i < 20; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -KILL "$pid" 2>/dev/null || true
        log "toxiproxy: stopped"
    else
        log "toxiproxy: not running"
    fi
    rm -f "$TP_PID"
}

status_toxiproxy() {
    local pid
    if pid="$(toxiproxy_pid)" && toxiproxy_ready; then
        echo "toxiproxy: running (pid $pid, $TOXIPROXY_VERSION, API :$TOXIPROXY_PORT)"
    elif toxiproxy_ready; then
        echo "toxiproxy: running (/version: $(toxiproxy_version)) on :$TOXIPROXY_PORT, started elsewhere (not from $STATE_DIR)"
    elif [[ -x "$TOXIPROXY_BIN" ]]; then
        echo "toxiproxy: stopped (server $TOXIPROXY_VERSION built: $TOXIPROXY_BIN)"
        return 3
    else
        echo "toxiproxy: stopped (server $TOXIPROXY_VERSION not built yet)"
        return 3
    fi
}

# ------------------------------------------------------------------------------------------------
# Embedded engines: Milvus Lite, Qdrant local mode
# ------------------------------------------------------------------------------------------------
embedded_check() {
    local engine="$1" py
    py="$(python_bin)"
    case "$engine" in
    milvus)
        "$py" -W ignore -c 'import importlib.metadata as m, milvus_lite, pymilvus
print("milvus-lite", m.version("milvus-lite"), "+ pymilvus", m.version("pymilvus"))' 2>/dev/null
        ;;
    qdrant)
        "$py" -W ignore -c 'import importlib.metadata as m, qdrant_client
print("qdrant-client", m.version("qdrant-client"), "(local mode)")' 2>/dev/null
        ;;
    esac
}

status_embedded() {
    local engine="$1" what
    if what="$(embedded_check "$engine")"; then
        echo "$engine: available, embedded ($what)"
    else
        echo "$engine: NOT available: $(python_bin) cannot import it; pip install -c constraints.txt -e '.[$engine]'"
        return 3
    fi
}

# ------------------------------------------------------------------------------------------------
# Docker compose
# ------------------------------------------------------------------------------------------------
COMPOSE_MARKER="$STATE_DIR/docker-compose.started"

start_docker() {
    local start
    start="$(now)"
    # Service names in docker-compose.yml equal the engine names (milvus pulls etcd and minio in).
    log "docker: daemon answers, running docker compose up -d --wait $*"
    docker compose -f "$ROOT/docker-compose.yml" up -d --wait "$@" >&2
    touch "$COMPOSE_MARKER"
    log "docker: all services healthy ($(elapsed "$start") s)"
}

# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------
selected_engines() {
    local e
    if (($# == 0)); then
        printf '%s\n' "${ALL_ENGINES[@]}"
        return
    fi
    for e in "$@"; do
        case "$e" in
        postgres | pgvector) echo postgres ;;
        weaviate | milvus | qdrant | toxiproxy) echo "$e" ;;
        *) die "unknown engine '$e' (choose from: ${ALL_ENGINES[*]})" ;;
        esac
    done
}

cmd_start() {
    local engines e docker_engines=()
    mapfile -t engines < <(selected_engines "$@")
    mkdir -p "$STATE_DIR"
    if docker_mode_available; then
        for e in "${engines[@]}"; do
            [[ "$e" == toxiproxy ]] || docker_engines+=("$e")
        done
        ((${#docker_engines[@]} == 0)) || start_docker "${docker_engines[@]}"
        for e in "${engines[@]}"; do
            case "$e" in
            postgres) echo "export SDK_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/$PG_DB" ;;
            weaviate) echo "export SDK_TEST_WEAVIATE_URL='weaviate://127.0.0.1:8080?grpc=50051'" ;;
            # Real servers from docker-compose.yml instead of the embedded emulations.
            milvus) echo "export SDK_TEST_MILVUS_URL=milvus://127.0.0.1:19530" ;;
            qdrant) echo "export SDK_TEST_QDRANT_URL=qdrant://127.0.0.1:6333" ;;
            # Not in docker-compose.yml: runs natively in front of the containers' published ports.
            toxiproxy)
                start_toxiproxy
                echo "export SDK_TEST_TOXIPROXY_URL=http://127.0.0.1:$TOXIPROXY_PORT"
                ;;
            esac
        done
        return
    fi
    for e in "${engines[@]}"; do
        case "$e" in
        postgres)
            start_postgres
            echo "export SDK_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB"
            ;;
        weaviate)
            start_weaviate
            echo "export SDK_TEST_WEAVIATE_URL='weaviate://127.0.0.1:$WEAVIATE_HTTP_PORT?grpc=$WEAVIATE_GRPC_PORT'"
            ;;
        milvus | qdrant)
            if ! embedded_check "$e" >/dev/null; then
                log "$e: WARNING: $(python_bin) cannot import it; pip install -c constraints.txt -e '.[$e]'"
            else
                log "$e: embedded, nothing to start ($(embedded_check "$e"))"
            fi
            if [[ "$e" == milvus ]]; then
                echo "export SDK_TEST_MILVUS_URL=milvus+lite:$STATE_DIR/milvus.db"
            else
                echo "export SDK_TEST_QDRANT_URL=qdrant+local::memory:"
            fi
            ;;
        toxiproxy)
            start_toxiproxy
            echo "export SDK_TEST_TOXIPROXY_URL=http://127.0.0.1:$TOXIPROXY_PORT"
            ;;
        esac
    done
}

cmd_stop() {
    local engines e
    mapfile -t engines < <(selected_engines "$@")
    if [[ -f "$COMPOSE_MARKER" ]]; then
        if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
            docker compose -f "$ROOT/docker-compose.yml" down >&2
        fi
        rm -f "$COMPOSE_MARKER"
    fi
    for e in "${engines[@]}"; do
        case "$e" in
        postgres) stop_postgres ;;
        weaviate) stop_weaviate ;;
        toxiproxy) stop_toxiproxy ;;
        milvus | qdrant) log "$e: embedded, nothing to stop" ;;
        esac
    done
}

cmd_status() {
    local engines e rc=0
    mapfile -t engines < <(selected_engines "$@")
    if [[ -f "$COMPOSE_MARKER" ]]; then
        echo "docker compose: started by this script ($ROOT/docker-compose.yml)"
        docker compose -f "$ROOT/docker-compose.yml" ps || rc=3
    fi
    for e in "${engines[@]}"; do
        case "$e" in
        postgres) status_postgres || rc=3 ;;
        weaviate) status_weaviate || rc=3 ;;
        toxiproxy) status_toxiproxy || rc=3 ;;
        milvus | qdrant) status_embedded "$e" || rc=3 ;;
        esac
    done
    return "$rc"
}

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    (($# >= 1)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
    esac
}

main "$@"
