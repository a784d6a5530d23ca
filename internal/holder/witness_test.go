package holder_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// fakeWitness is evidence set by the test.
type fakeWitness struct {
	mu      sync.Mutex
	stopped map[lease.Instance]bool
}

func (w *fakeWitness) Stopped(i lease.Instance) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopped[i]
}

func (w *fakeWitness) confirm(i lease.Instance) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped == nil {
		w.stopped = map[lease.Instance]bool{}
	}
	w.stopped[i] = true
}

// podCandidate is a Candidate that publishes inst and consults w, with its
// Observer running until the test ends.
func podCandidate(t *testing.T, srv *fakelease.Server, id string, inst *lease.Instance, w holder.Witness) (*holder.Candidate, *holder.Observer) {
	t.Helper()
	c, err := lease.NewClient(srv, "ns", "lock")
	if err != nil {
		t.Fatal(err)
	}
	obs := holder.NewObserver(c, nil, time.Second)
	cand, err := holder.NewCandidate(obs, holder.CandidateConfig{Identity: id, Timing: timing, Instance: inst, Witness: w})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = obs.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return cand, obs
}

// TestWitnessedStopTakesOverAtOnce: a holder publishes its instance; a
// follower whose witness confirms that instance stopped takes the lease at
// that moment, not at expiry. Evidence about another instance, or about
// the instance of a record a foreign writer edited, changes nothing.
func TestWitnessedStopTakesOverAtOnce(t *testing.T) {
	instA := lease.Instance{Namespace: "ns", Pod: "a", PodUID: "uid-a", Container: "app", ContainerID: "containerd://a1"}
	t.Run("confirmed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fakelease.New()
			w := &fakeWitness{}
			a, _ := podCandidate(t, srv, "a", &instA, nil)
			b, obsB := podCandidate(t, srv, "b", nil, w)
			termA, err := a.Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			termA.Abandon() // a "crashes": it stops renewing without releasing
			start := time.Now()
			got := make(chan *holder.Term, 1)
			go func() {
				term, err := b.Acquire(t.Context())
				if err != nil {
					t.Error(err)
				}
				got <- term
			}()
			time.Sleep(3 * time.Second)
			synctest.Wait()
			select {
			case <-got:
				t.Fatal("b took over without evidence")
			default:
			}
			other := instA
			other.ContainerID = "containerd://a0" // an earlier run of a's container
			w.confirm(other)
			obsB.Poke()
			synctest.Wait()
			select {
			case <-got:
				t.Fatal("b took over on evidence about another instance")
			default:
			}
			w.confirm(instA)
			obsB.Poke()
			term := <-got
			defer term.Abandon()
			if took := time.Since(start); took != 3*time.Second {
				t.Errorf("b took over %v after a stopped renewing, want at the evidence (3s), not at expiry (%v)", took, timing.LeaseDuration)
			}
		})
	})
	t.Run("foreign edit", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fakelease.New()
			w := &fakeWitness{}
			w.confirm(instA)
			a, _ := podCandidate(t, srv, "a", &instA, nil)
			b, _ := podCandidate(t, srv, "b", nil, w)
			termA, err := a.Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			termA.Abandon()
			// Someone names another holder by hand: a's instance says
			// nothing about it.
			l := srv.Lease("ns", "lock")
			intruder := "intruder"
			l.Spec.HolderIdentity = &intruder
			srv.Put(l)
			edited := time.Now()
			term, err := b.Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer term.Abandon()
			if took := time.Since(edited); took < timing.LeaseDuration {
				t.Errorf("b took a foreign-edited lease %v after the edit, want the lease duration (%v)", took, timing.LeaseDuration)
			}
		})
	})
}

// TestInstancePublishedWithEachTerm: the acquiring write records the
// instance at the new transition count, and a term without an instance
// leaves no credited instance behind.
func TestInstancePublishedWithEachTerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		inst := lease.Instance{Namespace: "ns", Pod: "a", PodUID: "uid-a", Container: "app", ContainerID: "containerd://a1"}
		a, _ := podCandidate(t, srv, "a", &inst, nil)
		b, _ := podCandidate(t, srv, "b", nil, nil)
		term, err := a.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got := lease.NewSnapshot(srv.Lease("ns", "lock")).Instance; got == nil || *got != inst {
			t.Fatalf("after a's acquisition: instance %v, want %v", got, inst)
		}
		time.Sleep(5 * time.Second) // renewals keep it
		if got := lease.NewSnapshot(srv.Lease("ns", "lock")).Instance; got == nil || *got != inst {
			t.Fatalf("after renewals: instance %v, want %v", got, inst)
		}
		if err := term.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		termB, err := b.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer termB.Abandon()
		if got := lease.NewSnapshot(srv.Lease("ns", "lock")).Instance; got != nil {
			t.Errorf("b's term (no instance) credits instance %v", *got)
		}
	})
}
