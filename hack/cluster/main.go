// Command cluster starts the local control plane (etcd + kube-apiserver, built
// from the Go module proxy) for a person to use, prints how to point kubectl
// at it, and stops it on Ctrl-C.
//
//	go run ./hack/cluster      (or: make cluster)
package main

import (
	"context"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := testenv.ModuleRoot()
	if err != nil {
		return err
	}
	start := time.Now()
	cp, err := testenv.StartControlPlane(ctx, testenv.Options{Output: os.Stderr})
	if err != nil {
		return err
	}
	defer cp.Stop()
	// A stable path, so the export line stays valid across restarts.
	kubeconfig := filepath.Join(root, ".cache", "cluster", "kubeconfig")
	data, err := os.ReadFile(cp.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return err
	}
	fmt.Printf("control plane ready at %s in %v (etcd + kube-apiserver, data in %s)\n\n", cp.URL, time.Since(start).Round(time.Millisecond), cp.Dir)
	fmt.Printf("export KUBECONFIG=%s\n", kubeconfig)
	fmt.Printf("export PATH=%s:$PATH   # kubectl at the control plane's version\n\n", cp.Bin)
	fmt.Println("then for example: kubectl get leases -A")
	fmt.Println("Ctrl-C stops it.")
	<-ctx.Done()
	fmt.Println("\nstopping")
	return nil
}
