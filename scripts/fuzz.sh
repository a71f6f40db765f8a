#!/usr/bin/env bash
# fuzz.sh — every fuzz target of every module, each for a fixed time beyond
# its committed corpus (testdata/fuzz/<target>, which `go test` also runs as
# plain tests). A crash fails the run and leaves the failing input under the
# package's testdata/fuzz: commit it with the fix.
#
# go vet is left to make build (it costs more than the fuzzing under load).
# New interesting inputs are minimized for at most 5 s each (Go's default, 60 s,
# can stall a short run on one large input).
#
# usage: scripts/fuzz.sh MODULE...     (make fuzz passes the Makefile's MODULES)
# env:   FUZZ_TIME (8s), FUZZ_WORKERS (GOMAXPROCS)
set -euo pipefail
# The toolchain the go.mod files name (go1.26.10), even where go env says
# GOTOOLCHAIN=local (as the Makefile does).
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_TIME="${FUZZ_TIME:-8s}"

[[ $# -gt 0 ]] || { echo "usage: scripts/fuzz.sh MODULE..." >&2; exit 2; }

# fuzz_one fuzzes one target. Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" when -fuzztime ends while a worker is mid-run
# on a loaded machine (golang/go#75804, fixed in Go 1.27): no input fails,
# none is written. That outcome alone is run once more; a failing input, a
# panic or any other failure fails at once.
fuzz_one() {
	local m=$1 pkg=$2 f=$3 log rc
	for try in 1 2; do
		log=$(mktemp)
		rc=0
		(cd "$ROOT/$m" && go test -vet=off -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZ_TIME" -fuzzminimizetime 5s ${FUZZ_WORKERS:+-parallel "$FUZZ_WORKERS"} "$pkg") 2>&1 | tee "$log" || rc=$?
		if [[ $rc -eq 0 ]]; then
			rm -f "$log"
			return 0
		fi
		if [[ $try -eq 1 ]] && grep -q '^    context deadline exceeded$' "$log" &&
			! grep -qE 'Failing input written|panic:' "$log" &&
			[[ $(grep -c '_test\.go:[0-9]*:' "$log") -eq 0 ]]; then
			echo "fuzz: $f ended with the fuzz coordinator's deadline race (golang/go#75804), no failing input: once more"
			rm -f "$log"
			continue
		fi
		rm -f "$log"
		return "$rc"
	done
}

targets=0
start=$(date +%s)
for m in "$@"; do
	# The module's own packages (go list leaves out nested modules).
	while read -r dir pkg; do
		for f in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$dir"/*_test.go 2>/dev/null | sort -u); do
			echo "== $m $pkg $f ($FUZZ_TIME)"
			fuzz_one "$m" "$pkg" "$f"
			targets=$((targets + 1))
		done
	done < <(cd "$ROOT/$m" && go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}} {{.ImportPath}}{{end}}' ./...)
done
echo "fuzz: $targets targets, $(( $(date +%s) - start ))s"
[[ $targets -gt 0 ]] || { echo "fuzz: no fuzz target found" >&2; exit 1; }
