#!/usr/bin/env bash
# images.sh — build council's function images with ko, offline.
#
#   scripts/images.sh          tools + base + build + tarballs + sizes (make images)
#   scripts/images.sh tools    install ko and crane into .cache/bin (pinned versions)
#   scripts/images.sh resolve  also render knative/overlays/prod with the built images
#                              (kubectl kustomize | ko resolve) into .cache/images/council-prod.yaml
#
# Images: execute, generate, critique, rayexecutor and, when functions/execute/cmd/council-agent
# exists, council-agent — each a static Go binary (CGO_ENABLED=0, -trimpath,
# -ldflags "-s -w", see .ko.yaml) on a distroless base, running as uid 65532.
#
# No registry outside this machine is needed, or reached. Unless
# COUNCIL_REGISTRY names one, the script serves a registry on loopback
# (`crane registry serve`, blobs kept in .cache/registry) for as long as it
# runs, assembles the base image itself (one layer: /etc/passwd and
# /etc/group with a nonroot user, this machine's CA certificates, an empty
# /tmp) and pushes it there, then builds with
#   KO_DOCKER_REPO=<registry>/council KO_DEFAULTBASEIMAGE=<registry>/base:latest
# from the repository root (go.work resolves every council.dev module; each
# module also builds alone with GOWORK=off). Every image is then saved as an
# OCI image-layout archive, .cache/images/<name>.tar (push it with `skopeo
# copy oci-archive:<file> docker://<ref>`, or unpack it and `crane push <dir>
# <ref>`), and a size table is printed.
#
# Needs go, jq, tar, gzip and column; nothing else is installed system-wide.
#
# Environment:
#   COUNCIL_REGISTRY       push to this registry (host:port) instead of a loopback one, e.g.
#                          a kind cluster's local registry; its base image must exist or be pushable
#   COUNCIL_BASE_IMAGE     base image to build on instead of the assembled one
#                          (e.g. cgr.dev/chainguard/static:latest where a registry is reachable)
#   COUNCIL_REGISTRY_PORT  port of the loopback registry (default 5055; a free one when taken)
#   COUNCIL_IMAGES_DIR     where the archives go (default .cache/images)
#   CA_BUNDLE              CA certificates for the base (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

KO_VERSION="v0.19.1"
GGCR_VERSION="v0.21.7"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
OUT="${COUNCIL_IMAGES_DIR:-$CACHE/images}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
REGISTRY_PORT="${COUNCIL_REGISTRY_PORT:-5055}"
KO="$BIN/ko"
CRANE="$BIN/crane"

log() { printf 'images.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# tool_version prints the module version a Go binary was built from.
tool_version() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'; }

cmd_tools() {
	mkdir -p "$BIN"
	if [[ "$(tool_version "$KO")" != "$KO_VERSION" ]]; then
		log "installing ko $KO_VERSION (first time: a few minutes)"
		GOBIN="$BIN" GOWORK=off go install "github.com/google/ko@$KO_VERSION"
	fi
	if [[ "$(tool_version "$CRANE")" != "$GGCR_VERSION" ]]; then
		log "installing crane $GGCR_VERSION"
		GOBIN="$BIN" GOWORK=off go install "github.com/google/go-containerregistry/cmd/crane@$GGCR_VERSION"
	fi
}

REGISTRY_PID=""
stop_registry() {
	if [[ -n "$REGISTRY_PID" ]]; then
		kill "$REGISTRY_PID" 2>/dev/null || true
		wait "$REGISTRY_PID" 2>/dev/null || true
	fi
}

# start_registry serves a registry on loopback and sets REGISTRY. The port is
# fixed (COUNCIL_REGISTRY_PORT) because ko writes the base image's name,
# port included, into every image's manifest: a fixed port keeps the digests
# the same from one build to the next. When it is taken, any free port will do.
start_registry() {
	mkdir -p "$CACHE/registry"
	trap stop_registry EXIT
	local want
	for want in "$REGISTRY_PORT" 0; do
		serve_registry "$want" && break
		[[ "$want" == 0 ]] && die "crane registry serve did not start: $(cat "$CACHE/registry.log")"
		log "port $want is taken: using a free one (the image digests will differ from a build on $want)"
	done
	REGISTRY="127.0.0.1:$SERVED_PORT"
	log "registry on $REGISTRY (blobs in .cache/registry)"
}

# serve_registry starts crane's registry on 127.0.0.1:$1 (0: any free
# port) and sets REGISTRY_PID and SERVED_PORT.
SERVED_PORT=""
serve_registry() {
	local logf="$CACHE/registry.log"
	"$CRANE" registry serve --address "127.0.0.1:$1" --disk "$CACHE/registry" >"$logf" 2>&1 &
	REGISTRY_PID=$!
	for _ in $(seq 1 100); do
		SERVED_PORT="$(sed -n 's/.*serving on port \([0-9][0-9]*\).*/\1/p' "$logf" | head -1)"
		if [[ -n "$SERVED_PORT" ]]; then
			return 0
		fi
		if ! kill -0 "$REGISTRY_PID" 2>/dev/null; then
			REGISTRY_PID=""
			return 1
		fi
		sleep 0.1
	done
	stop_registry
	REGISTRY_PID=""
	return 1
}

# push_base assembles the base image and pushes it to $REGISTRY/base:latest.
push_base() {
	[[ -r "$CA_BUNDLE" ]] || die "no CA bundle at $CA_BUNDLE (install ca-certificates or set CA_BUNDLE)"
	local dir
	dir="$(mktemp -d)"
	mkdir -p "$dir/root/etc/ssl/certs" "$dir/root/tmp" "$dir/root/home/nonroot"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/root/etc/passwd"
	printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/root/etc/group"
	cp "$CA_BUNDLE" "$dir/root/etc/ssl/certs/ca-certificates.crt"
	chmod 0644 "$dir/root/etc/passwd" "$dir/root/etc/group" "$dir/root/etc/ssl/certs/ca-certificates.crt"
	chmod 1777 "$dir/root/tmp"
	tar -C "$dir/root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$dir/base.tar" etc tmp
	# /home/nonroot belongs to the user it is for.
	tar -C "$dir/root" --owner=65532 --group=65532 --numeric-owner --mtime=@0 -rf "$dir/base.tar" home
	"$CRANE" append --oci-empty-base -f "$dir/base.tar" -t "$REGISTRY/base:unconfigured" >/dev/null 2>&1 ||
		die "crane append: cannot push the base layer to $REGISTRY"
	"$CRANE" mutate --set-platform linux/amd64 --user 65532:65532 --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
		-t "$REGISTRY/base:latest" "$REGISTRY/base:unconfigured" >/dev/null 2>&1 ||
		die "crane mutate: cannot configure the base image"
	rm -rf "$dir"
	log "base image $REGISTRY/base:latest (CA certificates, nonroot 65532)"
}

# commands prints the import paths of the images to build.
commands() {
	local c
	for c in execute generate critique rayexecutor; do
		echo "./functions/$c/cmd/$c"
	done
	if [[ -d "$ROOT/functions/execute/cmd/council-agent" ]]; then
		echo "./functions/execute/cmd/council-agent"
	fi
}

# human prints a byte count in MB with one decimal.
human() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }

cmd_build() {
	local t
	for t in go jq tar gzip column; do
		command -v "$t" >/dev/null || die "needs $t (apt-get install jq bsdextrautils for jq and column)"
	done
	cmd_tools
	if [[ -n "${COUNCIL_REGISTRY:-}" ]]; then
		REGISTRY="$COUNCIL_REGISTRY"
	else
		start_registry
	fi
	local base="${COUNCIL_BASE_IMAGE:-}"
	if [[ -z "$base" ]]; then
		push_base
		base="$REGISTRY/base:latest"
	fi
	export KO_DOCKER_REPO="$REGISTRY/council" KO_DEFAULTBASEIMAGE="$base" CGO_ENABLED=0
	mkdir -p "$OUT"
	local -a cmds
	mapfile -t cmds < <(commands)
	log "building ${#cmds[@]} images with ko $KO_VERSION on $base"
	local t0=$SECONDS
	# ko logs every blob (and git's state) on stderr: kept in ko.log, shown on failure.
	if ! (cd "$ROOT" && "$KO" build --base-import-paths --sbom=none --image-refs "$OUT/refs.txt" "${cmds[@]}" >/dev/null 2>"$OUT/ko.log"); then
		grep -v '^\(??\| M\|[AD] \) ' "$OUT/ko.log" | tail -40 >&2
		die "ko build failed (the whole log: ${OUT#"$ROOT"/}/ko.log)"
	fi
	log "built in $((SECONDS - t0))s"

	local -a refs
	mapfile -t refs <"$OUT/refs.txt"
	[[ ${#refs[@]} -eq ${#cmds[@]} ]] || die "ko built ${#refs[@]} images for ${#cmds[@]} commands"
	local base_digest
	base_digest="$("$CRANE" digest "$base")"
	local base_layers
	base_layers="$("$CRANE" manifest "$base" | jq '.layers | length')"

	local rows="" i
	for i in "${!cmds[@]}"; do
		local cmd="${cmds[$i]}" ref="${refs[$i]}"
		local img="${cmd##*/}"
		local manifest config
		manifest="$("$CRANE" manifest "$ref")"
		config="$("$CRANE" config "$ref")"
		# Every image runs its binary as the base's nonroot user.
		local user entry
		user="$(jq -r '.config.User // ""' <<<"$config")"
		entry="$(jq -r '.config.Entrypoint | join(" ")' <<<"$config")"
		[[ "$user" == "65532:65532" || -n "${COUNCIL_BASE_IMAGE:-}" ]] || die "$img: user is '$user', want 65532:65532"
		local compressed app app_raw
		compressed="$(jq '[.layers[].size] | add + 0' <<<"$manifest")"
		compressed=$((compressed + $(jq '.config.size' <<<"$manifest")))
		# The layers ko added over the base: the binary (and kodata, none here).
		app="$(jq --argjson n "$base_layers" '[.layers[$n:][].size] | add + 0' <<<"$manifest")"
		app_raw=0
		local d
		for d in $(jq -r --argjson n "$base_layers" '.layers[$n:][].digest' <<<"$manifest"); do
			app_raw=$((app_raw + $("$CRANE" blob "${ref%@*}@$d" | gzip -dc | wc -c)))
		done
		local layout="$OUT/$img.oci"
		rm -rf "$layout" "$OUT/$img.tar"
		"$CRANE" pull --format=oci "$ref" "$layout"
		tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$OUT/$img.tar" .
		rm -rf "$layout"
		local tarball
		tarball="$(stat -c %s "$OUT/$img.tar")"
		rows+="$img	${ref#*@sha256:}	$(jq '.layers | length' <<<"$manifest")	$(human "$compressed")	$(human "$app")	$(human "$app_raw")	$(human "$tarball")	$entry"$'\n'
	done
	{
		printf 'IMAGE\tDIGEST\tLAYERS\tCOMPRESSED\tBINARY LAYER\tBINARY\tARCHIVE\tENTRYPOINT\n'
		printf '%s' "$rows" | awk -F'\t' -v OFS='\t' '{ $2 = substr($2, 1, 12); print }'
	} | column -t -s $'\t'
	log "base ${base} @ ${base_digest:7:12}: $base_layers layer(s); COMPRESSED = manifest config + every layer as pulled;"
	log "BINARY LAYER / BINARY = the ko layer compressed / uncompressed; archives in ${OUT#"$ROOT"/}/<image>.tar"
	log "references: ${OUT#"$ROOT"/}/refs.txt"
}

cmd_resolve() {
	cmd_build
	command -v kubectl >/dev/null || die "resolve needs kubectl (for kubectl kustomize)"
	if ! (cd "$ROOT" && kubectl kustomize knative/overlays/prod | "$KO" resolve --base-import-paths --sbom=none -f - >"$OUT/council-prod.yaml" 2>"$OUT/ko.log"); then
		tail -40 "$OUT/ko.log" >&2
		die "kubectl kustomize knative/overlays/prod | ko resolve failed"
	fi
	local left
	left="$(grep -c 'ko://' "$OUT/council-prod.yaml" || true)"
	[[ "$left" == 0 ]] || die "$left ko:// references left unresolved in ${OUT#"$ROOT"/}/council-prod.yaml"
	log "prod manifests with resolved images: ${OUT#"$ROOT"/}/council-prod.yaml"
	grep -E '^\s+image: ' "$OUT/council-prod.yaml" | sort -u >&2
}

case "${1:-all}" in
all | build) cmd_build ;;
tools) cmd_tools ;;
resolve) cmd_resolve ;;
*) die "unknown command '${1}' (want: all, tools, resolve)" ;;
esac
