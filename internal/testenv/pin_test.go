package testenv_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/leasehold/leasehold/internal/testenv"
)

// TestNodeAndControlPlanePinTheSameKubernetes: hack/node builds the kubelet
// and friends from its own module (so that adding them does not rebuild the
// cached control plane); both modules and both build scripts must name the
// same Kubernetes version.
func TestNodeAndControlPlanePinTheSameKubernetes(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	pins := regexp.MustCompile(`(?m)^\s*(?:require )?(k8s\.io/\S+)(?: => k8s\.io/\S+)? (v\S+)\s*$`)
	find := func(gomod string) map[string]string {
		m := map[string]string{}
		for _, s := range pins.FindAllStringSubmatch(gomod, -1) {
			m[s[1]] = s[2]
		}
		return m
	}
	cp, node := find(read("hack/controlplane/go.mod")), find(read("hack/node/go.mod"))
	if cp["k8s.io/kubernetes"] == "" {
		t.Fatal("hack/controlplane/go.mod pins no k8s.io/kubernetes")
	}
	for mod, v := range cp {
		if w, ok := node[mod]; ok && w != v {
			t.Errorf("%s: hack/controlplane pins %s, hack/node %s", mod, v, w)
		}
	}
	if node["k8s.io/kubernetes"] != cp["k8s.io/kubernetes"] {
		t.Errorf("k8s.io/kubernetes: hack/controlplane %s, hack/node %s", cp["k8s.io/kubernetes"], node["k8s.io/kubernetes"])
	}
	ver := regexp.MustCompile(`(?m)^kube_version=(\S+)$`)
	a, b := ver.FindStringSubmatch(read("hack/controlplane.sh")), ver.FindStringSubmatch(read("hack/node.sh"))
	if a == nil || b == nil || a[1] != b[1] {
		t.Errorf("kube_version: controlplane.sh %v, node.sh %v", a, b)
	}
}
