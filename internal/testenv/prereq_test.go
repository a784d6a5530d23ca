package testenv

import (
	"strings"
	"testing"
)

// TestNodePrerequisitesNameWhatIsMissing: on a machine without the node's
// programs, the one error names each and the Debian packages to install.
func TestNodePrerequisitesNameWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	was := cniBinDir
	cniBinDir = t.TempDir() // no CNI plugins either, whatever this machine has
	t.Cleanup(func() { cniBinDir = was })
	err := NodePrerequisites()
	if err == nil {
		t.Fatal("no error with an empty PATH")
	}
	for _, want := range []string{"containerd", "ctr", "runc", "iptables", "nsenter", "unshare", "bridge", "host-local",
		"apt-get install containerd containernetworking-plugins iproute2 iptables runc util-linux", "hack/node-deps.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}
