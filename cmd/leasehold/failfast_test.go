package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

// timedResult is a finished run of the binary and how long it took.
type timedResult struct {
	result
	took time.Duration
}

// cliWithin runs the binary like cli, but fails the test if it has not
// exited within limit (it is killed then).
func cliWithin(t *testing.T, cp *testenv.ControlPlane, limit time.Duration, args ...string) timedResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	if cp != nil {
		args = append([]string{"--kubeconfig", cp.Kubeconfig}, args...)
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := timedResult{result: result{stdout: out.String(), stderr: errb.String()}, took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("leasehold %q did not exit within %v; stderr:\n%s", args, limit, r.stderr)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("leasehold %q: %v", args, err)
	}
	return r
}

// silentServer accepts connections and never answers: an apiserver that
// cannot be reached. It returns the flags that point leasehold at it.
func silentServer(t *testing.T) []string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return []string{"--server", "https://" + ln.Addr().String(), "--insecure-skip-tls-verify"}
}

// TestFailFast: run and lock report at once what keeps them from working
// (a namespace that does not exist, an API that cannot be reached, a verb
// RBAC does not allow) instead of retrying in silence, and lock exits 75
// only when another holder really has the lock.
func TestFailFast(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	t.Run("missing namespace", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{
			append(append([]string{"run", "-n", "no-such-ns", "--lease", "x"}, fastTimings...), "--", "true"),
			{"lock", "x", "-n", "no-such-ns", "--timeout", "3s", "--", "true"},
			{"lock", "x", "-n", "no-such-ns", "--wait=false", "--", "true"},
		} {
			r := cliWithin(t, cp, 20*time.Second, args...)
			if r.code != ExitError || !strings.Contains(r.stderr, `namespace "no-such-ns" not found`) || r.took > 10*time.Second {
				t.Errorf("leasehold %q: exit %d after %v, stderr %q; want %d at once, naming the namespace", args, r.code, r.took, r.stderr, ExitError)
			}
		}
	})
	t.Run("unreachable API", func(t *testing.T) {
		t.Parallel()
		server := silentServer(t)
		for _, args := range [][]string{
			{"lock", "x", "--wait=false", "--", "true"},
			{"lock", "x", "--timeout", "3s", "--", "true"},
		} {
			r := cliWithin(t, nil, 30*time.Second, append(server, args...)...)
			if r.code != ExitUnavailable || !strings.Contains(r.stderr, "cannot reach the Kubernetes API") || r.took > 10*time.Second {
				t.Errorf("leasehold %q: exit %d after %v, stderr %q; want %d within seconds", args, r.code, r.took, r.stderr, ExitUnavailable)
			}
		}

		p := startCLI(t, nil, append(server, append(append([]string{"run", "--lease", "x", "--http", "127.0.0.1:0"}, fastTimings...), "--", "true")...)...)
		addr := p.HTTPAddr(t)
		p.Stderr.WaitFor(t, "cannot reach the Kubernetes API", 15*time.Second)
		if code, body := httpGet(t, addr, "/healthz"); code != http.StatusInternalServerError || !strings.Contains(body, "cannot reach the Kubernetes API") {
			t.Errorf("/healthz while the API cannot be reached: %d %q, want 500 and why", code, body)
		}
	})
	t.Run("waiter without delete", func(t *testing.T) {
		t.Parallel()
		// A waiter deletes its queue entry when it is served or gives up;
		// without delete it would find out only then, leaving entries
		// behind. Lock with --wait=false queues nothing and needs no delete.
		token, err := cp.ServiceAccountToken(t.Context(), "default", "no-delete", []rbacv1.PolicyRule{{
			APIGroups: []string{"coordination.k8s.io"},
			Resources: []string{"leases"},
			Verbs:     []string{"get", "list", "watch", "create", "update"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		r := cliWithin(t, cp, 30*time.Second, "--token", token, "lock", "no-delete", "--", "true")
		if r.code != ExitError || !strings.Contains(r.stderr, `verb "delete"`) || r.took > 10*time.Second {
			t.Errorf("lock without delete: exit %d after %v, stderr %q; want %d at once, naming verb \"delete\"", r.code, r.took, r.stderr, ExitError)
		}
		if r := cliWithin(t, cp, 30*time.Second, "--token", token, "lock", "no-delete-try", "--wait=false", "--", "true"); r.code != 0 {
			t.Errorf("lock --wait=false without delete: exit %d, stderr %q; want 0 (TryLock does not queue)", r.code, r.stderr)
		}
	})
	t.Run("follower without update", func(t *testing.T) {
		t.Parallel()
		// The Lease is held for five minutes: a follower that learned of
		// the missing verb only when taking over would wait that long.
		createHeldLease(t, cs, "no-update", "someone", 1)
		changeLease(t, cs, "no-update", func(r *lease.Record) { r.LeaseDuration = 5 * time.Minute })
		token, err := cp.ServiceAccountToken(t.Context(), "default", "no-update", []rbacv1.PolicyRule{{
			APIGroups: []string{"coordination.k8s.io"},
			Resources: []string{"leases"},
			Verbs:     []string{"get", "list", "watch", "create"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			append(append([]string{"--token", token, "run", "--lease", "no-update"}, fastTimings...), "--", "true"),
			{"--token", token, "lock", "no-update", "--", "true"},
		} {
			r := cliWithin(t, cp, 30*time.Second, args...)
			if r.code != ExitError || !strings.Contains(r.stderr, `verb "update"`) || r.took > 10*time.Second {
				t.Errorf("leasehold %q: exit %d after %v, stderr %q; want %d at once, naming verb \"update\"", args[2:], r.code, r.took, r.stderr, ExitError)
			}
		}
	})
}
