package main

import (
	"os"
	"strings"
	"testing"

	"github.com/leasehold/leasehold/internal/testenv"
)

// TestKubectlPlugin: installed as kubectl-lease on PATH, the binary is
// `kubectl lease`, and prints exactly what `leasehold` prints. kubectl
// refuses flags before a plugin's name ("flags cannot be placed before
// plugin name"), so the cluster comes from KUBECONFIG or from flags after
// `lease`.
func TestKubectlPlugin(t *testing.T) {
	cp := testenv.Start(t)
	createFixture(t, testenv.Clientset(t, cp))
	env := []string{"PATH=" + binDir + string(os.PathListSeparator) + cp.Bin, "KUBECONFIG=" + cp.Kubeconfig}
	kubectl := func(args ...string) result {
		t.Helper()
		return runBinary(t, env, cp.Kubectl(), args...).ok(t)
	}

	for _, args := range [][]string{
		{"get", "-n", "golden-a", fixtureNowFlag},
		{"get", "-A", "-l", "leasehold-test=golden", "-o", "wide", fixtureNowFlag},
		{"describe", "handoff", "-n", "golden-b", fixtureNowFlag},
		{"get", "held", "-n", "golden-a", "-o", "yaml"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			direct := cli(t, cp, args...).ok(t)
			viaEnv := kubectl(append([]string{"lease"}, args...)...)
			viaFlag := kubectl(append([]string{"lease", "--kubeconfig", cp.Kubeconfig}, args...)...)
			if viaEnv.stdout != direct.stdout || viaFlag.stdout != direct.stdout {
				t.Errorf("kubectl lease %s differs from leasehold:\nleasehold:\n%s\nkubectl lease:\n%s\nkubectl lease --kubeconfig:\n%s",
					strings.Join(args, " "), direct.stdout, viaEnv.stdout, viaFlag.stdout)
			}
		})
	}

	t.Run("help names the plugin", func(t *testing.T) {
		r := kubectl("lease", "get", "--help")
		if !strings.Contains(r.stdout, "Examples:\n  # ") || !strings.Contains(r.stdout, "\n  kubectl lease get my-app lease/my-cron -o wide\n") {
			t.Errorf("kubectl lease get --help: examples do not say kubectl lease:\n%s", r.stdout)
		}
		if !strings.Contains(r.stdout, "Usage:\n  kubectl lease get [NAME...] [flags]") {
			t.Errorf("the usage line does not say \"kubectl lease get\":\n%s", r.stdout)
		}
	})

	t.Run("errors pass through", func(t *testing.T) {
		r := runBinary(t, env, cp.Kubectl(), "lease", "describe", "nope", "-n", "golden-a")
		r.fails(t, ExitError, `lease "nope" not found in namespace "golden-a"`)
	})
}
