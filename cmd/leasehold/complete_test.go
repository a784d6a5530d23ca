package main

import (
	"os"
	"strings"
	"testing"

	"github.com/leasehold/leasehold/internal/testenv"
)

// TestCompletion: Lease names, namespaces and -o values complete from the
// cluster the kubeconfig flags name, as `leasehold __complete` (what the
// shell scripts of `leasehold completion` call) and through kubectl, which
// runs kubectl_complete-lease for `kubectl lease <TAB>`.
func TestCompletion(t *testing.T) {
	cp := testenv.Start(t)
	createFixture(t, testenv.Clientset(t, cp))
	env := []string{"PATH=" + binDir + string(os.PathListSeparator) + cp.Bin, "KUBECONFIG=" + cp.Kubeconfig}

	// completions returns the candidates of a __complete answer, and its
	// directive line.
	completions := func(t *testing.T, r result) ([]string, string) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(r.ok(t).stdout), "\n")
		return lines[:len(lines)-1], lines[len(lines)-1]
	}
	for _, tc := range []struct {
		name      string
		args      []string
		want      []string
		directive string
	}{
		{"lease names", []string{"get", "-n", "golden-a", ""}, []string{"expired", "held", "released", "unlabelled"}, ":4"},
		{"names given are left out", []string{"describe", "-n", "golden-a", "held", "re"}, []string{"released"}, ":4"},
		{"lease/NAME", []string{"get", "-n", "golden-b", "lease/h"}, []string{"lease/handoff"}, ":4"},
		{"one name for watch", []string{"watch", "-n", "golden-a", "held", ""}, nil, ":4"},
		{"holder", []string{"holder", "--namespace=golden-b", "st"}, []string{"stale-token"}, ":4"},
		{"release (another file's command)", []string{"release", "-n", "golden-b", "f"}, []string{"foreign"}, ":4"},
		{"run --lease", []string{"run", "-n", "golden-b", "--lease", "h"}, []string{"handoff"}, ":4"},
		{"namespaces", []string{"get", "-n", "golden"}, []string{"golden-a", "golden-b"}, ":4"},
		{"-o values", []string{"get", "-o", "js"}, []string{"json", "jsonpath=", "jsonpath-as-json=", "jsonpath-file="}, ":4"},
		{"-o values that take an argument", []string{"get", "-o", "custom"}, []string{"custom-columns=", "custom-columns-file="}, ":6"},
		{"contexts", []string{"get", "--context", ""}, nil, ":4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, directive := completions(t, cli(t, cp, append([]string{"__complete"}, tc.args...)...))
			if tc.name == "contexts" {
				if len(got) == 0 {
					t.Errorf("no contexts offered from the kubeconfig")
				}
			} else if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if directive != tc.directive {
				t.Errorf("directive %s, want %s", directive, tc.directive)
			}
		})
	}

	t.Run("kubectl lease <TAB>", func(t *testing.T) {
		got, _ := completions(t, runBinary(t, env, cp.Kubectl(), "__complete", "lease", "get", "-n", "golden-a", "h"))
		if strings.Join(got, " ") != "held" {
			t.Errorf("kubectl __complete lease get -n golden-a h: %q", got)
		}
		got, _ = completions(t, runBinary(t, env, cp.Kubectl(), "__complete", "lease", "hol"))
		if strings.Join(got, " ") != "holder\tPrint only the current holder of a Lease, for scripts" {
			t.Errorf("kubectl __complete lease hol: %q", got)
		}
	})

	t.Run("no cluster: nothing offered, no error", func(t *testing.T) {
		got, directive := completions(t, runBinary(t, []string{"KUBECONFIG=/nonexistent"}, binary, "__complete", "get", ""))
		if len(got) != 0 || directive != ":4" {
			t.Errorf("got %q %s", got, directive)
		}
	})
}
