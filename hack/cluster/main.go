// Command cluster starts the local control plane (etcd + kube-apiserver, built
// from the Go module proxy) for a person to use, prints how to point kubectl
// at it, and stops it on Ctrl-C. If etcd or kube-apiserver exits on its own,
// it says which, with its exit status and last log lines, stops the other and
// exits with status 1.
//
//	go run ./hack/cluster      (or: make cluster)
//
// -kubeconfig PATH writes the kubeconfig there instead of
// .cache/cluster/kubeconfig. -node starts a whole single-node cluster
// instead (controllers, scheduler, and containerd, kubelet and kube-proxy in
// a network namespace; needs root: `make cluster NODE=1`), with each -image
// tarball imported into the node, for example bin/leasehold-image.tar from
// `make image`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "", "where to write the kubeconfig (default .cache/cluster/kubeconfig in the source tree)")
	withNode := flag.Bool("node", false, "also run a node (kubelet, containerd, kube-proxy, controllers, scheduler); needs root")
	var images []string
	flag.Func("image", "with -node: a docker-save tarball to import into the node (repeatable)", func(s string) error { images = append(images, s); return nil })
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *kubeconfig == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			return err
		}
		// A stable path, so the export line stays valid across restarts.
		*kubeconfig = filepath.Join(root, ".cache", "cluster", "kubeconfig")
	}
	start := time.Now()
	var cp *testenv.ControlPlane
	what := "etcd + kube-apiserver"
	if *withNode {
		c, err := testenv.StartCluster(ctx, testenv.ClusterOptions{Output: os.Stderr, Images: images})
		if err != nil {
			return err
		}
		defer c.Stop()
		cp = c.ControlPlane
		what = "one node " + testenv.NodeName + " at " + c.NodeIP + ", its files in " + c.NodeDir
	} else {
		var err error
		if cp, err = testenv.StartControlPlane(ctx, testenv.Options{Output: os.Stderr}); err != nil {
			return err
		}
		defer cp.Stop()
	}
	data, err := os.ReadFile(cp.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*kubeconfig), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(*kubeconfig, data, 0o600); err != nil {
		return err
	}
	fmt.Printf("control plane ready at %s in %v (%s, data in %s)\n\n", cp.URL, time.Since(start).Round(time.Millisecond), what, cp.Dir)
	fmt.Printf("export KUBECONFIG=%s\n", *kubeconfig)
	fmt.Printf("export PATH=%s:$PATH   # kubectl at the control plane's version\n\n", cp.Bin)
	fmt.Println("then for example: kubectl get leases -A")
	fmt.Println("Ctrl-C stops it.")
	err = cp.Wait(ctx)
	if ctx.Err() != nil {
		fmt.Println("\nstopping")
		return nil
	}
	return fmt.Errorf("the control plane is down: %w", err)
}
