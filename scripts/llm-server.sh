#!/usr/bin/env bash
# A real OpenAI-compatible LLM server for council's tests and local runs:
# llama.cpp's own C++ server from the prebuilt xllamacpp wheel (no C/C++
# compilation), serving council-tiny, a tiny random-weight llama model that
# make_tiny_gguf.py generates deterministically with a real tokenizer. The
# server decodes several requests at once (parallel slots, continuous
# batching), caches prompts and reports cached_tokens, and answers
# response_format json_schema itself, as vLLM does. Nothing comes from a
# model hub. Everything lives under <repo>/.cache/llm (gitignored).
#
# usage: scripts/llm-server.sh install|model|start|stop|status|url|all
#   install  venv + xllamacpp, gguf, numpy (prebuilt wheels, pinned)
#   model    .cache/llm/council-tiny.gguf (regenerated when the generator changes)
#   start    install + model when missing, then start the server and wait for it
#            (log and pid file: .cache/llm/server-$PORT.{log,pid})
#   stop     stop the server started by start on this port
#   status   say whether it runs
#   url      print the base URL for COUNCIL_LLM_URL
#   all      install + model + start
#
# environment: COUNCIL_LLM_PORT (8088), COUNCIL_LLM_SLOTS (4, requests
# decoded together), PYTHON (python3) for the venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/llm"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
MODEL="$CACHE/council-tiny.gguf"
VOCAB="$CACHE/ggml-vocab-gpt-2.gguf"

XLLAMACPP_VERSION=2026.10.11549
GGUF_VERSION=0.19.0
NUMPY_VERSION=2.4.6
# The tokenizer comes from llama.cpp's tokenizer test files, which the
# xllamacpp source archive vendors (thirdparty/llama.cpp/models). Only that
# one file is read from it; nothing is built.
VOCAB_SDIST_URL="https://files.pythonhosted.org/packages/87/62/b6dfaaf346d3d4fd0e2a2df755f2693b77673f2735da7ba0592af9d2f09e/xllamacpp-$XLLAMACPP_VERSION.tar.gz"
VOCAB_SDIST_SHA256=c17ee1163006f70726abb9f72137830818f3d8cb60bfc34cb232d08428eaa22b
VOCAB_MEMBER="xllamacpp-$XLLAMACPP_VERSION/thirdparty/llama.cpp/models/ggml-vocab-gpt-2.gguf"
MODEL_ALIAS=council-tiny
# COUNCIL_LLM_HOST: the address to listen on (scripts/cluster.sh: 0.0.0.0, so that pods reach it).
HOST="${COUNCIL_LLM_HOST:-127.0.0.1}"
PORT="${COUNCIL_LLM_PORT:-8088}"
SLOTS="${COUNCIL_LLM_SLOTS:-4}"
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
	[[ -x "$PY" ]] && "$PY" - "$XLLAMACPP_VERSION" "$GGUF_VERSION" "$NUMPY_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import xllamacpp, gguf, numpy  # noqa: F401
assert version("xllamacpp") == sys.argv[1], "xllamacpp version"
assert version("gguf") == sys.argv[2], "gguf version"
assert version("numpy") == sys.argv[3], "numpy version"
EOF
}

cmd_install() {
	installed && return 0
	mkdir -p "$CACHE"
	[[ -x "$PY" ]] || run_logged "$CACHE/install.log" "${PYTHON:-python3}" -m venv "$VENV"
	# --only-binary: a wheel or nothing; a source build here would be a bug.
	run_logged "$CACHE/install.log" "$VENV/bin/pip" install --only-binary :all: \
		"xllamacpp==$XLLAMACPP_VERSION" "gguf==$GGUF_VERSION" "numpy==$NUMPY_VERSION"
	installed || die "install finished but xllamacpp does not import; see $CACHE/install.log"
}

# vocab: llama.cpp's GPT-2 vocab-only GGUF, read out of the pinned source
# archive (checked against its SHA-256) without unpacking the rest.
vocab() {
	[[ -s "$VOCAB" ]] && return 0
	run_logged "$CACHE/vocab.log" "$PY" - "$VOCAB_SDIST_URL" "$VOCAB_SDIST_SHA256" "$VOCAB_MEMBER" "$VOCAB" <<'EOF'
import hashlib, io, os, sys, tarfile, urllib.request
url, want, member, out = sys.argv[1:]
with urllib.request.urlopen(url, timeout=120) as r:
    data = r.read()
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"{url}: sha256 {got}, want {want}")
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
    body = tar.extractfile(member).read()
with open(out + ".tmp", "wb") as f:
    f.write(body)
os.replace(out + ".tmp", out)
EOF
}

cmd_model() {
	cmd_install
	# The stamp ties the model to the generator and the inputs that made it.
	local stamp
	stamp="$(cat "$ROOT/scripts/make_tiny_gguf.py" - <<<"$VOCAB_MEMBER $VOCAB_SDIST_SHA256 $GGUF_VERSION $NUMPY_VERSION" | sha256sum | cut -d' ' -f1)"
	if [[ -s "$MODEL" && "$(cat "$MODEL.stamp" 2>/dev/null)" == "$stamp" ]]; then
		return 0
	fi
	vocab
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
	# One thread for generation: this model is so small that a second thread
	# costs more in synchronisation than it brings, and the tests need the
	# other core. The slots decode together, one batch per step.
	setsid nohup "$PY" "$ROOT/scripts/llm_server.py" \
		--model "$MODEL" --alias "$MODEL_ALIAS" --host "$HOST" --port "$PORT" \
		--parallel "$SLOTS" --ctx-per-slot 8192 --threads 1 --threads-batch 2 \
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
	sed -n '2,22s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac
