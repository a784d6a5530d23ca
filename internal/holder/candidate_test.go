package holder_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

var timing = holder.Timing{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}

// candidate is one Candidate with its running Observer on srv's ns/lock.
type candidate struct {
	*holder.Candidate
	conflicts atomic.Int32
}

// newCandidate starts an Observer for id until the test ends; call it
// inside a synctest bubble.
func newCandidate(t *testing.T, srv *fakelease.Server, id string, hooks holder.Hooks) *candidate {
	t.Helper()
	c, err := lease.NewClient(srv, "ns", "lock")
	if err != nil {
		t.Fatal(err)
	}
	obs := holder.NewObserver(c, nil, time.Second)
	cand := &candidate{}
	if hooks.Conflict == nil {
		hooks.Conflict = func() { cand.conflicts.Add(1) }
	}
	cand.Candidate, err = holder.NewCandidate(obs, holder.CandidateConfig{Identity: id, Timing: timing, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = obs.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return cand
}

type acquired struct {
	term *holder.Term
	err  error
	at   time.Time
}

func acquireAsync(ctx context.Context, c *candidate) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		term, err := c.Acquire(ctx)
		ch <- acquired{term, err, time.Now()}
	}()
	return ch
}

func mustAcquire(t *testing.T, c *candidate) *holder.Term {
	t.Helper()
	term, err := c.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return term
}

func holderOf(srv *fakelease.Server) string {
	if l := srv.Lease("ns", "lock"); l != nil && l.Spec.HolderIdentity != nil {
		return *l.Spec.HolderIdentity
	}
	return ""
}

// TestAcquireConflictWaitsForTheWinner: two candidates see the same released
// lease and write on it together (the fake holds both writes until both
// have arrived). One wins; the other gets 409, reports the conflict, and
// then waits for the winner's write to arrive through the watch instead of
// writing again.
func TestAcquireConflictWaitsForTheWinner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		z := newCandidate(t, srv, "z", holder.Hooks{})
		a, b := newCandidate(t, srv, "a", holder.Hooks{}), newCandidate(t, srv, "b", holder.Hooks{})
		first := mustAcquire(t, z)
		synctest.Wait()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		srv.HoldUpdates(2, func(l *coordinationv1.Lease) bool { return *l.Spec.HolderIdentity != "" })
		chA, chB := acquireAsync(ctx, a), acquireAsync(ctx, b)
		synctest.Wait()
		if err := first.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		updates := srv.Count("update")
		var winner, loser <-chan acquired
		var loserC *candidate
		select {
		case r := <-chA:
			winner, loser, loserC = chA, chB, b
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.term.Abandon()
		case r := <-chB:
			winner, loser, loserC = chB, chA, a
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.term.Abandon()
		default:
			t.Fatal("nobody acquired the released lease")
		}
		_ = winner
		if n := srv.Conflicts(); n != 1 {
			t.Errorf("%d conflicts, want exactly 1 (the loser's write)", n)
		}
		if n := loserC.conflicts.Load(); n != 1 {
			t.Errorf("the loser's Conflict hook ran %d times, want 1", n)
		}
		time.Sleep(3 * timing.RetryPeriod) // the winner renews; the loser must not write
		synctest.Wait()
		if n := srv.Count("update") - updates; n != 3 {
			t.Errorf("%d updates in 3 retry periods, want only the winner's 3 renewals", n)
		}
		select {
		case r := <-loser:
			t.Fatalf("the loser returned %+v while the winner holds", r)
		default:
		}
	})
}

// TestAcquireResyncsWhenTheWinnerNeverArrives: the write is refused with 409
// but no newer version ever arrives through the watch (the watch is
// behind). After RetryPeriod the candidate re-reads (one GET), finds the
// version unchanged, and writes again, successfully.
func TestAcquireResyncsWhenTheWinnerNeverArrives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		a := newCandidate(t, srv, "a", holder.Hooks{})
		synctest.Wait()
		var refused atomic.Bool
		srv.Fail("update", func(name string) error {
			if refused.CompareAndSwap(false, true) {
				return apierrors.NewConflict(leasesGR, name, errors.New("the object has been modified"))
			}
			return nil
		})
		gets := srv.Count("get")
		start := time.Now()
		r := <-acquireAsync(t.Context(), a)
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.term.Abandon()
		if d := r.at.Sub(start); d != timing.RetryPeriod {
			t.Errorf("acquired %v after the refused write, want exactly RetryPeriod %v", d, timing.RetryPeriod)
		}
		if n := srv.Count("get") - gets; n != 1 {
			t.Errorf("%d reads, want exactly 1 re-read after the unexplained conflict", n)
		}
		if n := a.conflicts.Load(); n != 1 {
			t.Errorf("Conflict hook ran %d times, want 1", n)
		}
		if h := holderOf(srv); h != "a" {
			t.Errorf("holder %q, want a", h)
		}
	})
}

// TestAbandonStopsRenewingWithoutReleasing: Abandon ends the context with
// ErrReleased and stops renewing, but writes nothing: the lease keeps naming
// the holder and another candidate takes it exactly LeaseDuration after it
// saw the last renewal.
func TestAbandonStopsRenewingWithoutReleasing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		a, b := newCandidate(t, srv, "a", holder.Hooks{}), newCandidate(t, srv, "b", holder.Hooks{})
		term := mustAcquire(t, a)
		chB := acquireAsync(t.Context(), b)
		time.Sleep(3 * time.Second) // one renewal, at +2s
		synctest.Wait()
		lastRenewal := term.LastRenew()
		updates := srv.Count("update")
		term.Abandon()
		if !errors.Is(term.Err(), holder.ErrReleased) || !errors.Is(context.Cause(term.Context()), holder.ErrReleased) {
			t.Errorf("after Abandon: Err %v, cause %v; want ErrReleased", term.Err(), context.Cause(term.Context()))
		}
		if srv.Count("update") != updates || holderOf(srv) != "a" {
			t.Errorf("Abandon wrote: updates %d -> %d, holder %q", updates, srv.Count("update"), holderOf(srv))
		}
		r := <-chB
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.term.Abandon()
		if want := lastRenewal.Add(timing.LeaseDuration); !r.at.Equal(want) {
			t.Errorf("b took over at %v after a's last renewal, want exactly LeaseDuration", r.at.Sub(lastRenewal))
		}
		if n := srv.Count("update") - updates; n != 1 {
			t.Errorf("%d updates after Abandon, want only b's acquisition", n)
		}
	})
}

// TestRenewedHookCannotDelayTheDeadline: the Renewed hook blocks for ten
// lease durations on the first renewal. Renewals stop, but the term's
// context still ends exactly RenewDeadline after that renewal was sent, and
// before another candidate can take over.
func TestRenewedHookCannotDelayTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var once sync.Once
		a := newCandidate(t, srv, "a", holder.Hooks{Renewed: func(time.Duration, error) {
			once.Do(func() { time.Sleep(10 * timing.LeaseDuration) })
		}})
		b := newCandidate(t, srv, "b", holder.Hooks{})
		term := mustAcquire(t, a)
		chB := acquireAsync(t.Context(), b)
		start := time.Now()
		<-term.Done()
		ended := time.Now()
		renewedAt := start.Add(timing.RetryPeriod) // the renewal whose hook blocks
		if want := renewedAt.Add(timing.RenewDeadline); !ended.Equal(want) {
			t.Errorf("context ended %v after acquiring, want exactly %v (RetryPeriod + RenewDeadline)", ended.Sub(start), want.Sub(start))
		}
		if !errors.Is(term.Err(), holder.ErrDeadline) {
			t.Errorf("cause %v, want ErrDeadline", term.Err())
		}
		r := <-chB
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.term.Abandon()
		if !r.at.After(ended) {
			t.Errorf("b acquired at +%v, not after a's context ended at +%v", r.at.Sub(start), ended.Sub(start))
		}
		term.Abandon() // returns once the hook does
	})
}

// TestReleaseRetriesConflictsWhileOurs: a claim written between the
// holder's read and its release makes the release conflict twice in a row;
// the lease is still ours, so Release re-reads and retries until it lands.
func TestReleaseRetriesConflictsWhileOurs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		a := newCandidate(t, srv, "a", holder.Hooks{})
		term := mustAcquire(t, a)
		synctest.Wait()
		var refusals atomic.Int32
		srv.Fail("update", func(name string) error {
			if refusals.Add(1) <= 2 {
				return apierrors.NewConflict(leasesGR, name, errors.New("the object has been modified"))
			}
			return nil
		})
		if err := term.Release(t.Context()); err != nil {
			t.Fatalf("Release after two conflicts on a lease still ours: %v", err)
		}
		if h := holderOf(srv); h != "" {
			t.Errorf("holder %q after Release, want released", h)
		}
	})
}
