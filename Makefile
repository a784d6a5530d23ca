# Leasehold. `make demo` runs the tour on a local control plane; `make test`
# runs every test (unit, -race, vet, and integration against a real
# kube-apiserver + etcd, built from the Go module proxy on first use).

GO ?= go

.PHONY: all build deps controlplane test unit vet demo cluster bench clean python-wheel

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

vet:
	$(GO) vet ./...
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

# The Python library's wheel, python/dist/leasehold-*.whl, built offline by
# setuptools' PEP 517 backend (Debian's python3-setuptools and python3-wheel).
python-wheel: deps
	cd python && rm -rf build dist *.egg-info && \
	  /usr/bin/python3 -c 'from setuptools import build_meta as b; print("python/dist/" + b.build_wheel("dist"))' && \
	  rm -rf build *.egg-info

clean:
	rm -rf .cache bin
