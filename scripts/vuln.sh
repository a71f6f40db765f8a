#!/usr/bin/env bash
# vuln.sh — govulncheck over every module, against an offline vulnerability
# database built from the golang.org/x/vulndb module (the OSV reports under
# its data/osv, indexed by vulndb's own cmd/indexdb into the layout that
# govulncheck's -db file:// reads). Everything comes from the Go module proxy:
# no request goes to vuln.go.dev. Exits non-zero when a module has a
# vulnerability its code reaches (govulncheck's exit status 3).
#
# usage: scripts/vuln.sh MODULE...     (make vuln passes the Makefile's MODULES)
# env:   VULNDB_VERSION (pinned below; "latest" for the newest the proxy
#        serves), GOVULNCHECK_VERSION
set -euo pipefail
# The toolchain the go.mod files name (go1.26.10), even where go env says
# GOTOOLCHAIN=local (as the Makefile does).
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOVULNCHECK_VERSION="${GOVULNCHECK_VERSION:-v1.9.0}"
VULNDB_VERSION="${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}"
BIN="$ROOT/.cache/bin"

log() { printf 'vuln: %s\n' "$*" >&2; }

[[ $# -gt 0 ]] || { echo "usage: scripts/vuln.sh MODULE..." >&2; exit 2; }

# The vulndb module: its directory in the module cache, and its exact version
# (resolving "latest").
json="$(GOFLAGS=-mod=mod go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION")"
field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}$/\1/p" <<<"$json" | head -1; }
src="$(field Dir)"
version="$(field Version)"
[[ -n "$src" && -d "$src/data/osv" ]] || { log "golang.org/x/vulndb@$VULNDB_VERSION has no data/osv (got: ${src:-nothing})"; exit 1; }

# The tools, built once per version.
stamp="$BIN/.vuln-tools"
if [[ ! -x "$BIN/govulncheck" || ! -x "$BIN/indexdb" || "$(cat "$stamp" 2>/dev/null)" != "$GOVULNCHECK_VERSION $version" ]]; then
	log "installing govulncheck $GOVULNCHECK_VERSION and vulndb's indexdb $version into .cache/bin"
	GOBIN="$BIN" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
	GOBIN="$BIN" go install "golang.org/x/vulndb/cmd/indexdb@$version"
	echo "$GOVULNCHECK_VERSION $version" >"$stamp"
fi

# The database, built once per vulndb version.
db="$ROOT/.cache/vulndb/$version"
if [[ ! -f "$db/index/db.json" ]]; then
	log "building the offline database from $(ls "$src/data/osv" | wc -l) OSV reports of vulndb $version"
	rm -rf "$db.tmp"
	"$BIN/indexdb" -vulns "$src/data/osv" -out "$db.tmp"
	mv "$db.tmp" "$db"
fi
log "database: vulndb $version; $(cd "$ROOT/${1}" && go version)"

failed=""
for m in "$@"; do
	echo "== $m"
	if ! (cd "$ROOT/$m" && "$BIN/govulncheck" -db "file://$db" ./...); then
		failed="$failed $m"
	fi
done
if [[ -n "$failed" ]]; then
	log "reachable vulnerabilities (or a failed scan) in:$failed"
	exit 1
fi
log "no reachable vulnerability in $# modules"
