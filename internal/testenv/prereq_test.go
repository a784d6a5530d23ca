package testenv_test

import (
	"strings"
	"testing"

	"github.com/leasehold/leasehold/internal/testenv"
)

// TestNodePrerequisitesNameWhatIsMissing: on a machine without the node's
// programs, the one error names each and the Debian packages to install.
func TestNodePrerequisitesNameWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := testenv.NodePrerequisites()
	if err == nil {
		t.Fatal("no error with an empty PATH")
	}
	for _, want := range []string{"containerd", "ctr", "runc", "iptables", "nsenter", "unshare",
		"apt-get install containerd iproute2 iptables runc util-linux", "hack/node-deps.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}
