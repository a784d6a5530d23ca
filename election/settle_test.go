package election_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
)

// TestPanicInWorkSettlesTheTerm: the work function panics and the caller
// recovers. The term must not leak: the lease is released, the elector no
// longer leads, and another candidate leads at once (well within
// LeaseDuration) and keeps leading.
func TestPanicInWorkSettlesTheTerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ts terms
		var r runner
		a := newElector(t, srv, "a")
		ctx, cancelA := context.WithCancel(t.Context())
		panicked := make(chan any, 1)
		var wg sync.WaitGroup
		wg.Go(func() {
			defer func() { panicked <- recover() }()
			_ = a.Run(ctx, func(ctx context.Context) error {
				time.Sleep(3 * time.Second) // lead for a while, renewing
				panic("work failed")
			})
		})
		synctest.Wait()
		b := newElector(t, srv, "b")
		stopB := r.start(t.Context(), "b", b, ts.work("b", untilDone))
		synctest.Wait()
		if b.IsLeader() {
			t.Fatal("b leads while a's work runs")
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if p := <-panicked; p != "work failed" {
			t.Fatalf("recovered %v, want the work's panic to reach the caller", p)
		}
		panicAt := time.Now()
		cancelA() // the caller moves on; Run's context ends
		if a.IsLeader() {
			t.Error("a still leads after its work panicked")
		}
		if got := ts.check(t); len(got) != 1 || got[0].id != "b" {
			t.Fatalf("terms after the panic = %+v, want b leading", got)
		}
		if d := ts.check(t)[0].start.Sub(panicAt); d != 0 {
			t.Errorf("b took over %v after the panic, want at once (the lease released)", d)
		}
		time.Sleep(3 * election.DefaultLeaseDuration)
		synctest.Wait()
		if l := srv.Lease(ns, name); *l.Spec.HolderIdentity != "b" || !b.IsLeader() {
			t.Errorf("after %v: holder %q, b leads %v; want b, undisturbed", 3*election.DefaultLeaseDuration, *l.Spec.HolderIdentity, b.IsLeader())
		}
		stopB()
		r.wg.Wait()
		wg.Wait()
	})
}

// TestBlockingLoggerCannotDelayTheDeadline: the elector's Logger blocks for
// far longer than the lease on the first failed renewal it is told about.
// The leadership context must still end exactly RenewDeadline after the last
// successful renewal was sent, before the follower takes over.
func TestBlockingLoggerCannotDelayTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ts terms
		var r runner
		unblock := make(chan struct{})
		blocking := funcr.New(func(_, args string) {
			if strings.Contains(args, "renewal failed") {
				select { // 20 lease durations, or until the test ends
				case <-unblock:
				case <-time.After(20 * election.DefaultLeaseDuration):
				}
			}
		}, funcr.Options{Verbosity: 2})
		t0 := time.Now()
		a := newElector(t, srv, "a", func(c *election.Config) { c.Logger = blocking })
		stopA := r.start(t.Context(), "a", a, ts.work("a", untilDone))
		synctest.Wait()
		b := newElector(t, srv, "b")
		stopB := r.start(t.Context(), "b", b, ts.work("b", untilDone))
		synctest.Wait()
		time.Sleep(5 * time.Second) // renewals sent at +2s and +4s succeed
		synctest.Wait()
		srv.Fail("update", func(string) error { return apierrors.NewServiceUnavailable("partitioned") })
		// a's first failed renewal (+6s) blocks its renewing goroutine in
		// the logger; the partition heals after a's deadline (+14s).
		time.Sleep(10 * time.Second)
		srv.Fail("update", nil)
		time.Sleep(2 * election.DefaultLeaseDuration)
		synctest.Wait()
		got := ts.check(t)
		if len(got) < 2 || got[0].id != "a" || got[1].id != "b" {
			t.Fatalf("terms = %+v, want a then b", got)
		}
		lastSent := t0.Add(4 * time.Second)
		if want := lastSent.Add(election.DefaultRenewDeadline); !got[0].end.Equal(want) {
			t.Errorf("a's leadership ended at +%v, want exactly +%v (RenewDeadline after the last renewal sent)", got[0].end.Sub(t0), want.Sub(t0))
		}
		if want := lastSent.Add(election.DefaultLeaseDuration); got[1].start.Before(want) {
			t.Errorf("b took over at +%v, before +%v", got[1].start.Sub(t0), want.Sub(t0))
		}
		close(unblock)
		stopA()
		stopB()
		r.wg.Wait()
	})
}

// TestHandoffToMissingCandidateResumes: a handoff to an identity that no
// candidate has (a typo) must not take the service down. The leader stops
// its work but keeps the lease, offers it, and when nobody takes it within
// HandoffTimeout it resumes under a new term. The lease is never released,
// the follower never leads, and Handoff says the request lapsed.
func TestHandoffToMissingCandidateResumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ts terms
		var r runner
		a := newElector(t, srv, "a")
		stopA := r.start(t.Context(), "a", a, ts.work("a", untilDone))
		synctest.Wait()
		b := newElector(t, srv, "b")
		stopB := r.start(t.Context(), "b", b, ts.work("b", untilDone))
		synctest.Wait()
		asked := time.Now()
		err := b.Handoff(t.Context(), "ghost")
		if err == nil || !strings.Contains(err.Error(), `"ghost"`) || !strings.Contains(err.Error(), `"a" resumed`) {
			t.Fatalf("Handoff to a missing candidate = %v, want it to name ghost and say a resumed", err)
		}
		synctest.Wait()
		got := ts.check(t)
		if len(got) != 2 || got[0].id != "a" || got[1].id != "a" {
			t.Fatalf("terms = %+v, want a, then a again", got)
		}
		if d, want := got[1].start.Sub(asked), 2*election.DefaultRetryPeriod; d != want {
			t.Errorf("a resumed %v after the request, want exactly the HandoffTimeout %v", d, want)
		}
		if got[1].token <= got[0].token {
			t.Errorf("resumed with token %d, want one above %d (a new term)", got[1].token, got[0].token)
		}
		offered := false
		for _, v := range srv.Versions(ns, name)[1:] { // after the create
			if h := *v.Spec.HolderIdentity; h != "a" {
				t.Errorf("version %s names holder %q: the lease must stay a's throughout", v.ResourceVersion, h)
			}
			offered = offered || v.Annotations[lease.OfferAnnotation] != ""
		}
		if !offered {
			t.Error("a never offered the lease")
		}
		if l := srv.Lease(ns, name); l.Spec.PreferredHolder != nil || l.Annotations[lease.OfferAnnotation] != "" || l.Annotations[lease.PreferredHolderAnnotation] != "" {
			t.Errorf("after resuming, the request or offer is still there: %v %v", l.Spec.PreferredHolder, l.Annotations)
		}
		stopA()
		stopB()
		r.wg.Wait()
	})
}

// TestOfferedLeaseIsTakenOnlyByItsTarget: while the leader offers the lease
// to c, the follower b keeps waiting; c takes it at once, and b never leads.
func TestOfferedLeaseIsTakenOnlyByItsTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ts terms
		var r runner
		var stops []context.CancelFunc
		for _, id := range []string{"a", "b", "c"} {
			stops = append(stops, r.start(t.Context(), id, newElector(t, srv, id), ts.work(id, untilDone)))
			synctest.Wait()
		}
		asked := time.Now()
		if _, err := election.RequestHandoff(t.Context(), mustClient(t, srv), "c"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		got := ts.check(t)
		if len(got) != 2 || got[1].id != "c" {
			t.Fatalf("terms = %+v, want a then c", got)
		}
		if d := got[1].start.Sub(asked); d != 0 {
			t.Errorf("c took over %v after the request, want at once", d)
		}
		for _, v := range srv.Versions(ns, name)[1:] {
			if h := *v.Spec.HolderIdentity; h != "a" && h != "c" {
				t.Errorf("version %s names holder %q; want only a, then c", v.ResourceVersion, h)
			}
		}
		for _, s := range stops {
			s()
		}
		r.wg.Wait()
	})
}

func mustClient(t *testing.T, srv *fakelease.Server) *lease.Client {
	t.Helper()
	c, err := lease.NewClient(srv, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestShutdownReleasesToSuccessor: a leader shut down while leading asks
// Successor while its work still runs, then stops the work and releases the
// lease reserved for the successor: the successor leads at
// once, another follower does not compete; a successor who is not there
// holds the others back only two retry periods.
func TestShutdownReleasesToSuccessor(t *testing.T) {
	for _, tc := range []struct {
		name, successor, want string
		after                 time.Duration // from a's release to the new term
	}{
		{"present", "c", "c", 0},
		{"absent", "ghost", "", 2 * election.DefaultRetryPeriod}, // b or c
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fakelease.New()
				var ts terms
				var asked atomic.Int32
				var aWork atomic.Pointer[context.Context]
				a := newElector(t, srv, "a", func(c *election.Config) {
					c.Successor = func(ctx context.Context) string {
						asked.Add(1)
						if _, ok := ctx.Deadline(); !ok {
							t.Error("Successor's context has no deadline")
						}
						if w := aWork.Load(); w == nil || (*w).Err() != nil {
							t.Error("Successor asked after the work's context ended: the lookup is time without a leader")
						}
						return tc.successor
					}
				})
				var r runner
				stopA := r.start(t.Context(), "a", a, ts.work("a", func(ctx context.Context) error {
					aWork.Store(&ctx)
					return untilDone(ctx)
				}))
				synctest.Wait()
				if !a.IsLeader() {
					t.Fatal("a does not lead")
				}
				// b first: without the reservation it would win.
				r.start(t.Context(), "b", newElector(t, srv, "b"), ts.work("b", untilDone))
				synctest.Wait()
				r.start(t.Context(), "c", newElector(t, srv, "c"), ts.work("c", untilDone))
				synctest.Wait()
				stopA()
				synctest.Wait()
				released := time.Now()
				if asked.Load() != 1 {
					t.Fatalf("Successor asked %d times, want once", asked.Load())
				}
				time.Sleep(tc.after)
				synctest.Wait()
				log := ts.check(t)
				if len(log) != 2 {
					t.Fatalf("terms %+v, want a's and one more", log)
				}
				next := log[1]
				if (tc.want != "" && next.id != tc.want) || next.id == "a" || !next.start.Equal(released.Add(tc.after)) {
					t.Errorf("next term %+v, want %q's starting %v after the release", next, tc.want, tc.after)
				}
			})
		})
	}
}
