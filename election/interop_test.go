package election_test

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/testenv"
)

// interop drives Leasehold and client-go candidate processes on one Lease
// and records every leadership term on the shared monotonic clock.
type interop struct {
	t       *testing.T
	fleet   *candidate.Fleet
	args    []string
	rec     candidate.Recorder
	alive   map[string]bool
	impl    map[string]string
	ld      time.Duration
	seen    []string // "impl>impl" takeovers
	last    string   // impl of the previous leader
	pending string   // a leader that started while stop waited
}

func newInterop(t *testing.T, cp *testenv.ControlPlane, ld, rd, rp time.Duration) *interop {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	x := &interop{
		t:     t,
		fleet: candidate.NewFleet([]string{self, candidate.Arg}, []string{candidateEnv + "=1"}, os.Stderr),
		args: []string{"--kubeconfig", cp.Kubeconfig, "--lease", "interop",
			"--lease-duration", ld.String(), "--renew-deadline", rd.String(), "--retry-period", rp.String()},
		alive: map[string]bool{}, impl: map[string]string{}, ld: ld,
	}
	t.Cleanup(func() { x.fleet.Close(10 * time.Second) })
	return x
}

// start launches a candidate. client-go candidates do not release on cancel:
// client-go releases without waiting for OnStartedLeading to return, so a
// release could let the next leader start while the old work still runs.
func (x *interop) start(id, impl string) {
	x.t.Helper()
	args := append([]string{"--impl", impl}, x.args...)
	if impl == "client-go" {
		args = append(args, "--release-on-cancel=false")
	}
	if err := x.fleet.Start(id, args...); err != nil {
		x.t.Fatal(err)
	}
	x.alive[id], x.impl[id] = true, impl
}

// handle records one event and reports the id of a candidate that started
// leading, if it did.
func (x *interop) handle(ev candidate.Event) string {
	x.t.Helper()
	x.rec.Add(ev)
	switch ev.Ev {
	case "start":
		if x.last != "" {
			x.seen = append(x.seen, x.last+">"+ev.Impl)
		}
		x.last = ev.Impl
		return ev.ID
	case "exited":
		delete(x.alive, ev.ID)
	case "exit":
		if ev.Err != "" {
			x.t.Fatalf("%s failed: %s", ev.ID, ev.Err)
		}
	}
	return ""
}

// waitLeader returns the candidate that started leading since the last call,
// waiting for one if none has.
func (x *interop) waitLeader() string {
	x.t.Helper()
	if id := x.pending; id != "" {
		x.pending = ""
		return id
	}
	timeout := time.After(4*x.ld + 10*time.Second)
	for {
		select {
		case ev := <-x.fleet.Events:
			if id := x.handle(ev); id != "" {
				return id
			}
		case <-timeout:
			x.t.Fatalf("no candidate became leader; alive: %v", x.alive)
		}
	}
}

// stop signals a candidate and waits for its process to exit. A takeover
// while it exits (after a release) is kept for waitLeader.
func (x *interop) stop(id string, sig syscall.Signal) {
	x.t.Helper()
	if err := x.fleet.Signal(id, sig); err != nil {
		x.t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for x.alive[id] {
		select {
		case ev := <-x.fleet.Events:
			if started := x.handle(ev); started != "" {
				x.pending = started
			}
		case <-timeout:
			x.t.Fatalf("%s did not exit", id)
		}
	}
}

// TestIntegrationInteropWithClientGo runs Leasehold and client-go candidates
// on the same Lease, forces takeovers in both directions by release and by
// expiry, and checks that no two terms overlap on the shared monotonic clock.
func TestIntegrationInteropWithClientGo(t *testing.T) {
	cp := testenv.Start(t)
	// client-go compares records by their JSON, where acquire and renew times
	// have whole seconds, so with sub-second renewals its followers date the
	// last change up to a second early: LeaseDuration-RenewDeadline must
	// cover that second as well as clock-rate differences.
	x := newInterop(t, cp, 4*time.Second, 2*time.Second, 500*time.Millisecond)

	// client-go leads; it stops and a Leasehold candidate takes over when the
	// lease expires in its view.
	x.start("cg-1", "client-go")
	if id := x.waitLeader(); id != "cg-1" {
		t.Fatalf("leader %s, want cg-1", id)
	}
	x.start("lh-1", "leasehold")
	x.start("lh-2", "leasehold")
	x.stop("cg-1", syscall.SIGTERM)
	lh := x.waitLeader()

	// Leasehold releases on SIGTERM; the only other candidate left is
	// client-go, which takes over on its next poll.
	x.start("cg-2", "client-go")
	other := "lh-1"
	if lh == "lh-1" {
		other = "lh-2"
	}
	x.stop(other, syscall.SIGTERM)
	x.stop(lh, syscall.SIGTERM)
	if id := x.waitLeader(); id != "cg-2" {
		t.Fatalf("leader %s, want cg-2", id)
	}

	// client-go crashes; Leasehold judges expiry from client-go's renewals.
	x.start("lh-3", "leasehold")
	x.stop("cg-2", syscall.SIGKILL)
	lh = x.waitLeader()

	// Leasehold crashes; client-go takes over after expiry.
	x.start("cg-3", "client-go")
	x.stop(lh, syscall.SIGKILL)
	if id := x.waitLeader(); id != "cg-3" {
		t.Fatalf("leader %s, want cg-3", id)
	}

	// A mixed fleet, with the leader stopped or killed in turn.
	for i, impl := range []string{"leasehold", "client-go", "leasehold", "client-go"} {
		x.start(fmt.Sprintf("mix-%d", i), impl)
	}
	leader := "cg-3"
	for round := range 6 {
		sig := syscall.SIGTERM
		if round%2 == 1 {
			sig = syscall.SIGKILL
		}
		x.stop(leader, sig)
		x.start(fmt.Sprintf("again-%d", round), x.impl[leader])
		leader = x.waitLeader()
	}

	terms := x.rec.Terms(candidate.Mono())
	if bad := candidate.Overlaps(terms); len(bad) > 0 {
		t.Errorf("leadership terms overlap:\n%s", strings.Join(bad, "\n"))
	}
	if bad := candidate.TokensBackwards(terms); len(bad) > 0 {
		t.Errorf("fencing tokens went backwards:\n%s", strings.Join(bad, "\n"))
	}
	joined := strings.Join(x.seen, " ")
	for _, want := range []string{"client-go>leasehold", "leasehold>client-go"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no %s takeover among %s", want, joined)
		}
	}
	t.Logf("%d terms, takeovers: %s", len(terms), joined)
}
