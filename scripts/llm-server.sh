#!/usr/bin/env bash
# A real OpenAI-compatible LLM server for council's tests and local runs:
# llama.cpp through llama-cpp-python (built from source from PyPI), serving
# council-tiny, a tiny random-weight llama model that make_tiny_gguf.py
# generates deterministically with a real tokenizer. Nothing comes from a
# model hub. Everything lives under <repo>/.cache/llm (gitignored).
#
# usage: scripts/llm-server.sh install|model|start|stop|status|url|all
#   install  venv + llama-cpp-python[server] (built once, wheel kept), gguf, numpy
#   model    .cache/llm/council-tiny.gguf (regenerated when the generator changes)
#   start    install + model when missing, then start the server and wait for it
#            (log and pid file: .cache/llm/server-$PORT.{log,pid})
#   stop     stop the server started by start on this port
#   status   say whether it runs
#   url      print the base URL for COUNCIL_LLM_URL
#   all      install + model + start
#
# environment: COUNCIL_LLM_PORT (8088), PYTHON (python3) for the venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/llm"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
WHEELS="$CACHE/wheels"
SDIST_DIR="$CACHE/sdist"
MODEL="$CACHE/council-tiny.gguf"
VOCAB="$CACHE/ggml-vocab-llama-spm.gguf"

LLAMA_CPP_PYTHON_VERSION=0.3.36
GGUF_VERSION=0.19.0
NUMPY_VERSION=2.4.6
MODEL_ALIAS=council-tiny
HOST=127.0.0.1
PORT="${COUNCIL_LLM_PORT:-8088}"
URL="http://$HOST:$PORT/v1"
LOG="$CACHE/server-$PORT.log"
PIDFILE="$CACHE/server-$PORT.pid"
START_TIMEOUT=120

die() {
	echo "llm-server: $*" >&2
	exit 1
}

# run_logged LOGFILE CMD...: run quietly, show the log tail when it fails.
run_logged() {
	local log="$1"
	shift
	if ! "$@" >"$log" 2>&1; then
		echo "llm-server: failed: $*" >&2
		tail -n 40 "$log" >&2
		exit 1
	fi
}

installed() {
	[[ -x "$PY" ]] && "$PY" - "$LLAMA_CPP_PYTHON_VERSION" "$GGUF_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import llama_cpp.server.app, gguf, numpy, uvicorn  # noqa: F401
assert version("llama_cpp_python") == sys.argv[1], "llama-cpp-python version"
assert version("gguf") == sys.argv[2], "gguf version"
EOF
}

sdist() {
	local f="$SDIST_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
	if [[ ! -s "$f" ]]; then
		mkdir -p "$SDIST_DIR"
		run_logged "$CACHE/sdist.log" "$VENV/bin/pip" download --no-deps --no-binary :all: \
			-d "$SDIST_DIR" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
	fi
	[[ -s "$f" ]] || die "no sdist at $f"
	echo "$f"
}

cmd_install() {
	installed && return 0
	mkdir -p "$CACHE"
	[[ -x "$PY" ]] || run_logged "$CACHE/install.log" "${PYTHON:-python3}" -m venv "$VENV"
	# Build llama-cpp-python from its sdist once (it compiles llama.cpp: minutes),
	# keep the wheel in .cache/llm/wheels so that a new venv installs in seconds.
	if ! compgen -G "$WHEELS/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION-*.whl" >/dev/null; then
		local src
		src="$(sdist)"
		echo "llm-server: building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION from source (a few minutes)..." >&2
		CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" run_logged "$CACHE/build.log" \
			"$VENV/bin/pip" wheel --no-deps -w "$WHEELS" "$src"
	fi
	run_logged "$CACHE/install.log" "$VENV/bin/pip" install --find-links "$WHEELS" \
		"llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" \
		"gguf==$GGUF_VERSION" "numpy==$NUMPY_VERSION"
	installed || die "install finished but llama_cpp.server does not import; see $CACHE/install.log"
}

cmd_model() {
	cmd_install
	# The stamp ties the model to the generator and the versions that made it.
	local stamp
	stamp="$(cat "$ROOT/scripts/make_tiny_gguf.py" - <<<"$LLAMA_CPP_PYTHON_VERSION $GGUF_VERSION $NUMPY_VERSION" | sha256sum | cut -d' ' -f1)"
	if [[ -s "$MODEL" && "$(cat "$MODEL.stamp" 2>/dev/null)" == "$stamp" ]]; then
		return 0
	fi
	if [[ ! -s "$VOCAB" ]]; then
		local src
		src="$(sdist)"
		tar -xzf "$src" -O "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf" >"$VOCAB.tmp"
		mv "$VOCAB.tmp" "$VOCAB"
	fi
	run_logged "$CACHE/model.log" "$PY" "$ROOT/scripts/make_tiny_gguf.py" --vocab "$VOCAB" --out "$MODEL"
	echo "$stamp" >"$MODEL.stamp"
}

running_pid() {
	local pid
	pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

answers() {
	"$PY" - "$URL/models" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    assert r.status == 200
EOF
}

# wait_until_answers: wait for the server on $PORT, fail with the log tail.
wait_until_answers() {
	local deadline=$((SECONDS + START_TIMEOUT))
	until answers; do
		if ! running_pid >/dev/null; then
			echo "llm-server: server exited; last lines of $LOG:" >&2
			tail -n 40 "$LOG" >&2
			rm -f "$PIDFILE"
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			echo "llm-server: no answer from $URL/models after ${START_TIMEOUT}s; last lines of $LOG:" >&2
			tail -n 40 "$LOG" >&2
			echo "llm-server: it still runs (pid $(running_pid)); scripts/llm-server.sh stop ends it" >&2
			exit 1
		fi
		sleep 0.5
	done
}

cmd_start() {
	if running_pid >/dev/null; then
		# Already started (maybe by another test run, maybe still loading).
		wait_until_answers
		return 0
	fi
	cmd_model
	if answers; then
		die "something else already answers on $URL (not started by this script); stop it or set COUNCIL_LLM_PORT"
	fi
	# interrupt_requests false: by default llama-cpp-python cuts off a running
	# stream when another request arrives; council's agents call concurrently.
	# The server handles one completion at a time; others wait their turn.
	# logits_all false: no logits kept for every prompt token (no logprobs
	# then), which makes a cold 2k-token prompt 4x faster. One thread for
	# generation: this model is so small that a second thread costs more in
	# synchronisation than it brings, and the tests need the other core.
	setsid nohup "$PY" "$ROOT/scripts/llm_server.py" \
		--model "$MODEL" --model_alias "$MODEL_ALIAS" \
		--host "$HOST" --port "$PORT" \
		--n_ctx 8192 --n_batch 512 --n_threads 1 --n_threads_batch 2 \
		--logits_all false --interrupt_requests false --verbose false \
		</dev/null >"$LOG" 2>&1 &
	echo $! >"$PIDFILE"
	wait_until_answers
}

cmd_stop() {
	local pid
	if pid="$(running_pid)"; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$PIDFILE"
}

cmd_status() {
	local pid
	if pid="$(running_pid)" && answers; then
		echo "running (pid $pid) at $URL"
	else
		echo "not running"
		return 1
	fi
}

case "${1:-}" in
install) cmd_install ;;
model) cmd_model ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
url) echo "$URL" ;;
all)
	cmd_install
	cmd_model
	cmd_start
	;;
*)
	sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac
