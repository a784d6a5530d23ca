package main

import (
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
)

// TestLockKindsOfOneNameExclude: `lock mix` holds; `lock mix --permits 2`
// must not also hold (it names the Lease and both kinds), and neither must
// a semaphore of another count once one is recorded.
func TestLockKindsOfOneNameExclude(t *testing.T) {
	cp := testenv.Start(t)
	a := startCLI(t, cp, "lock", "mix", "--identity", "plain", "--ttl", "2s", "--", "sh", "-c", holds)
	a.Stdout.WaitFor(t, "ready", 20*time.Second)
	r := cli(t, cp, "lock", "mix", "--permits", "2", "--wait=false", "--", "echo", "ran")
	if r.code == 0 || strings.Contains(r.stdout, "ran") || !strings.Contains(r.stderr, "default/mix") || !strings.Contains(r.stderr, "a mutex") {
		t.Errorf("semaphore on a mutex's name: exit %d, stdout %q, stderr %q; want a refusal naming default/mix and the mutex", r.code, r.stdout, r.stderr)
	}

	b := startCLI(t, cp, "lock", "sem", "--permits", "2", "--identity", "s2", "--ttl", "2s", "--", "sh", "-c", holds)
	b.Stdout.WaitFor(t, "ready", 20*time.Second)
	for _, args := range [][]string{
		{"lock", "sem", "--wait=false", "--", "echo", "ran"},
		{"lock", "sem", "--permits", "3", "--wait=false", "--", "echo", "ran"},
	} {
		r := cli(t, cp, args...)
		if r.code == 0 || strings.Contains(r.stdout, "ran") || !strings.Contains(r.stderr, "a semaphore with 2 permits") {
			t.Errorf("%v next to a 2-permit semaphore: exit %d, stdout %q, stderr %q; want a refusal naming the semaphore", args, r.code, r.stdout, r.stderr)
		}
	}
}
