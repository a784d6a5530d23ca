package main

import (
	"regexp"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
)

// TestGetWatch: get -w prints the table, then a row for each change of the
// Leases it lists, until interrupted.
func TestGetWatch(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	createHeldLease(t, cs, "x", "a", 1)

	row := func(name, holder, state string) string {
		return `^` + name + `\s+` + holder + `\s+` + state + `\s`
	}
	expectRow := func(p *lineProc, re string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			if regexp.MustCompile(re).MatchString(p.expect(t, "", time.Until(deadline))) {
				return
			}
		}
		t.Fatalf("no line matching %s", re)
	}

	p := startLines(t, cp, "get", "-w")
	expectRow(p, `^NAME\s+HOLDER\s+STATE\s+EXPIRES IN\s+HELD FOR\s+TRANSITIONS\s+AGE$`)
	expectRow(p, row("x", "a", "held"))
	changeLease(t, cs, "x", func(r *lease.Record) { r.Holder, r.Transitions = "b", r.Transitions+1 })
	expectRow(p, row("x", "b", "held"))
	createHeldLease(t, cs, "y", "c", 0)
	expectRow(p, row("y", "c", "held"))
	changeLease(t, cs, "x", func(r *lease.Record) { *r = r.Released(time.Now()) })
	expectRow(p, row("x", `<none>`, "released"))

	// One Lease by name, with the kind of each change.
	one := startLines(t, cp, "get", "y", "-w", "--output-watch-events")
	expectRow(one, `^EVENT\s+NAME\s+HOLDER`)
	expectRow(one, `^ADDED\s+`+row("y", "c", "held")[1:])
	changeLease(t, cs, "x", func(r *lease.Record) { r.Holder = "d" }) // not y: not shown
	if err := cs.CoordinationV1().Leases("default").Delete(t.Context(), "y", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectRow(one, `^DELETED\s+`+row("y", "c", "held")[1:])
	expectRow(p, row("x", "d", "held"))

	names := startLines(t, cp, "get", "-w", "-o", "name")
	names.expect(t, "lease.coordination.k8s.io/x", 20*time.Second)

	for _, proc := range []*lineProc{p, one, names} {
		if err := proc.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := proc.wait(); code != 0 {
			t.Errorf("get -w exited %d after SIGINT, want 0; stderr:\n%s", code, proc.errb.String())
		}
	}
}
