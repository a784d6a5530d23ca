#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy (module hack/controlplane)
# into .cache/controlplane/<key>/ and prints that folder. The key is a hash of the
# module's sources and the Go version, so a build happens only when the pinned
# versions change; later calls return at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/hack/controlplane"
# The Kubernetes version the binaries report (kubectl version, /version): the
# module graph does not carry it, so it is stamped at link time.
kube_version=v1.37.2
kube_major=1
kube_minor=37
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$kube_major -X $pkg.gitMinor=$kube_minor -X $pkg.gitTreeState=clean"
done
key=$( { echo "$ldflags"; cat "$src/go.mod" "$src/go.sum"; find "$src/cmd" -name '*.go' -print0 | sort -z | xargs -0 cat; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-16)
out="$root/.cache/controlplane/$key"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -x "$out/kubectl" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$root/.cache/controlplane"
# Test packages start in parallel: one builds, the others wait for it.
exec 9>"$root/.cache/controlplane/.lock"
flock 9
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -x "$out/kubectl" ]; then
  echo "$out"
  exit 0
fi
tmp=$(mktemp -d "$root/.cache/controlplane/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "building kube-apiserver, etcd and kubectl (first run only, several minutes)..." >&2
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$tmp/" ./cmd/kube-apiserver ./cmd/etcd ./cmd/kubectl)
mv "$tmp" "$out"
trap - EXIT
echo "built control plane in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
