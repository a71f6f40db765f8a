#!/usr/bin/env bash
# contract-check.sh — the event contract checked by a validator that is not
# ours: Ajv (ajv-cli, pinned, from npm) in strict mode compiles every JSON
# Schema in events/schemas (draft 2020-12, formats asserted), and validates
# the data of every valid fixture in events/fixtures against the schema of
# its type. The Go tests check the same with santhosh-tekuri/jsonschema; two
# independent implementations agreeing keeps the schemas portable to what
# the Orchestrator and other consumers use.
#
# usage: scripts/contract-check.sh     (installs into .cache/contract on first use)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/contract"
AJV_CLI_VERSION=5.0.0
AJV_FORMATS_VERSION=3.0.1
AJV="$CACHE/node_modules/.bin/ajv"

log() { printf 'contract-check: %s\n' "$*" >&2; }

if [[ ! -x "$AJV" || "$(cat "$CACHE/versions" 2>/dev/null)" != "$AJV_CLI_VERSION $AJV_FORMATS_VERSION" ]]; then
	mkdir -p "$CACHE"
	(cd "$CACHE" && [[ -f package.json ]] || echo '{"private": true}' >"$CACHE/package.json")
	(cd "$CACHE" && npm install --silent --no-audit --no-fund \
		"ajv-cli@$AJV_CLI_VERSION" "ajv-formats@$AJV_FORMATS_VERSION")
	echo "$AJV_CLI_VERSION $AJV_FORMATS_VERSION" >"$CACHE/versions"
fi

ajv() { "$AJV" --spec=draft2020 --strict=true -c "$CACHE/node_modules/ajv-formats" "$@"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0 schemas=0 fixtures=0

for schema in "$ROOT"/events/schemas/*.json; do
	schemas=$((schemas + 1))
	if ! out="$(ajv compile -s "$schema" 2>&1)"; then
		log "schema $(basename "$schema") does not compile in strict mode:"
		echo "$out" >&2
		failed=1
	fi
done

# The data of each valid fixture, validated against the schema of its type.
for dir in "$ROOT"/events/fixtures/*/; do
	name="$(basename "$dir")"
	schema="$ROOT/events/schemas/dev.council.$name.json"
	[[ -f "$schema" ]] || continue # dev.knative.sources.ping: data not ours
	for fixture in "$dir"valid/*.json; do
		[[ -e "$fixture" ]] || continue
		data="$work/$name-$(basename "$fixture")"
		python3 -c 'import json, sys; e = json.load(open(sys.argv[1])); json.dump(e.get("data", {}), open(sys.argv[2], "w"))' \
			"$fixture" "$data"
		fixtures=$((fixtures + 1))
		if ! out="$(ajv validate -s "$schema" -d "$data" 2>&1)"; then
			log "fixture $name/valid/$(basename "$fixture") does not validate:"
			echo "$out" >&2
			failed=1
		fi
	done
done

# The stored state execute writes (version 1), against its schema.
state_schema="$ROOT/events/schemas/state.deliberation.v1.json"
for fixture in "$ROOT"/shared/adapters/natsjs/testdata/state/v1/*.json; do
	[[ -e "$fixture" ]] || continue
	fixtures=$((fixtures + 1))
	if ! out="$(ajv validate -s "$state_schema" -d "$fixture" 2>&1)"; then
		log "stored state $(basename "$fixture") does not validate against $(basename "$state_schema"):"
		echo "$out" >&2
		failed=1
	fi
done

# The stored state execute writes now (version 2: a header and records;
# each fixture is an object of the values by KV key), value by value.
state_schema="$ROOT/events/schemas/state.deliberation.v2.json"
for fixture in "$ROOT"/shared/adapters/natsjs/testdata/state/v2/*.json; do
	[[ -e "$fixture" ]] || continue
	fixtures=$((fixtures + 1))
	values="$work/state-v2-$(basename "$fixture" .json)"
	mkdir -p "$values"
	python3 -c 'import json, sys
for i, (k, v) in enumerate(json.load(open(sys.argv[1])).items()):
    json.dump(v, open("%s/%03d.json" % (sys.argv[2], i), "w"))' "$fixture" "$values"
	for value in "$values"/*.json; do
		if ! out="$(ajv validate -s "$state_schema" -d "$value" 2>&1)"; then
			log "stored state $(basename "$fixture") (v2) holds a value that does not validate against $(basename "$state_schema"):"
			echo "$out" >&2
			failed=1
		fi
	done
done

# The old fleet's envelopes (council.dev/events/legacy): the body of every
# message in its golden files, against the legacy schema.
legacy_schema="$ROOT/events/schemas/legacy.agent.response.v1.json"
for golden in "$ROOT"/events/legacy/testdata/*.golden.json; do
	[[ -e "$golden" ]] || continue
	name="$(basename "$golden" .golden.json)"
	bodies="$(python3 -c 'import json, sys
for i, m in enumerate(json.load(open(sys.argv[1]))):
    path = "%s/legacy-%s-%d.json" % (sys.argv[2], sys.argv[3], i)
    json.dump(m["body"], open(path, "w"))
    print(path)' "$golden" "$work" "$name")"
	while IFS= read -r body; do
		[[ -n "$body" ]] || continue
		fixtures=$((fixtures + 1))
		if ! out="$(ajv validate -s "$legacy_schema" -d "$body" 2>&1)"; then
			log "legacy message $(basename "$body" .json) of $(basename "$golden") does not validate against $(basename "$legacy_schema"):"
			echo "$out" >&2
			failed=1
		fi
	done <<<"$bodies"
done

if ((failed)); then
	log "FAILED"
	exit 1
fi
log "$schemas schemas compile in Ajv strict mode; $fixtures valid fixtures (event data, stored state, legacy messages) validate"
