#!/usr/bin/env bash
# Builds the node of the test cluster — kubelet, kube-proxy, kube-scheduler and
# kube-controller-manager — from the Go module proxy (module hack/node, pinned as
# hack/controlplane) into .cache/node/<key>/ and prints that folder. The key is
# a hash of the module's sources and the Go version; later calls return at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/hack/node"
kube_version=v1.37.2
kube_major=1
kube_minor=37
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$kube_major -X $pkg.gitMinor=$kube_minor -X $pkg.gitTreeState=clean"
done
bins=(kubelet kube-proxy kube-scheduler kube-controller-manager)
key=$( { echo "$ldflags"; cat "$src/go.mod" "$src/go.sum"; find "$src/cmd" -name '*.go' -print0 | sort -z | xargs -0 cat; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-16)
out="$root/.cache/node/$key"
built() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if built; then echo "$out"; exit 0; fi
mkdir -p "$root/.cache/node"
# Test packages start in parallel: one builds, the others wait for it.
exec 9>"$root/.cache/node/.lock"
flock 9
if built; then echo "$out"; exit 0; fi
tmp=$(mktemp -d "$root/.cache/node/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "building ${bins[*]} (first run only, several minutes)..." >&2
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$tmp/" $(printf './cmd/%s ' "${bins[@]}"))
mv "$tmp" "$out"
trap - EXIT
echo "built the node in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
