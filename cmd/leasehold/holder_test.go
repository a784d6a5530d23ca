package main

import (
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

// TestHolder: `holder` prints only the holder, for scripts: status 0 when
// held, 3 when not, 1 when the Lease cannot be read.
func TestHolder(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	createHeldLease(t, cs, "held", "pod-a", 1)
	createHeldLease(t, cs, "released", "pod-b", 2)
	changeLease(t, cs, "released", func(r *lease.Record) { *r = r.Released(time.Now()) })
	createHeldLease(t, cs, "expired", "pod-c", 3)
	changeLease(t, cs, "expired", func(r *lease.Record) { r.RenewTime = time.Now().Add(-time.Hour) })

	if r := cli(t, cp, "holder", "held").ok(t); r.stdout != "pod-a\n" || r.stderr != "" {
		t.Errorf("held: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if r := cli(t, cp, "holder", "lease/held", "-n", "default").ok(t); r.stdout != "pod-a\n" {
		t.Errorf("lease/held: stdout %q", r.stdout)
	}
	r := cli(t, cp, "holder", "released")
	r.fails(t, 3, "lease default/released is not held")
	if r.stdout != "" {
		t.Errorf("released: stdout %q", r.stdout)
	}
	r = cli(t, cp, "holder", "expired")
	r.fails(t, 3, "lease default/expired is not held", "pod-c has not renewed it")
	if r.stdout != "" {
		t.Errorf("expired: stdout %q", r.stdout)
	}
	cli(t, cp, "holder", "absent").fails(t, ExitError, `lease "absent" not found in namespace "default"`)
	cli(t, cp, "holder").fails(t, ExitUsage)
}
