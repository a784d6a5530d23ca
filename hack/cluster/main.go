// Command cluster starts the local control plane (etcd + kube-apiserver, built
// from the Go module proxy) for a person to use, prints how to point kubectl
// at it, and stops it on Ctrl-C. If etcd or kube-apiserver exits on its own,
// it says which, with its exit status and last log lines, stops the other and
// exits with status 1.
//
//	go run ./hack/cluster      (or: make cluster)
//
// -kubeconfig PATH writes the kubeconfig there instead of
// .cache/cluster/kubeconfig.
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
	cp, err := testenv.StartControlPlane(ctx, testenv.Options{Output: os.Stderr})
	if err != nil {
		return err
	}
	defer cp.Stop()
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
	fmt.Printf("control plane ready at %s in %v (etcd + kube-apiserver, data in %s)\n\n", cp.URL, time.Since(start).Round(time.Millisecond), cp.Dir)
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
