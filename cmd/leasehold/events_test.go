package main

import (
	"strings"
	"testing"

	"github.com/leasehold/leasehold/internal/testenv"
)

// TestRunRecordsEvents: run records LeaderElection Events on its Lease when
// RBAC allows creating events, and describe shows them; with the minimal
// Role (no rule on events) it records none and says nothing about it.
func TestRunRecordsEvents(t *testing.T) {
	cp := testenv.Start(t)

	cli(t, cp, "run", "--lease", "with-events", "--identity", "pod-a", "--", "true").ok(t)
	r := cli(t, cp, "describe", "with-events").ok(t)
	for _, want := range []string{"LeaderElection", "pod-a became leader", "pod-a stopped leading", "leasehold, "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("describe after run lacks %q:\n%s", want, r.stdout)
		}
	}

	token, err := cp.ServiceAccountToken(t.Context(), "default", "leases-only", testenv.LeaseRules())
	if err != nil {
		t.Fatal(err)
	}
	kc := kubeconfigForToken(t, cp, token)
	run := cli(t, nil, "--kubeconfig", kc, "run", "--lease", "quiet", "--identity", "pod-b", "--", "true").ok(t)
	if strings.Contains(run.stderr, "Event") || strings.Contains(run.stderr, "event ") {
		t.Errorf("run without the right to create events talks about them:\n%s", run.stderr)
	}
	r = cli(t, cp, "describe", "quiet").ok(t)
	if !strings.Contains(r.stdout, "Holder:           <none>") || !strings.Contains(r.stdout, "Events:           <none>") {
		t.Errorf("describe after run without the right to create events:\n%s", r.stdout)
	}
}
