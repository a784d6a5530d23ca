package main

import (
	"strings"
	"testing"
)

// TestDemo runs `leasehold demo` end to end: it starts its own control plane
// and three `leasehold run` replicas.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	r := cli(t, nil, "demo", "--lease-duration", "3s")
	if r.code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"1. Crash", "2. Planned handoff", "3. Graceful shutdown", "Measured: crash failover"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
}
