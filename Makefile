# Leasehold. `make demo` runs the tour on a local control plane; `make test`
# runs every test (unit, -race, vet, and integration against a real
# kube-apiserver + etcd, built from the Go module proxy on first use).

GO ?= go

.PHONY: all build deps controlplane test unit vet demo cluster bench clean

all: build

build:
	$(GO) build ./...
	$(GO) build -o bin/leasehold ./cmd/leasehold
	cp bin/leasehold bin/kubectl-lease

# etcd, kube-apiserver and kubectl, built once into .cache/controlplane.
controlplane:
	@hack/controlplane.sh >/dev/null

vet:
	$(GO) vet ./...
	cd examples/controller-runtime && $(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

# Unit tests only (no control plane).
unit:
	$(GO) test -race -short ./...
	cd examples/controller-runtime && $(GO) test -race -short ./...

# Machine packages the tests need (python3), installed when absent.
deps:
	@hack/deps.sh

test: deps controlplane vet
	$(GO) test -race -timeout 20m ./...
	cd examples/controller-runtime && $(GO) test -race -timeout 10m ./...

# The tour runs `leasehold demo` against a local control plane that
# hack/demo starts for it and stops after.
demo: controlplane
	$(GO) build -o bin/leasehold ./cmd/leasehold
	$(GO) run ./hack/demo bin/leasehold

cluster: controlplane
	$(GO) run ./hack/cluster

bench: controlplane
	$(GO) run ./bench

clean:
	rm -rf .cache bin
