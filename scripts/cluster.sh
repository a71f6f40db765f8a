#!/usr/bin/env bash
# cluster.sh — council on a real Knative cluster, built from source on this
# machine, on demand (make cluster-test). Not part of .ci/run: a cold build
# takes 35–45 minutes on 2 cores; a warm one (builds cached under
# .cache/cluster) a few.
#
#   scripts/cluster.sh test     everything: deps, build, up, deploy, check, down (down also on failure)
#   scripts/cluster.sh deps     Debian packages (containerd, runc, CNI plugins, etcd, conntrack, iptables, openssl, jq)
#   scripts/cluster.sh build    Kubernetes v1.37.2, CoreDNS, nats-server, ko/crane; images of Knative Serving 1.15,
#                               Eventing 1.15.2 + eventing-natss 1.15.1 (from ../shared/thirdparty or
#                               COUNCIL_THIRDPARTY), our KIngress and council's functions, in a loopback registry
#   scripts/cluster.sh up       a single-node cluster: containerd, etcd, kube-apiserver, controller-manager,
#                               scheduler, kubelet, kube-proxy, CoreDNS, NATS JetStream, the LLM server
#   scripts/cluster.sh deploy   Knative Serving + KIngress, Eventing + MT channel broker + NatsJetStreamChannel,
#                               then knative/overlays/dev as is
#   scripts/cluster.sh check    the checks (cd test && go test -tags cluster -run TestCluster)
#   scripts/cluster.sh down     stop everything by PID, remove iptables rules, nft tables, the bridge, network
#                               namespaces, mounts and cgroups the run made, restore the sysctls it changed
#   scripts/cluster.sh env      print the environment a shell needs to use the cluster (KUBECONFIG, PATH)
#   COUNCIL_CLUSTER_OIDC=on     build, deploy and check knative/cluster/oidc instead of the dev overlay:
#                               the OIDC component (knative/components/oidc, knative/platform/oidc) on a
#                               Broker over Knative's InMemoryChannel, which sends OIDC tokens (eventing-natss
#                               1.15.1 does not); check runs the sender-identity check
#
# What runs where: every process runs on this machine, in the background,
# with its PID in .cache/cluster/run/pids and its log in .cache/cluster/run/logs.
# Pods live in network namespaces on the bridge cni0 (10.244.0.0/24); the
# host reaches pods and ClusterIPs directly. NATS, CoreDNS and the LLM
# server run on the host and are reached from pods through selector-less
# Services (nats.nats-io, kube-dns.kube-system, vllm.vllm).
#
# Settings this machine needs (Firecracker VM, cgroup v1, no systemd, root
# without CAP_SYS_RESOURCE) are the ones ../shared/brief/KNATIVE-CLUSTER.md
# records: containerd restrict_oom_score_adj, kubelet failCgroupV1=false and
# cgroupfs, Kubernetes 1.37.x (later releases drop cgroup v1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
C="$ROOT/.cache/cluster"
BIN="$C/bin"
RUN="$C/run"
LOGS="$RUN/logs"
PIDS="$RUN/pids"
PKI="$RUN/pki"
SRC="$C/src"
YAML="$C/yaml"
THIRDPARTY="${COUNCIL_THIRDPARTY:-$ROOT/../shared/thirdparty}"

K8S_VERSION="v1.37.2"
K8S_STAGING_VERSION="v0.37.2"
COREDNS_VERSION="v1.15.0"
NATS_SERVER_VERSION="v2.15.2"
SERVING_VERSION="v0.42.2"
EVENTING_TARBALL="knative-eventing-v1.15.2.tar.gz"
NATSS_TARBALL="knative-eventing-natss-v1.15.1.tar.gz"
REG_PORT="${COUNCIL_CLUSTER_REGISTRY_PORT:-5056}"
REG="127.0.0.1:$REG_PORT"
LLM_PORT="${COUNCIL_CLUSTER_LLM_PORT:-8089}"
NODE="council-node"
POD_CIDR="10.244.0.0/24"
SERVICE_CIDR="10.96.0.0/16"
DNS_IP="10.96.0.10"
INGRESS_CLASS="council.ingress.networking.knative.dev"
# CPU requests on a 2-core node: Knative's own Deployments, and each
# Knative pod's queue-proxy (25m by default). See fit_requests.
SYSTEM_CPU="${COUNCIL_CLUSTER_SYSTEM_CPU:-20m}"
SIDECAR_CPU="${COUNCIL_CLUSTER_SIDECAR_CPU:-10m}"
OIDC="${COUNCIL_CLUSTER_OIDC:-off}"
[[ "$OIDC" == on || "$OIDC" == off ]] || { echo "COUNCIL_CLUSTER_OIDC=$OIDC: want on or off" >&2; exit 2; }
# The image knative/base/dead-letter.yaml names, under gcr.io.
EVENT_DISPLAY="knative-releases/knative.dev/eventing/cmd/event_display"

export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export PATH="$BIN:$ROOT/.cache/bin:$PATH"
export KUBECONFIG="$PKI/admin.kubeconfig"
KO="$ROOT/.cache/bin/ko"
CRANE="$ROOT/.cache/bin/crane"

T0=$SECONDS
log() { printf 'cluster.sh [%4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# step runs a named step and prints how long it took.
step() {
	local name="$1" t=$SECONDS
	shift
	log "▶ $name"
	"$@"
	log "✓ $name ($((SECONDS - t))s)"
}

host_ip() {
	ip -4 route get 1.1.1.1 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit } }'
}

# ---------------------------------------------------------------- deps

cmd_deps() {
	local want=(containerd runc containernetworking-plugins etcd-server etcd-client conntrack socat iptables nftables openssl jq)
	local missing=() p
	for p in "${want[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "apt-get install ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$C/apt.log" 2>&1 ||
			{ DEBIAN_FRONTEND=noninteractive apt-get update >>"$C/apt.log" 2>&1 &&
				DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$C/apt.log" 2>&1; } ||
			die "apt-get install failed: $(tail -5 "$C/apt.log")"
	fi
}

# ---------------------------------------------------------------- build

# gobuild builds Go binaries quietly, at low priority.
gobuild() { nice -n 10 env GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 go "$@"; }

build_k8s() {
	if [[ -x "$BIN/kubelet" ]] && "$BIN/kube-apiserver" --version 2>/dev/null | grep -q "$K8S_VERSION"; then
		log "Kubernetes $K8S_VERSION: cached"
		return
	fi
	local d="$SRC/k8s"
	mkdir -p "$d" "$BIN"
	local gomod
	gomod="$(GOWORK=off GOFLAGS= go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod)"
	{
		printf 'module council.dev/cluster/k8s\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
		sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$K8S_STAGING_VERSION"'#p' "$gomod"
		printf ')\n'
	} >"$d/go.mod"
	local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
	local pkgs=() c
	for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
	(cd "$d" && GOWORK=off GOFLAGS=-mod=mod go get "${pkgs[@]/%/@$K8S_VERSION}" >/dev/null 2>"$d/get.log") ||
		die "go get kubernetes: $(tail -5 "$d/get.log")"
	local v=k8s.io/component-base/version
	(cd "$d" && gobuild build -trimpath -o "$BIN/" \
		-ldflags "-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=37 -X $v.gitTreeState=clean" \
		"${pkgs[@]}") || die "building Kubernetes failed"
}

build_coredns() {
	local d="$SRC/coredns"
	mkdir -p "$d"
	cat >"$d/main.go.want" <<'EOF'
// A CoreDNS with only the plugins a test cluster needs (they register
// themselves on import).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
)

func init() {
	dnsserver.Directives = []string{"bind", "errors", "log", "loadbalance", "cache", "kubernetes", "forward"}
}

func main() { coremain.Run() }
EOF
	if cmp -s "$d/main.go.want" "$d/main.go" && "$BIN/coredns" -version 2>/dev/null | grep -q "${COREDNS_VERSION#v}"; then
		log "CoreDNS $COREDNS_VERSION: cached"
		return
	fi
	mv "$d/main.go.want" "$d/main.go"
	printf 'module council.dev/cluster/coredns\n\ngo 1.26.0\n' >"$d/go.mod"
	(cd "$d" && GOWORK=off GOFLAGS=-mod=mod go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null 2>"$d/get.log" &&
		GOWORK=off GOFLAGS=-mod=mod go mod tidy >>"$d/get.log" 2>&1) || die "go get coredns: $(tail -5 "$d/get.log")"
	(cd "$d" && gobuild build -trimpath -ldflags "-s -w" -o "$BIN/coredns" .) || die "building CoreDNS failed"
}

build_nats() {
	if "$BIN/nats-server" --version 2>/dev/null | grep -q "${NATS_SERVER_VERSION}"; then
		log "nats-server $NATS_SERVER_VERSION: cached"
		return
	fi
	GOBIN="$BIN" gobuild install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION" || die "building nats-server failed"
}

# registry_up serves the loopback registry the images are pushed to and
# containerd pulls from (also registry.k8s.io's mirror, for the pause image).
registry_up() {
	if [[ -f "$C/registry.pid" ]] && kill -0 "$(cat "$C/registry.pid")" 2>/dev/null; then
		return
	fi
	mkdir -p "$C/registry"
	"$CRANE" registry serve --address "$REG" --disk "$C/registry" >"$C/registry.log" 2>&1 &
	echo $! >"$C/registry.pid"
	local i
	for i in $(seq 1 100); do
		curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && return
		sleep 0.1
	done
	die "registry on $REG did not start: $(tail -3 "$C/registry.log")"
}

registry_down() {
	if [[ -f "$C/registry.pid" ]]; then
		kill "$(cat "$C/registry.pid")" 2>/dev/null || true
		rm -f "$C/registry.pid"
	fi
}

# ko_config writes a .ko.yaml that builds every image on our own base
# (nothing can be pulled here) and prints its directory.
ko_config() {
	mkdir -p "$C/ko"
	printf 'defaultBaseImage: %s/base:latest\ndefaultPlatforms: [linux/amd64]\n' "$REG" >"$C/ko/.ko.yaml"
	echo "$C/ko"
}

# ko_resolve DIR OUT ARGS...: ko resolve in DIR, output to OUT; cached
# while OUT exists and its images are still in the registry.
ko_resolve() {
	local dir="$1" out="$2"
	shift 2
	if [[ -s "$out" ]] && cached_images_present "$out"; then
		log "$(basename "$out"): cached"
		return
	fi
	local cfg
	cfg="$(ko_config)"
	(cd "$dir" && nice -n 10 env KO_CONFIG_PATH="$cfg" KO_DOCKER_REPO="$REG/knative" KO_DEFAULTBASEIMAGE="$REG/base:latest" \
		CGO_ENABLED=0 "$KO" resolve --base-import-paths --sbom=none --platform=linux/amd64 "$@" >"$out.tmp" 2>"$out.log") ||
		{ tail -30 "$out.log" >&2; die "ko resolve in $dir failed (log: $out.log)"; }
	mv "$out.tmp" "$out"
}

cached_images_present() {
	local img
	for img in $(grep -oE "$REG/[^ \"']+@sha256:[0-9a-f]{64}" "$1" | sort -u); do
		"$CRANE" manifest "$img" >/dev/null 2>&1 || return 1
	done
}

build_pause() {
	if "$CRANE" manifest "$REG/pause:3.10" >/dev/null 2>&1; then
		return
	fi
	local d="$SRC/pause"
	mkdir -p "$d"
	cat >"$d/main.go" <<'EOF'
// pause holds a pod's namespaces until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
EOF
	printf 'module council.dev/cluster/pause\n\ngo 1.26.0\n' >"$d/go.mod"
	(cd "$d" && KO_CONFIG_PATH="$(ko_config)" KO_DOCKER_REPO="$REG/pause" CGO_ENABLED=0 GOWORK=off \
		"$KO" build --bare --sbom=none --platform=linux/amd64 -t 3.10 . >/dev/null 2>"$d/ko.log") ||
		die "pause image: $(tail -5 "$d/ko.log")"
	# ko's default base runs as nonroot; the pause container may run as anyone.
}

build_serving() {
	local d="$SRC/serving"
	mkdir -p "$d" "$YAML"
	if [[ ! -f "$d/go.mod" ]]; then
		printf 'module council.dev/cluster/serving\n\ngo 1.26.0\n' >"$d/go.mod"
		cat >"$d/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "knative.dev/serving/cmd/activator"
	_ "knative.dev/serving/cmd/autoscaler"
	_ "knative.dev/serving/cmd/controller"
	_ "knative.dev/serving/cmd/queue"
	_ "knative.dev/serving/cmd/webhook"
)
EOF
		(cd "$d" && GOWORK=off GOFLAGS=-mod=mod go get "knative.dev/serving@$SERVING_VERSION" >/dev/null 2>"$d/get.log" &&
			GOWORK=off GOFLAGS=-mod=mod go mod tidy >>"$d/get.log" 2>&1) || die "go get serving: $(tail -5 "$d/get.log")"
	fi
	local mod net caching
	mod="$(cd "$d" && GOWORK=off go list -m -f '{{.Dir}}' knative.dev/serving)"
	net="$(cd "$d" && GOWORK=off go list -m -f '{{.Dir}}' knative.dev/networking)"
	caching="$(cd "$d" && GOWORK=off go list -m -f '{{.Dir}}' knative.dev/caching)"
	# The serving module zip drops config/core's symlinks into networking and
	# caching: copy the real files next to the rest.
	rm -rf "$d/config"
	cp -r "$mod/config/core" "$d/config"
	chmod -R u+w "$d/config"
	cp "$net/config/ingress.yaml" "$net/config/serverlessservice.yaml" "$net/config/certificate.yaml" \
		"$net/config/domain-claim.yaml" "$net/config/config-network.yaml" "$d/config/" 2>/dev/null ||
		cp "$net"/config/*.yaml "$d/config/"
	cp "$caching/config/image.yaml" "$d/config/"
	find "$d/config" -xtype l -delete
	(cd "$d" && GOWORK=off GOFLAGS=-mod=mod go mod download >/dev/null 2>&1) || true
	GOWORK=off GOFLAGS=-mod=mod ko_resolve "$d" "$YAML/serving.yaml" -R -f config
}

# unpack TARBALL DIR: a Knative source tree ready for ko (kodata symlinks
# replaced by copies; ko refuses links out of kodata).
unpack() {
	local tarball="$THIRDPARTY/$1" dir="$2"
	[[ -f "$dir/.unpacked" ]] && return
	[[ -r "$tarball" ]] || die "no $tarball (COUNCIL_THIRDPARTY names the folder with the Knative Eventing sources)"
	rm -rf "$dir"
	mkdir -p "$dir"
	tar -xzf "$tarball" -C "$dir" --strip-components=1
	local k
	while IFS= read -r k; do
		local tmp="$k.copy"
		cp -rL "$k" "$tmp" 2>/dev/null || mkdir -p "$tmp"
		rm -rf "$k"
		mv "$tmp" "$k"
		rm -rf "$k/HEAD" "$k/refs"
	done < <(find "$dir/cmd" -type d -name kodata 2>/dev/null; find "$dir/cmd" -type l -name kodata 2>/dev/null)
	rm -f "$dir/.ko.yaml"
	touch "$dir/.unpacked"
}

build_eventing() {
	local d="$SRC/eventing"
	unpack "$EVENTING_TARBALL" "$d"
	GOWORK=off GOFLAGS="-trimpath -mod=vendor -buildvcs=false" GOPROXY=off \
		ko_resolve "$d" "$YAML/eventing.yaml" -R -f config/core -f config/brokers/mt-channel-broker
	# The dev overlay's dead-letter sink runs Knative's event_display from
	# gcr.io, which cannot be reached here: the same program, built from the
	# same sources, is served under that name by the loopback registry
	# (containerd's mirror for gcr.io), so the overlay is deployed as is.
	if ! "$CRANE" manifest "$REG/$EVENT_DISPLAY:latest" >/dev/null 2>&1; then
		(cd "$d" && nice -n 10 env GOWORK=off GOFLAGS="-trimpath -mod=vendor -buildvcs=false" GOPROXY=off \
			KO_CONFIG_PATH="$(ko_config)" KO_DOCKER_REPO="$REG/$EVENT_DISPLAY" CGO_ENABLED=0 \
			"$KO" build --bare --sbom=none --platform=linux/amd64 -t latest ./cmd/event_display >/dev/null 2>"$YAML/event_display.log") ||
			{ tail -20 "$YAML/event_display.log" >&2; die "ko build event_display failed"; }
	fi
	if [[ "$OIDC" == on ]]; then
		GOWORK=off GOFLAGS="-trimpath -mod=vendor -buildvcs=false" GOPROXY=off \
			ko_resolve "$d" "$YAML/imc.yaml" -R -f config/channels/in-memory-channel
	fi
	local n="$SRC/natss"
	unpack "$NATSS_TARBALL" "$n"
	GOWORK=off GOFLAGS="-trimpath -mod=vendor -buildvcs=false" GOPROXY=off \
		ko_resolve "$n" "$YAML/natss.yaml" -f config/webhook -f config/jetstream
}

build_council() {
	# Our base image (scripts/images.sh assembles it) and the function images.
	COUNCIL_REGISTRY="$REG" "$ROOT/scripts/images.sh" build >"$C/images.log" 2>&1 ||
		{ tail -20 "$C/images.log" >&2; die "scripts/images.sh failed"; }
	local cfg
	cfg="$(ko_config)"
	(cd "$ROOT" && KO_CONFIG_PATH="$cfg" KO_DOCKER_REPO="$REG/council" CGO_ENABLED=0 \
		"$KO" resolve --base-import-paths --sbom=none -f knative/kingress/config/kingress.yaml >"$YAML/kingress.yaml" 2>"$YAML/kingress.log") ||
		{ tail -20 "$YAML/kingress.log" >&2; die "ko resolve kingress failed"; }
	(cd "$ROOT" && kubectl kustomize knative/overlays/dev |
		KO_CONFIG_PATH="$cfg" KO_DOCKER_REPO="$REG/council" CGO_ENABLED=0 \
			"$KO" resolve --base-import-paths --sbom=none -f - >"$YAML/council-dev.yaml" 2>"$YAML/council.log") ||
		{ tail -20 "$YAML/council.log" >&2; die "kubectl kustomize knative/overlays/dev | ko resolve failed"; }
	if [[ "$OIDC" == on ]]; then
		(cd "$ROOT" && kubectl kustomize knative/cluster/oidc |
			KO_CONFIG_PATH="$cfg" KO_DOCKER_REPO="$REG/council" CGO_ENABLED=0 \
				"$KO" resolve --base-import-paths --sbom=none -f - >"$YAML/council-oidc.yaml" 2>"$YAML/council-oidc.log") ||
			{ tail -20 "$YAML/council-oidc.log" >&2; die "kubectl kustomize knative/cluster/oidc | ko resolve failed"; }
	fi
	(cd "$ROOT" && KO_CONFIG_PATH="$cfg" KO_DOCKER_REPO="$REG/council" CGO_ENABLED=0 \
		"$KO" build --base-import-paths --sbom=none ./knative/cluster/cmd/eventsink >"$YAML/eventsink.ref" 2>"$YAML/eventsink.log") ||
		{ tail -20 "$YAML/eventsink.log" >&2; die "ko build eventsink failed"; }
}

cmd_build() {
	mkdir -p "$BIN" "$SRC" "$YAML"
	step "tools (ko, crane)" "$ROOT/scripts/images.sh" tools
	step "Kubernetes $K8S_VERSION" build_k8s
	step "CoreDNS $COREDNS_VERSION" build_coredns
	step "nats-server $NATS_SERVER_VERSION" build_nats
	registry_up
	step "base image" push_base
	step "pause image" build_pause
	step "Knative Serving $SERVING_VERSION images" build_serving
	step "Knative Eventing + eventing-natss images" build_eventing
	step "KIngress, council and eventsink images" build_council
}

push_base() {
	if "$CRANE" manifest "$REG/base:latest" >/dev/null 2>&1; then
		return
	fi
	# images.sh pushes the base it assembles to COUNCIL_REGISTRY.
	COUNCIL_REGISTRY="$REG" "$ROOT/scripts/images.sh" build >"$C/images.log" 2>&1 ||
		{ tail -20 "$C/images.log" >&2; die "scripts/images.sh failed"; }
}

# ---------------------------------------------------------------- up

# bg NAME CMD...: start a process in the background, PID in $PIDS/NAME.
bg() {
	local name="$1"
	shift
	"$@" >"$LOGS/$name.log" 2>&1 &
	echo $! >"$PIDS/$name"
}

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds.
wait_for() {
	local what="$1" secs="$2" i
	shift 2
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return
		sleep 0.2
	done
	die "$what not ready after ${secs}s"
}

save_host_state() {
	[[ -f "$RUN/host/saved" ]] && return
	mkdir -p "$RUN/host"
	iptables-save >"$RUN/host/iptables"
	ip6tables-save >"$RUN/host/ip6tables" 2>/dev/null || true
	if command -v nft >/dev/null; then nft list tables >"$RUN/host/nft-tables"; fi
	ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' >"$RUN/host/links"
	ls /var/run/netns >"$RUN/host/netns" 2>/dev/null || true
	local s
	for s in net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables \
		net.bridge.bridge-nf-call-ip6tables vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
		kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max; do
		sysctl -n "$s" >/dev/null 2>&1 && echo "$s=$(sysctl -n "$s")" >>"$RUN/host/sysctl"
	done
	touch "$RUN/host/saved"
}

pki() {
	mkdir -p "$PKI"
	local ip="$1"
	cd "$PKI"
	openssl req -x509 -new -nodes -newkey rsa:2048 -keyout ca.key -out ca.crt -days 3 -subj "/CN=council-cluster-ca" 2>/dev/null
	cat >apiserver.ext <<EOF
subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$ip
extendedKeyUsage=serverAuth
EOF
	openssl req -new -nodes -newkey rsa:2048 -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
	openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3 -extfile apiserver.ext 2>/dev/null
	printf 'extendedKeyUsage=clientAuth\n' >client.ext
	openssl req -new -nodes -newkey rsa:2048 -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
	openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 3 -extfile client.ext 2>/dev/null
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	cat >admin.kubeconfig <<EOF
apiVersion: v1
kind: Config
clusters:
- name: council
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: council
  context: {cluster: council, user: admin}
current-context: council
EOF
	cd - >/dev/null
}

containerd_up() {
	local d="$RUN/containerd"
	mkdir -p "$d" "$RUN/cni/net.d" "$RUN/cni/ipam"
	cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
[grpc]
  address = "$d/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REG"]
    endpoint = ["http://$REG"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.k8s.io"]
    endpoint = ["http://$REG"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."gcr.io"]
    endpoint = ["http://$REG"]
EOF
	cat >"$RUN/cni/net.d/10-council.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "council",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$RUN/cni/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	bg containerd containerd --config "$d/config.toml"
	wait_for containerd 30 ctr -a "$d/containerd.sock" version
}

control_plane_up() {
	local ip="$1"
	mkdir -p "$RUN/etcd"
	bg etcd etcd --name council --data-dir "$RUN/etcd" --listen-client-urls http://127.0.0.1:2379 \
		--advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
		--initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster council=http://127.0.0.1:2380
	wait_for etcd 30 etcdctl --endpoints http://127.0.0.1:2379 endpoint health
	bg kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --secure-port=6443 \
		--advertise-address="$ip" --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
		--client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--kubelet-client-certificate="$PKI/admin.crt" --kubelet-client-key="$PKI/admin.key" \
		--kubelet-preferred-address-types=InternalIP \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
		--authorization-mode=Node,RBAC --profiling=false
	wait_for kube-apiserver 120 kubectl get --raw /readyz
	bg kube-controller-manager kube-controller-manager --kubeconfig="$KUBECONFIG" --leader-elect=false \
		--bind-address=127.0.0.1 --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
		--use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" --profiling=false
	bg kube-scheduler kube-scheduler --kubeconfig="$KUBECONFIG" --leader-elect=false --bind-address=127.0.0.1 --profiling=false
}

node_up() {
	local ip="$1"
	mkdir -p "$RUN/kubelet"
	cat >"$RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://$RUN/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 200
resolvConf: /etc/resolv.conf
EOF
	bg kubelet kubelet --config="$RUN/kubelet/config.yaml" --kubeconfig="$KUBECONFIG" --root-dir="$RUN/kubelet/root" \
		--cert-dir="$RUN/kubelet/pki" --hostname-override="$NODE" --node-ip="$ip"
	cat >"$RUN/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBECONFIG}
hostnameOverride: $NODE
mode: iptables
clusterCIDR: 10.244.0.0/16
iptables: {masqueradeAll: true}
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
EOF
	bg kube-proxy kube-proxy --config="$RUN/kube-proxy.yaml"
	wait_for "node $NODE" 120 kubectl wait --for=condition=Ready "node/$NODE" --timeout=2s
}

# host_service NS NAME IP PORT:TARGET[/PROTO]...: a selector-less Service
# whose endpoints are on this host.
host_service() {
	local ns="$1" name="$2" ip="$3" cip="$4"
	shift 4
	local ports="" eports="" p
	for p in "$@"; do
		local pname="${p%%=*}" rest="${p#*=}"
		local port="${rest%%:*}" target="${rest#*:}" proto=TCP
		[[ "$target" == */* ]] && proto="${target#*/}" && target="${target%/*}"
		ports+="  - {name: $pname, port: $port, targetPort: $target, protocol: $proto}"$'\n'
		eports+="  - {name: $pname, port: $target, protocol: $proto}"$'\n'
	done
	kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
	kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: $name, namespace: $ns}
spec:
  ${cip:+clusterIP: $cip}
  ports:
$ports
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $name-host
  namespace: $ns
  labels: {kubernetes.io/service-name: $name, endpointslice.kubernetes.io/managed-by: council.dev-cluster}
addressType: IPv4
endpoints:
  - addresses: ["$ip"]
ports:
$eports
EOF
}

host_services_up() {
	local ip="$1"
	# CoreDNS on the host, answering for cluster.local from the API.
	cat >"$RUN/Corefile" <<EOF
.:53 {
  bind $ip
  errors
  kubernetes cluster.local in-addr.arpa ip6.arpa {
    kubeconfig $KUBECONFIG
    pods insecure
    fallthrough in-addr.arpa ip6.arpa
  }
  forward . /etc/resolv.conf
  cache 5
  loadbalance
}
EOF
	bg coredns coredns -conf "$RUN/Corefile"
	host_service kube-system kube-dns "$ip" "$DNS_IP" dns=53:53/UDP dns-tcp=53:53/TCP
	# NATS JetStream for eventing-natss and council's state.
	mkdir -p "$RUN/nats"
	bg nats-server nats-server -a "$ip" -p 4222 -js -sd "$RUN/nats" -m 8222
	wait_for nats-server 30 curl -fsS "http://$ip:8222/healthz?js-enabled-only=true"
	host_service nats-io nats "$ip" "" client=4222:4222
	# The local LLM server (tiny model), on all addresses so pods reach it.
	COUNCIL_LLM_PORT="$LLM_PORT" COUNCIL_LLM_HOST=0.0.0.0 "$ROOT/scripts/llm-server.sh" start >"$LOGS/llm-install.log" 2>&1 ||
		die "LLM server: $(tail -5 "$LOGS/llm-install.log")"
	host_service vllm vllm "$ip" "" http=8000:"$LLM_PORT"
}

cmd_up() {
	local ip
	ip="$(host_ip)"
	[[ -n "$ip" ]] || die "no host address (ip route get 1.1.1.1)"
	[[ ! -f "$PIDS/kube-apiserver" ]] || die "a cluster is up already (scripts/cluster.sh down first)"
	mkdir -p "$LOGS" "$PIDS"
	save_host_state
	sysctl -qw net.ipv4.ip_forward=1
	sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
	registry_up
	step "PKI" pki "$ip"
	step "containerd" containerd_up
	step "etcd + control plane" control_plane_up "$ip"
	step "kubelet + kube-proxy (node $NODE ready)" node_up "$ip"
	step "CoreDNS, NATS, LLM server on the host" host_services_up "$ip"
	log "cluster up: KUBECONFIG=$KUBECONFIG"
}

# ---------------------------------------------------------------- deploy

apply() { kubectl apply "$@" >/dev/null; }

# apply_release FILE NS: a release YAML with its CRDs and webhooks: once to
# create the CRDs and Deployments, then, once the CRDs are established and
# the Deployments of NS (its webhooks) are up, again for the rest, until the
# API server takes all of it.
apply_release() {
	kubectl apply --server-side --force-conflicts -f "$1" >/dev/null 2>&1 || true
	kubectl wait --for condition=established crd --all --timeout=60s >/dev/null
	wait_deployments "$2" 300
	local i err
	for i in $(seq 1 30); do
		err="$(kubectl apply --server-side --force-conflicts -f "$1" 2>&1 >/dev/null)" && return
		sleep 2
	done
	die "kubectl apply -f $1: $err"
}

wait_deployments() {
	local ns="$1" secs="$2"
	kubectl -n "$ns" wait --for=condition=Available deployment --all --timeout="${secs}s" >/dev/null ||
		{ kubectl -n "$ns" get pods -o wide >&2; die "deployments in $ns not available after ${secs}s"; }
}

deploy_serving() {
	apply_release "$YAML/serving.yaml" knative-serving
	kubectl -n knative-serving patch configmap config-network --type merge \
		-p "{\"data\":{\"ingress-class\":\"$INGRESS_CLASS\"}}" >/dev/null
	kubectl -n knative-serving patch configmap config-autoscaler --type merge \
		-p '{"data":{"stable-window":"6s","scale-to-zero-grace-period":"6s"}}' >/dev/null
	kubectl -n knative-serving patch configmap config-deployment --type merge \
		-p "{\"data\":{\"registries-skipping-tag-resolving\":\"kind.local,ko.local,dev.local,gcr.io,$REG\",\"queue-sidecar-cpu-request\":\"$SIDECAR_CPU\"}}" >/dev/null
	apply -f "$YAML/kingress.yaml"
	fit_requests knative-serving kingress-system
	wait_deployments knative-serving 300
	wait_deployments kingress-system 120
}

# fit_requests lowers the CPU requests of every container of the
# Deployments in the namespaces given to $SYSTEM_CPU: the releases ask for
# 100-300m each (1,420m for Serving, Eventing, eventing-natss and KIngress),
# which on a 2-core node leaves too little for the functions at max-scale
# (seen: execute's pods Pending, "Insufficient cpu", under the load check).
# Limits stay as released.
fit_requests() {
	local ns d
	for ns in "$@"; do
		for d in $(kubectl -n "$ns" get deployments -o name); do
			kubectl -n "$ns" set resources "$d" --requests=cpu="$SYSTEM_CPU" >/dev/null
		done
	done
}

deploy_eventing() {
	apply_release "$YAML/eventing.yaml" knative-eventing
	# eventing-natss' dispatcher mounts config-nats; without it it never starts.
	kubectl -n knative-eventing apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: config-nats, namespace: knative-eventing}
data:
  eventing-nats: |
    url: nats://nats.nats-io.svc.cluster.local:4222
    connOpts:
      retryOnFailedConnect: true
      maxReconnects: 5
      reconnectWaitMilliseconds: 2000
EOF
	apply_release "$YAML/natss.yaml" knative-eventing
	if [[ "$OIDC" == on ]]; then
		apply_release "$YAML/imc.yaml" knative-eventing
		# After the release, which ships its own config-features.
		(cd "$ROOT" && kubectl kustomize knative/platform/oidc) | apply -f -
	fi
	fit_requests knative-eventing
	# Every Broker's channel is a NatsJetStreamChannel.
	kubectl -n knative-eventing apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: config-br-default-channel, namespace: knative-eventing}
data:
  channel-template-spec: |
    apiVersion: messaging.knative.dev/v1alpha1
    kind: NatsJetStreamChannel
EOF
	wait_deployments knative-eventing 420
}

deploy_council() {
	local f="$YAML/council-dev.yaml"
	[[ "$OIDC" == off ]] || f="$YAML/council-oidc.yaml"
	apply -f "$f" || apply -f "$f"
	kubectl -n council wait --for=condition=Complete job --all --timeout=180s >/dev/null ||
		{ kubectl -n council get pods >&2; die "council-setup Job did not complete"; }
	kubectl -n council wait --for=condition=Ready ksvc --all --timeout=300s >/dev/null ||
		{ kubectl -n council get ksvc >&2; die "council's Knative Services not Ready"; }
	kubectl -n council wait --for=condition=Ready broker --all --timeout=300s >/dev/null ||
		{ kubectl -n council get broker -o yaml >&2; die "council's Broker not Ready"; }
	kubectl -n council wait --for=condition=Ready trigger --all --timeout=300s >/dev/null ||
		{ kubectl -n council get trigger >&2; die "council's Triggers not Ready"; }
}

# deploy_platform applies what council asks of the platform (knative/platform:
# revision timeouts up to 15 min, Eventing's OIDC sender identity).
deploy_platform() {
	(cd "$ROOT" && kubectl kustomize knative/platform) | apply -f -
}

cmd_deploy() {
	step "Knative Serving + KIngress" deploy_serving
	step "Knative Eventing + MT channel broker + eventing-natss" deploy_eventing
	step "council's platform settings (knative/platform)" deploy_platform
	if [[ "$OIDC" == on ]]; then
		step "council (knative/cluster/oidc: dev + the OIDC component, InMemoryChannel broker)" deploy_council
	else
		step "council (knative/overlays/dev, as is)" deploy_council
	fi
	kubectl -n council get ksvc,broker,trigger,pingsource 2>/dev/null >&2 || true
}

# ---------------------------------------------------------------- check

# cmd_check runs test/cluster_test.go (TestCluster) against the cluster, its
# output also in .cache/cluster/check.log, and lists the FIGURE lines its
# checks log at the end.
cmd_check() {
	[[ -s "$YAML/eventsink.ref" ]] || die "no eventsink image (scripts/cluster.sh build)"
	local image rc=0 run=TestCluster
	image="$(tail -n 1 "$YAML/eventsink.ref")"
	# With OIDC, the checks of the component; the others are the dev overlay's.
	# No deliberation: the InMemoryChannel delivers synchronously (Eventing
	# 1.15.2 fanout, AsyncHandler false), so a post to the broker waits for
	# the whole chain of nested deliveries and runs into the 30 s timeouts of
	# the poster and of execute's sink (docs/deploy.md).
	[[ "$OIDC" == off ]] || run='TestCluster/(setup|sender_identity)$'
	(cd "$ROOT/test" && COUNCIL_CLUSTER_EVENTSINK_IMAGE="$image" COUNCIL_CLUSTER_OIDC="$OIDC" \
		go test -tags cluster -count=1 -v -timeout 60m -run "$run" .) 2>&1 | tee "$C/check.log" || rc=$?
	log "figures (full output: $C/check.log):"
	grep -oE 'FIGURE [^:]+: [^=]+=.*' "$C/check.log" | sed 's/^/  /' >&2 || true
	return "$rc"
}

# ---------------------------------------------------------------- down

kill_pidfile() {
	local f="$1" pid
	pid="$(cat "$f" 2>/dev/null)" || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		local i
		for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

cmd_down() {
	local sock="$RUN/containerd/containerd.sock"
	# Stop the node first so it does not restart what is being removed.
	kill_pidfile "$PIDS/kubelet" 2>/dev/null || true
	if [[ -S "$sock" ]]; then
		local id
		for id in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
		done
		sleep 1
		for id in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr -a "$sock" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
		done
	fi
	local f
	for f in kube-proxy coredns kube-scheduler kube-controller-manager kube-apiserver etcd nats-server containerd; do
		kill_pidfile "$PIDS/$f"
	done
	# containerd's shims outlive containerd: stop the ones of this run.
	local pid
	for pid in $(pgrep -f "containerd-shim.*$RUN/containerd" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
	COUNCIL_LLM_PORT="$LLM_PORT" "$ROOT/scripts/llm-server.sh" stop >/dev/null 2>&1 || true
	registry_down
	# Pods' cgroups (cgroupfs driver: kubepods under every v1 hierarchy).
	local cg
	for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
		[[ -d "$cg" ]] || continue
		find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
	# Mounts under the run's folder and the pods' network namespaces.
	local m
	for m in $(findmnt -rn -o TARGET | grep -F "$RUN" | sort -r); do umount -l "$m" 2>/dev/null || true; done
	if [[ -f "$RUN/host/netns" ]]; then
		local ns
		for ns in $(ls /var/run/netns 2>/dev/null); do
			grep -qx "$ns" "$RUN/host/netns" || ip netns delete "$ns" 2>/dev/null || true
		done
	fi
	# Links the run made (cni0, veths).
	if [[ -f "$RUN/host/links" ]]; then
		local l
		for l in $(ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//'); do
			grep -qx "$l" "$RUN/host/links" || ip link delete "$l" 2>/dev/null || true
		done
	fi
	# Firewall: back to what it was.
	if [[ -f "$RUN/host/iptables" ]]; then
		# iptables-restore only replaces the tables its input names: empty
		# every table first (the saved rules may name none of them).
		local t
		for t in filter nat mangle raw security; do
			iptables -t "$t" -F 2>/dev/null && iptables -t "$t" -X 2>/dev/null || true
			ip6tables -t "$t" -F 2>/dev/null && ip6tables -t "$t" -X 2>/dev/null || true
		done
		iptables-restore <"$RUN/host/iptables" || log "iptables-restore failed"
		ip6tables-restore <"$RUN/host/ip6tables" 2>/dev/null || true
		# iptables-nft leaves its (now empty) tables behind: drop those the
		# machine did not have.
		if [[ -f "$RUN/host/nft-tables" ]]; then
			while read -r t; do
				# shellcheck disable=SC2086 # "table ip nat" -> nft delete table ip nat
				[[ -n "$t" ]] && ! grep -qxF "$t" "$RUN/host/nft-tables" && nft delete $t 2>/dev/null || true
			done < <(nft list tables 2>/dev/null)
		fi
	fi
	if [[ -f "$RUN/host/sysctl" ]]; then
		local kv
		while read -r kv; do sysctl -qw "$kv" 2>/dev/null || true; done <"$RUN/host/sysctl"
	fi
	rm -rf "$RUN"
	log "down: processes stopped, rules, links, namespaces, mounts and cgroups removed, sysctls restored"
}

cmd_test() {
	trap 'step "down" cmd_down' EXIT
	step deps cmd_deps
	step build cmd_build
	step up cmd_up
	step deploy cmd_deploy
	step check cmd_check
}

cmd_env() {
	printf 'export KUBECONFIG=%q PATH=%q\n' "$KUBECONFIG" "$BIN:$PATH"
}

mkdir -p "$C"
case "${1:-test}" in
test) cmd_test ;;
deps) step deps cmd_deps ;;
build) step build cmd_build ;;
up) step up cmd_up ;;
deploy) step deploy cmd_deploy ;;
check) step check cmd_check ;;
down) step down cmd_down ;;
env) cmd_env ;;
# One step of the script, for debugging: scripts/cluster.sh fn build_coredns
fn)
	shift
	step "$*" "$@"
	;;
*) die "unknown command '$1' (want: test, deps, build, up, deploy, check, down, env)" ;;
esac
