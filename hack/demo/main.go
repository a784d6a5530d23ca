// Command demo runs the tour, `leasehold demo`, on a local control plane: it
// starts etcd + kube-apiserver (built from the Go module proxy on first use),
// runs the given leasehold binary's demo with KUBECONFIG naming that control
// plane, and stops the control plane afterwards. Arguments after the binary
// go to `leasehold demo`. Ctrl-C interrupts the tour, which then cleans up.
//
//	go build -o bin/leasehold ./cmd/leasehold
//	go run ./hack/demo bin/leasehold [--lease-duration 10s]     (or: make demo)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
)

// demoWaitDelay bounds how long the tour may take to clean up after it was
// interrupted: its replicas' shutdown and its namespace's deletion.
const demoWaitDelay = time.Minute

func main() {
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
	}
	os.Exit(code)
}

// run returns the tour's exit status, or 1 and an error when it could not
// run it or the control plane failed under it.
func run(args []string) (int, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return 2, errors.New("usage: go run ./hack/demo PATH-TO-LEASEHOLD [DEMO FLAGS...]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("Starting a local control plane (etcd + kube-apiserver; the first run builds them, several minutes)...")
	t0 := time.Now()
	cp, err := testenv.StartControlPlane(ctx, testenv.Options{Output: os.Stderr})
	if err != nil {
		return 1, err
	}
	defer cp.Stop()
	fmt.Printf("Control plane ready at %s after %v.\n\n", cp.URL, time.Since(t0).Round(time.Millisecond))

	tourCtx, endTour := context.WithCancel(ctx)
	defer endTour()
	var cpErr error
	var wg sync.WaitGroup
	wg.Go(func() { // joined below, after endTour
		cpErr = cp.Wait(tourCtx)
		endTour()
	})
	code, err := tour(tourCtx, cp.Kubeconfig, args[0], args[1:])
	endTour()
	wg.Wait()
	if ee := (*testenv.ExitError)(nil); errors.As(cpErr, &ee) {
		return 1, fmt.Errorf("the control plane failed during the tour: %w", ee)
	}
	return code, err
}

// tour runs `leasehold demo` with KUBECONFIG set to kubeconfig and returns
// its exit status. When ctx ends, the tour gets SIGINT and time to clean up.
func tour(ctx context.Context, kubeconfig, leasehold string, args []string) (int, error) {
	cmd := exec.CommandContext(ctx, leasehold, append([]string{"demo"}, args...)...)
	cmd.Env = append(withoutKubeconfig(os.Environ()), "KUBECONFIG="+kubeconfig)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = demoWaitDelay
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), nil // the tour said why
	default:
		return 1, fmt.Errorf("%s demo: %w", leasehold, err)
	}
}

// withoutKubeconfig returns env without KUBECONFIG.
func withoutKubeconfig(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "KUBECONFIG=") {
			out = append(out, kv)
		}
	}
	return out
}
