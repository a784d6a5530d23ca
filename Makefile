# Leasehold. `make demo` runs the tour on a local control plane; `make test`
# runs every test (unit, -race, vet, and integration against a real
# kube-apiserver + etcd, built from the Go module proxy on first use).

GO ?= go

.PHONY: all build deps controlplane node node-deps image test integration unit vet e2e demo cluster bench bench-node clean python-wheel chaos-node

all: build

# The version and commit `leasehold version` prints (GOFLAGS=-buildvcs=false
# would otherwise leave the commit out); empty outside a git checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS = -X main.Version=$(VERSION) -X main.Commit=$(COMMIT)

# bin/: leasehold, the kubectl plugin kubectl-lease (the same binary) and
# kubectl_complete-lease, which kubectl runs to complete `kubectl lease <TAB>`.
build:
	$(GO) build ./...
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/leasehold ./cmd/leasehold
	cp bin/leasehold bin/kubectl-lease
	cp cmd/leasehold/kubectl_complete-lease bin/kubectl_complete-lease

# etcd, kube-apiserver and kubectl, built once into .cache/controlplane.
controlplane:
	@hack/controlplane.sh >/dev/null

# kubelet, kube-proxy, kube-scheduler and kube-controller-manager, built once
# into .cache/node at the control plane's version; and the Debian packages the
# node runs on (containerd, runc, CNI plugins, iptables), installed when absent.
node:
	@hack/node.sh >/dev/null

node-deps:
	@hack/node-deps.sh

# The leasehold image, built without Docker (go-containerregistry) as a
# docker-save tarball: docker load -i, ctr -n k8s.io images import, or
# kind load image-archive.
IMAGE ?= leasehold:dev
image:
	@mkdir -p bin
	$(GO) run ./hack/image -o bin/leasehold-image.tar -ref $(IMAGE) -ldflags "$(LDFLAGS)"

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./internal/testenv ./test/e2e
	cd examples/controller-runtime && $(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

# Unit tests only (no control plane).
unit:
	$(GO) test -race -short ./...
	cd examples/controller-runtime && $(GO) test -race -short ./...

# Machine packages the tests need (python3, and for python/ Debian's
# python3-kubernetes, -pytest, -yaml, -setuptools, -wheel), installed when absent.
deps:
	@hack/deps.sh

# Every test: vet, unit and integration tests against a real kube-apiserver
# + etcd (make integration), then the manifests on a real node (make e2e).
test: integration e2e

integration: deps controlplane vet
	$(GO) test -race -timeout 20m ./...
	cd examples/controller-runtime && $(GO) test -race -timeout 10m ./...

# The manifests of deploy/ as pods on a real single-node cluster (root; see
# README "End-to-end tests"). One package at a time: each starts a node.
e2e: deps node-deps controlplane node
	$(GO) test -tags e2e -race -p 1 -count=1 -timeout 45m ./internal/testenv ./test/e2e

# The real-pod benchmark: leasehold vs client-go elector pods, one JSON line
# per scenario and implementation. BENCH_NODE_N repetitions (default 5).
BENCH_NODE_N ?= 5
bench-node: deps node-deps controlplane node
	LEASEHOLD_BENCH_NODE=1 LEASEHOLD_BENCH_NODE_N=$(BENCH_NODE_N) $(GO) test -tags e2e -count=1 -timeout 90m -run '^TestBenchNode$$' -v ./test/e2e

# Fault schedules on the real node (container kill, kubelet stopped,
# partition, pod delete) against deploy/base pods; one line per schedule
# and a table. CHAOS_NODE_SCHEDULES schedules from seed CHAOS_NODE_SEED.
CHAOS_NODE_SCHEDULES ?= 10
CHAOS_NODE_SEED ?= 1
chaos-node: deps node-deps controlplane node
	LEASEHOLD_CHAOS_NODE_SCHEDULES=$(CHAOS_NODE_SCHEDULES) LEASEHOLD_CHAOS_NODE_SEED=$(CHAOS_NODE_SEED) $(GO) test -tags e2e -count=1 -timeout 120m -run '^TestChaosOnNode$$' -v ./test/e2e

# The tour runs `leasehold demo` against a local control plane that
# hack/demo starts for it and stops after.
demo: controlplane
	$(GO) build -o bin/leasehold ./cmd/leasehold
	$(GO) run ./hack/demo bin/leasehold

# NODE=1: a whole single-node cluster (root), with bin/leasehold-image.tar
# imported when it exists (make image).
cluster: controlplane
ifeq ($(NODE),1)
	@hack/node-deps.sh && hack/node.sh >/dev/null
	$(GO) run ./hack/cluster -node $(if $(wildcard bin/leasehold-image.tar),-image bin/leasehold-image.tar)
else
	$(GO) run ./hack/cluster
endif

bench: controlplane
	$(GO) run ./bench

# The Python library's wheel, python/dist/leasehold-*.whl, built offline by
# setuptools' PEP 517 backend (Debian's python3-setuptools and python3-wheel).
python-wheel: deps
	cd python && rm -rf build dist *.egg-info && \
	  /usr/bin/python3 -c 'from setuptools import build_meta as b; print("python/dist/" + b.build_wheel("dist"))' && \
	  rm -rf build *.egg-info

clean:
	rm -rf .cache bin
