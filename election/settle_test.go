package election_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/fakelease"
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

// TestHandoffTakenByAnotherIsReported: a handoff to an identity that no
// candidate has is not completed; when another candidate takes the lease
// instead, Handoff says so rather than waiting for ever.
func TestHandoffTakenByAnotherIsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var r runner
		a := newElector(t, srv, "a")
		stopA := r.start(t.Context(), "a", a, untilDone)
		synctest.Wait()
		b := newElector(t, srv, "b")
		stopB := r.start(t.Context(), "b", b, untilDone)
		synctest.Wait()
		err := b.Handoff(t.Context(), "ghost")
		l := srv.Lease(ns, name)
		winner := *l.Spec.HolderIdentity
		if winner != "a" && winner != "b" {
			t.Fatalf("holder after the lapsed handoff = %q, want a or b", winner)
		}
		if *l.Spec.LeaseTransitions != 2 {
			t.Errorf("transitions = %d, want 2: the lease was acquired again", *l.Spec.LeaseTransitions)
		}
		if want := fmt.Sprintf("%q took over instead", winner); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `"ghost"`) {
			t.Fatalf("Handoff to a missing candidate = %v, want it to name ghost and report %s", err, want)
		}
		stopA()
		stopB()
		r.wg.Wait()
	})
}
