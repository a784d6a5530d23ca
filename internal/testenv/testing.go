package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
)

// Start starts a control plane for the test (or benchmark) and stops it in
// t.Cleanup. With -short the test is skipped: integration tests need the
// control plane binaries, which the first run builds (several minutes).
func Start(t testing.TB) *ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs a real kube-apiserver (skipped with -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := StartControlPlane(ctx, Options{Output: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return c
}

// Clientset returns an admin clientset for c or fails the test.
func Clientset(t testing.TB, c *ControlPlane) *kubernetes.Clientset {
	t.Helper()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// StartNode starts a single-node cluster (StartCluster) for the test, with
// the image tarballs imported, and stops it in t.Cleanup. With -short the
// test is skipped; on a machine that cannot run a node it fails with what
// is missing.
func StartNode(t testing.TB, images ...string) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("node test: needs root, containerd and a kubelet (skipped with -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, ClusterOptions{Output: os.Stderr, Images: images})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
	return c
}
