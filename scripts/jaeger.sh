#!/usr/bin/env bash
# jaeger.sh — a real trace backend for the tracing tests and `council dev -trace`:
# Jaeger v2 (a Go program built on the OpenTelemetry Collector), built once from
# source with `go install` into .cache/bin (cached: skipped when the binary of
# the pinned version is there). The tests start their own Jaeger from that
# binary (all-in-one, in-memory storage, ports of their choosing); this script
# only installs it, and can start one on the default ports for a look by hand.
#
#   scripts/jaeger.sh install   go install github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION (skipped when present)
#   scripts/jaeger.sh path      print the binary's path (the value for COUNCIL_JAEGER_BIN)
#   scripts/jaeger.sh version   print the installed binary's version
#   scripts/jaeger.sh start     start it on the default ports (OTLP 4317/4318, UI and query API 16686) in a process group of its own
#   scripts/jaeger.sh stop      stop that process group
#   scripts/jaeger.sh all       install + start
#
# Environment: GOBIN is ignored; the binary always goes to .cache/bin/jaeger-$JAEGER_VERSION
# (a symlink .cache/bin/jaeger points at it).
set -euo pipefail

JAEGER_VERSION="v1.76.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/bin"
BIN="$BIN_DIR/jaeger-$JAEGER_VERSION"
CACHE="$ROOT/.cache/jaeger"
PGIDFILE="$CACHE/jaeger.pgid"

log() { printf 'jaeger.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

installed() { [[ -x "$BIN" ]]; }

cmd_install() {
	if installed; then
		log "jaeger $JAEGER_VERSION already installed at .cache/bin/jaeger-$JAEGER_VERSION"
		return 0
	fi
	local t0=$SECONDS dir
	mkdir -p "$BIN_DIR"
	# `go install github.com/jaegertracing/jaeger/cmd/jaeger@VERSION` refuses
	# this module (its go.mod has a replace directive), so: fetch the module
	# with the module proxy (go mod download, checksummed against sum.golang.org)
	# and build cmd/jaeger inside it, as its own main module, with its go.sum.
	# GOTOOLCHAIN=auto fetches the Go that its go.mod names when ours is older.
	log "building jaeger $JAEGER_VERSION (go build from the module; minutes on a small machine)"
	dir="$(cd "$ROOT" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
	[[ -n "$dir" && -d "$dir/cmd/jaeger" ]] || die "go mod download github.com/jaegertracing/jaeger@$JAEGER_VERSION failed"
	(cd "$dir" && GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 \
		go build -trimpath -o "$BIN.tmp" \
		-ldflags "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" \
		./cmd/jaeger)
	mv "$BIN.tmp" "$BIN"
	ln -sfn "jaeger-$JAEGER_VERSION" "$BIN_DIR/jaeger"
	installed || die "jaeger $JAEGER_VERSION did not install"
	log "installed jaeger $JAEGER_VERSION in $((SECONDS - t0))s"
}

cmd_path() {
	installed || die "jaeger $JAEGER_VERSION is not installed: scripts/jaeger.sh install"
	echo "$BIN"
}

cmd_version() {
	installed || die "jaeger $JAEGER_VERSION is not installed: scripts/jaeger.sh install"
	"$BIN" version 2>/dev/null | tail -1
}

cmd_start() {
	installed || die "jaeger $JAEGER_VERSION is not installed: scripts/jaeger.sh install"
	mkdir -p "$CACHE"
	if [[ -f "$PGIDFILE" ]] && kill -0 -- "-$(cat "$PGIDFILE")" 2>/dev/null; then
		log "already running (process group $(cat "$PGIDFILE"))"
		return 0
	fi
	setsid "$BIN" >"$CACHE/jaeger.log" 2>&1 &
	echo $! >"$PGIDFILE"
	for _ in $(seq 1 60); do
		if curl -fsS "http://127.0.0.1:16686/api/services" >/dev/null 2>&1; then
			log "started: UI http://127.0.0.1:16686, OTLP http://127.0.0.1:4318 (log: .cache/jaeger/jaeger.log)"
			return 0
		fi
		sleep 0.5
	done
	die "jaeger did not answer on 127.0.0.1:16686 (see .cache/jaeger/jaeger.log)"
}

cmd_stop() {
	[[ -f "$PGIDFILE" ]] || { log "not running"; return 0; }
	kill -TERM -- "-$(cat "$PGIDFILE")" 2>/dev/null || true
	rm -f "$PGIDFILE"
	log "stopped"
}

case "${1:-}" in
install) cmd_install ;;
path) cmd_path ;;
version) cmd_version ;;
start) cmd_start ;;
stop) cmd_stop ;;
all) cmd_install && cmd_start ;;
*) die "usage: $0 install|path|version|start|stop|all" ;;
esac
