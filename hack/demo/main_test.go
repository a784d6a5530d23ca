package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs what `make demo` runs: the tour, built from this tree, on a
// control plane that this command starts and stops.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	dir := t.TempDir()
	leasehold, demo := filepath.Join(dir, "leasehold"), filepath.Join(dir, "demo")
	for bin, pkg := range map[string]string{leasehold: "../../cmd/leasehold", demo: "."} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute) // the first run builds the control plane
	defer cancel()
	out, err := exec.CommandContext(ctx, demo, leasehold, "--lease-duration", "3s").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"Control plane ready", "3. Graceful shutdown", "Measured: crash failover", "Deleted Lease"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
