//go:build e2e

package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
)

// cluster is the one node cluster every test shares (each in its own
// namespace).
var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	before, err := testenv.SnapshotHost()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "leasehold-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	tars, err := BuildImages(ctx, dir)
	if err == nil {
		cluster, err = testenv.StartCluster(ctx, testenv.ClusterOptions{Output: os.Stderr, Images: tars})
	}
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: cluster ready in %s\n", time.Since(start).Round(time.Second))
	code := m.Run()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stop cluster:", err)
		code = 1
	}
	after, err := testenv.SnapshotHost()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if d := after.Diff(before); len(d) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: the cluster left the machine changed:\n%s\n", strings.Join(d, "\n"))
		code = 1
	}
	return code
}

// node returns the shared cluster, or skips with -short.
func node(t *testing.T) *testenv.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: needs a node (skipped with -short)")
	}
	return cluster
}
