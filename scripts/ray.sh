#!/usr/bin/env bash
# ray.sh — a real single-node Ray head on loopback, for local runs and the
# rayjobs adapter tests. It shares a machine politely: every port the head
# binds can be set, and stop stops only the head this script started (its
# own process group), never another Ray on the host.
#
#   scripts/ray.sh install   venv at .cache/ray/venv with ray[default]==$RAY_VERSION (skipped when present)
#   scripts/ray.sh start     ray start --head on 127.0.0.1 in a process group of its own, wait for the Jobs API
#   scripts/ray.sh stop      stop that process group (SIGTERM, then SIGKILL after 20 s)
#   scripts/ray.sh status    ray status, and the dashboard's /api/version
#   scripts/ray.sh url       print the dashboard URL (the value for COUNCIL_RAY_ADDRESS)
#   scripts/ray.sh all       install + start
#
# Environment (ports: unset means Ray's default; "random" ones are picked free by Ray):
#   COUNCIL_RAY_DASHBOARD_PORT        dashboard / Jobs API (8265)
#   COUNCIL_RAY_GCS_PORT              GCS, the head's address (6379)
#   COUNCIL_RAY_CLIENT_PORT           Ray Client server (10001)
#   COUNCIL_RAY_AGENT_LISTEN_PORT     dashboard agent HTTP (52365)
#   COUNCIL_RAY_AGENT_GRPC_PORT       dashboard agent gRPC (random)
#   COUNCIL_RAY_RUNTIME_ENV_PORT      runtime env agent (random)
#   COUNCIL_RAY_METRICS_PORT          metrics export (random)
#   COUNCIL_RAY_NODE_MANAGER_PORT     raylet (random)
#   COUNCIL_RAY_OBJECT_MANAGER_PORT   object manager (random)
#   COUNCIL_RAY_MIN_WORKER_PORT, COUNCIL_RAY_MAX_WORKER_PORT  worker ports (10002-19999)
#   COUNCIL_RAY_NUM_CPUS        CPUs the head offers to jobs (default 2)
#   COUNCIL_RAY_OBJECT_STORE    object store bytes (default 200000000; small sandboxes)
#   COUNCIL_RAY_START_TIMEOUT   seconds to wait for the dashboard (default 180)
#   COUNCIL_RAY_TEMP_DIR        Ray's session/log directory (default /tmp/council-ray-<uid>-<GCS port>)
#   PYTHON                      interpreter for the venv (default python3; Ray wants 3.9–3.13)
#
# Then: export COUNCIL_RAY_ADDRESS="$(scripts/ray.sh url)"
set -euo pipefail

RAY_VERSION="2.60.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/ray"
VENV="$CACHE/venv"
PORT="${COUNCIL_RAY_DASHBOARD_PORT:-8265}"
GCS_PORT="${COUNCIL_RAY_GCS_PORT:-6379}"
# Ray's session directory holds unix sockets whose paths must stay short
# (108 bytes), so it lives under /tmp rather than the (possibly deep) repo;
# one per head, so that two heads on one host never share sockets.
TMPDIR_RAY="${COUNCIL_RAY_TEMP_DIR:-/tmp/council-ray-$(id -u)-$GCS_PORT}"
# The process group of the head this script started (all of Ray's daemons,
# and the jobs' workers, inherit it).
PGIDFILE="$CACHE/head-$PORT.pgid"
NUM_CPUS="${COUNCIL_RAY_NUM_CPUS:-2}"
OBJECT_STORE="${COUNCIL_RAY_OBJECT_STORE:-200000000}"
START_TIMEOUT="${COUNCIL_RAY_START_TIMEOUT:-180}"
PYTHON="${PYTHON:-python3}"
URL="http://127.0.0.1:$PORT"

log() { printf 'ray.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

installed() {
	[[ -x "$VENV/bin/ray" ]] &&
		[[ "$("$VENV/bin/python" -c 'import ray; print(ray.__version__)' 2>/dev/null)" == "$RAY_VERSION" ]]
}

cmd_install() {
	if installed; then
		log "ray $RAY_VERSION already installed in .cache/ray/venv"
		return 0
	fi
	local t0=$SECONDS
	mkdir -p "$CACHE"
	[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
	"$VENV/bin/python" -m pip install --quiet --upgrade pip
	"$VENV/bin/python" -m pip install --quiet "ray[default]==$RAY_VERSION"
	installed || die "ray $RAY_VERSION did not install into .cache/ray/venv"
	log "installed ray $RAY_VERSION in $((SECONDS - t0))s"
}

api_up() {
	if command -v curl >/dev/null; then
		curl -fsS --max-time 2 "$URL/api/version" >/dev/null 2>&1
	else
		"$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
			"$URL/api/version" >/dev/null 2>&1
	fi
}

# port_flags: the --*-port flags for every port set in the environment.
port_flags() {
	local var flag
	for pair in \
		COUNCIL_RAY_CLIENT_PORT:--ray-client-server-port \
		COUNCIL_RAY_AGENT_LISTEN_PORT:--dashboard-agent-listen-port \
		COUNCIL_RAY_AGENT_GRPC_PORT:--dashboard-agent-grpc-port \
		COUNCIL_RAY_RUNTIME_ENV_PORT:--runtime-env-agent-port \
		COUNCIL_RAY_METRICS_PORT:--metrics-export-port \
		COUNCIL_RAY_NODE_MANAGER_PORT:--node-manager-port \
		COUNCIL_RAY_OBJECT_MANAGER_PORT:--object-manager-port \
		COUNCIL_RAY_MIN_WORKER_PORT:--min-worker-port \
		COUNCIL_RAY_MAX_WORKER_PORT:--max-worker-port; do
		var="${pair%%:*}"
		flag="${pair#*:}"
		if [[ -n "${!var:-}" ]]; then
			printf '%s\n%s\n' "$flag" "${!var}"
		fi
	done
}

# head_pgid: the process group of the head this script started, if it lives.
head_pgid() {
	local pgid
	pgid="$(cat "$PGIDFILE" 2>/dev/null)" || return 1
	[[ -n "$pgid" ]] && kill -0 -- "-$pgid" 2>/dev/null && echo "$pgid"
}

cmd_start() {
	installed || die "ray is not installed: run scripts/ray.sh install"
	if head_pgid >/dev/null && api_up; then
		log "Ray head (process group $(head_pgid)) already answers at $URL"
		return 0
	fi
	if api_up; then
		die "something else already answers on $URL (not started by this script); stop it or set COUNCIL_RAY_DASHBOARD_PORT and COUNCIL_RAY_GCS_PORT"
	fi
	local t0=$SECONDS flags=()
	mapfile -t flags < <(port_flags)
	mkdir -p "$TMPDIR_RAY" "$CACHE"
	# setsid: the head gets a process group of its own, whose id stop uses.
	# RAY_USAGE_STATS_ENABLED=0 keeps Ray from asking or phoning home.
	RAY_USAGE_STATS_ENABLED=0 setsid --wait bash -c 'echo $$ >"$0"; exec "$@"' "$PGIDFILE" \
		"$VENV/bin/ray" start --head \
		--port "$GCS_PORT" \
		--node-ip-address 127.0.0.1 \
		--include-dashboard true \
		--dashboard-host 127.0.0.1 \
		--dashboard-port "$PORT" \
		"${flags[@]}" \
		--num-cpus "$NUM_CPUS" \
		--num-gpus 0 \
		--object-store-memory "$OBJECT_STORE" \
		--temp-dir "$TMPDIR_RAY" \
		--disable-usage-stats ||
		{ dump_logs; cmd_stop; die "ray start failed"; }
	local deadline=$((SECONDS + START_TIMEOUT))
	until api_up; do
		if ((SECONDS >= deadline)); then
			dump_logs
			die "Ray dashboard did not answer at $URL/api/version within ${START_TIMEOUT}s"
		fi
		sleep 1
	done
	log "Ray head up in $((SECONDS - t0))s (process group $(cat "$PGIDFILE")); dashboard and Jobs API at $URL"
	log "export COUNCIL_RAY_ADDRESS=$URL"
}

dump_logs() {
	local dir="$TMPDIR_RAY/session_latest/logs"
	[[ -d "$dir" ]] || { log "no Ray logs under $dir"; return 0; }
	local f
	for f in "$dir"/dashboard.log "$dir"/dashboard.err "$dir"/gcs_server.err "$dir"/raylet.err "$dir"/dashboard_agent.log; do
		[[ -s "$f" ]] || continue
		log "---- tail $f"
		tail -n 40 "$f" >&2
	done
}

cmd_stop() {
	local pgid
	if ! pgid="$(head_pgid)"; then
		rm -f "$PGIDFILE"
		log "no Ray head started by this script on port $PORT; nothing to stop"
		return 0
	fi
	kill -TERM -- "-$pgid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 -- "-$pgid" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL -- "-$pgid" 2>/dev/null || true
	rm -f "$PGIDFILE"
	log "stopped the Ray head in process group $pgid"
}

cmd_status() {
	installed || die "ray is not installed: run scripts/ray.sh install"
	"$VENV/bin/ray" status --address "127.0.0.1:$GCS_PORT" || true
	if api_up; then
		log "Jobs API answers at $URL"
	else
		die "Jobs API does not answer at $URL"
	fi
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
url) echo "$URL" ;;
all)
	cmd_install
	cmd_start
	;;
*)
	echo "usage: $0 {install|start|stop|status|url|all}" >&2
	exit 2
	;;
esac
