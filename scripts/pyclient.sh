#!/usr/bin/env bash
# pyclient.sh — the old fleet's gRPC stack for the Python-client end-to-end
# test (test/rayexecutor_test.go): grpcio and grpcio-tools, pinned, in a venv
# at .cache/pyclient/venv. The test generates the client from
# functions/rayexecutor/proto with grpcio-tools at run time.
#
#   scripts/pyclient.sh install   create the venv and install (skipped when present)
#   scripts/pyclient.sh python    print the venv's interpreter (the value for COUNCIL_PYCLIENT_PYTHON)
#   scripts/pyclient.sh status    the installed versions
#
# Environment: PYTHON, the interpreter for the venv (default python3; 3.9+).
set -euo pipefail

GRPC_VERSION="1.76.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/pyclient"
VENV="$CACHE/venv"
PYTHON="${PYTHON:-python3}"

log() { printf 'pyclient.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

installed() {
	[[ -x "$VENV/bin/python" ]] &&
		[[ "$("$VENV/bin/python" -c 'import grpc, grpc_tools; print(grpc.__version__)' 2>/dev/null)" == "$GRPC_VERSION" ]]
}

cmd_install() {
	if installed; then
		log "grpcio $GRPC_VERSION already installed in .cache/pyclient/venv"
		return 0
	fi
	local t0=$SECONDS
	mkdir -p "$CACHE"
	[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
	"$VENV/bin/python" -m pip install --quiet --upgrade pip
	"$VENV/bin/python" -m pip install --quiet "grpcio==$GRPC_VERSION" "grpcio-tools==$GRPC_VERSION"
	installed || die "grpcio $GRPC_VERSION did not install into .cache/pyclient/venv"
	log "installed grpcio and grpcio-tools $GRPC_VERSION in $((SECONDS - t0))s"
}

case "${1:-}" in
install) cmd_install ;;
python) installed || die "not installed: run scripts/pyclient.sh install"; echo "$VENV/bin/python" ;;
status)
	installed || die "not installed: run scripts/pyclient.sh install"
	"$VENV/bin/python" -c 'import grpc, google.protobuf; print("grpcio", grpc.__version__, "protobuf", google.protobuf.__version__)'
	;;
*) die "usage: scripts/pyclient.sh install|python|status" ;;
esac
