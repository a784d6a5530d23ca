package election_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
)

const ns, name = "default", "leader"

// terms records leadership intervals in (virtual) time and checks that no two
// overlap.
type terms struct {
	mu  sync.Mutex
	log []term
}

type term struct {
	id         string
	token      lease.Token
	start, end time.Time
}

func (ts *terms) work(id string, body func(ctx context.Context) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		tok, _ := election.TokenFrom(ctx)
		ts.mu.Lock()
		ts.log = append(ts.log, term{id: id, token: tok, start: time.Now()})
		i := len(ts.log) - 1
		ts.mu.Unlock()
		err := body(ctx)
		ts.mu.Lock()
		ts.log[i].end = time.Now()
		ts.mu.Unlock()
		return err
	}
}

func (ts *terms) check(t *testing.T) []term {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for i, a := range ts.log {
		if i > 0 && a.token <= ts.log[i-1].token {
			t.Errorf("token went backwards: %v then %v", ts.log[i-1], a)
		}
		for _, b := range ts.log[i+1:] {
			aEnd, bEnd := a.end, b.end
			if aEnd.IsZero() {
				aEnd = time.Now()
			}
			if bEnd.IsZero() {
				bEnd = time.Now()
			}
			if a.start.Before(bEnd) && b.start.Before(aEnd) {
				t.Errorf("terms overlap: %+v and %+v", a, b)
			}
		}
	}
	return append([]term(nil), ts.log...)
}

func untilDone(ctx context.Context) error { <-ctx.Done(); return nil }

func newElector(t *testing.T, srv *fakelease.Server, id string, mod ...func(*election.Config)) *election.Elector {
	t.Helper()
	cfg := election.Config{Leases: srv, Namespace: ns, Name: name, Identity: id}
	for _, m := range mod {
		m(&cfg)
	}
	e, err := election.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type runner struct {
	wg   sync.WaitGroup
	errs sync.Map
}

func (r *runner) start(ctx context.Context, id string, e *election.Elector, fn func(context.Context) error) context.CancelFunc {
	ctx, cancel := context.WithCancel(ctx)
	r.wg.Go(func() {
		err := e.Run(ctx, fn)
		r.errs.Store(id, err)
	})
	return cancel
}

func (r *runner) err(id string) error {
	v, _ := r.errs.Load(id)
	err, _ := v.(error)
	return err
}

func TestAcquireRunReleaseOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ts terms
		e := newElector(t, srv, "a")
		var r runner
		stop := r.start(t.Context(), "a", e, ts.work("a", untilDone))
		synctest.Wait()
		l, _ := e.Observe()
		if !l.IsMe || l.Holder != "a" || l.Token == 0 {
			t.Fatalf("want a to lead with a token, got %+v", l)
		}
		got := srv.Lease(ns, name)
		if *got.Spec.HolderIdentity != "a" || *got.Spec.LeaseDurationSeconds != 15 || *got.Spec.LeaseTransitions != 1 {
			t.Fatalf("lease spec = %+v", got.Spec)
		}
		time.Sleep(time.Minute) // renewals keep it
		if !e.IsLeader() {
			t.Fatal("lost leadership without a fault")
		}
		updates := srv.Count("update")
		if updates < 25 || updates > 33 { // one renewal per RetryPeriod (2s)
			t.Errorf("%d updates in a minute, want about 30 (one per 2s)", updates)
		}
		stop()
		r.wg.Wait()
		if err := r.err("a"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
		got = srv.Lease(ns, name)
		if *got.Spec.HolderIdentity != "" || *got.Spec.LeaseDurationSeconds != 1 || *got.Spec.LeaseTransitions != 1 {
			t.Fatalf("not released by convention: %+v", got.Spec)
		}
		if l := ts.check(t); len(l) != 1 || l[0].end.IsZero() {
			t.Fatalf("terms = %+v", l)
		}
	})
}

func TestFollowerTakesOverAfterExpiryInItsView(t *testing.T) {
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
		if !a.IsLeader() || b.IsLeader() {
			t.Fatal("want a leading and b following")
		}
		watchesBefore, getsBefore := srv.Count("watch"), srv.Count("get")
		time.Sleep(30 * time.Second)
		if srv.Count("watch") != watchesBefore || srv.Count("get") != getsBefore {
			t.Errorf("follower polled: watches %d->%d gets %d->%d", watchesBefore, srv.Count("watch"), getsBefore, srv.Count("get"))
		}
		// a's renewals start failing (partition): its context must end at the
		// deadline, before b can take over.
		srv.Fail("update", func(name string) error {
			return apierrors.NewServiceUnavailable("partitioned")
		})
		synctest.Wait()
		for a.IsLeader() {
			time.Sleep(100 * time.Millisecond)
		}
		aEnded := time.Now()
		// a, still partitioned, shuts down (its release cannot get through):
		// b must wait out the lease in its own view.
		stopA()
		synctest.Wait()
		srv.Fail("update", nil)
		for !b.IsLeader() {
			time.Sleep(100 * time.Millisecond)
		}
		got := ts.check(t)
		if len(got) != 2 || got[0].id != "a" || got[1].id != "b" {
			t.Fatalf("terms = %+v", got)
		}
		if gap := got[1].start.Sub(aEnded); gap < 4*time.Second {
			t.Errorf("b started %v after a stopped; the margin LeaseDuration-RenewDeadline is 5s", gap)
		}
		stopB()
		r.wg.Wait()
	})
}

func TestExpiryExactlyAtObservedPlusDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		// A foreign holder (e.g. a crashed client-go process) wrote the lease.
		now := time.Now()
		srv.Put(leaseObj("crashed", 15, 3, now))
		var ts terms
		var r runner
		b := newElector(t, srv, "b")
		start := time.Now()
		stop := r.start(t.Context(), "b", b, ts.work("b", untilDone))
		synctest.Wait()
		time.Sleep(15*time.Second - time.Millisecond)
		synctest.Wait()
		if b.IsLeader() {
			t.Fatal("took over before observedAt+LeaseDuration")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if !b.IsLeader() {
			t.Fatal("did not take over at observedAt+LeaseDuration")
		}
		if d := ts.check(t)[0].start.Sub(start); d != 15*time.Second {
			t.Errorf("took over after %v, want exactly 15s", d)
		}
		if tr := *srv.Lease(ns, name).Spec.LeaseTransitions; tr != 4 {
			t.Errorf("transitions = %d, want 4", tr)
		}
		stop()
		r.wg.Wait()
	})
}

func TestHandoffAndPreferredHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ts terms
		var r runner
		ids := []string{"a", "b", "c"}
		es := map[string]*election.Elector{}
		var stops []context.CancelFunc
		for _, id := range ids {
			es[id] = newElector(t, srv, id)
			stops = append(stops, r.start(t.Context(), id, es[id], ts.work(id, func(ctx context.Context) error {
				<-ctx.Done()
				time.Sleep(300 * time.Millisecond) // work takes a while to stop
				return nil
			})))
			synctest.Wait()
		}
		if !es["a"].IsLeader() {
			t.Fatal("a should lead")
		}
		before := time.Now()
		if err := es["b"].Handoff(t.Context(), "c"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // b saw c take the lease; let c's Run get to its work
		if !es["c"].IsLeader() {
			t.Fatal("c should lead after the handoff")
		}
		if d := time.Since(before); d > 400*time.Millisecond {
			t.Errorf("handoff took %v of virtual time, want just the work's stop time", d)
		}
		if p := srv.Lease(ns, name).Spec.PreferredHolder; p != nil {
			t.Errorf("preferredHolder left set: %q", *p)
		}
		ts.check(t)
		for _, s := range stops {
			s()
		}
		r.wg.Wait()
	})
}

func TestResignAndRecampaign(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ts terms
		var r runner
		a := newElector(t, srv, "a")
		b := newElector(t, srv, "b")
		stopA := r.start(t.Context(), "a", a, ts.work("a", untilDone))
		synctest.Wait()
		stopB := r.start(t.Context(), "b", b, ts.work("b", untilDone))
		synctest.Wait()
		if err := a.Resign(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !b.IsLeader() || a.IsLeader() {
			t.Fatal("b should lead after a resigned")
		}
		// b loses its lease to a foreign write; a campaigns and takes over after expiry.
		if err := b.Resign(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !a.IsLeader() {
			t.Fatal("a should lead again: Run re-campaigns after a loss")
		}
		if got := ts.check(t); len(got) != 3 {
			t.Fatalf("terms = %+v", got)
		}
		stopA()
		stopB()
		r.wg.Wait()
	})
}

func TestLostToForeignWriterCancelsWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var r runner
		a := newElector(t, srv, "a")
		var cause error
		stop := r.start(t.Context(), "a", a, func(ctx context.Context) error {
			<-ctx.Done()
			cause = context.Cause(ctx)
			return nil
		})
		synctest.Wait()
		l := srv.Lease(ns, name)
		holder := "intruder"
		l.Spec.HolderIdentity = &holder
		tr := *l.Spec.LeaseTransitions + 1
		l.Spec.LeaseTransitions = &tr
		srv.Put(l)
		synctest.Wait()
		if a.IsLeader() || !errors.Is(cause, election.ErrLost) {
			t.Fatalf("leader=%v cause=%v, want not leading with ErrLost", a.IsLeader(), cause)
		}
		stop()
		r.wg.Wait()
	})
}

func TestAPIErrorsSurface(t *testing.T) {
	forbidden := func(verb string) func(string) error {
		return func(name string) error {
			return apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, name,
				fmt.Errorf("User \"system:serviceaccount:default:app\" cannot %s resource \"leases\"", verb))
		}
	}
	for _, verb := range []string{"get", "create", "update", "watch"} {
		t.Run(verb, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fakelease.New()
				if verb == "update" {
					srv.Put(leaseObj("", 1, 0, time.Now()))
				}
				srv.Fail(verb, forbidden(verb))
				e := newElector(t, srv, "a")
				err := e.Run(t.Context(), untilDone)
				if !errors.Is(err, lease.ErrForbidden) || !strings.Contains(err.Error(), fmt.Sprintf("verb %q", verb)) {
					t.Fatalf("Run = %v, want forbidden naming verb %q", err, verb)
				}
			})
		})
	}
	t.Run("not found when watching a namespace that is gone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fakelease.New()
			srv.Fail("create", func(name string) error {
				return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, ns)
			})
			e := newElector(t, srv, "a")
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := e.Run(ctx, untilDone)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Run = %v", err)
			}
		})
	})
	t.Run("server down is retried, then recovers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fakelease.New()
			down := func(string) error { return apierrors.NewServiceUnavailable("apiserver is restarting") }
			srv.Fail("get", down)
			srv.Fail("watch", down)
			e := newElector(t, srv, "a")
			var r runner
			stop := r.start(t.Context(), "a", e, untilDone)
			time.Sleep(10 * time.Second)
			if e.IsLeader() {
				t.Fatal("led without the apiserver")
			}
			srv.Fail("get", nil)
			srv.Fail("watch", nil)
			time.Sleep(3 * time.Second)
			if !e.IsLeader() {
				t.Fatal("did not recover after the apiserver came back")
			}
			stop()
			r.wg.Wait()
		})
	})
}

func TestWatchReestablishedAfterGoneAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var r runner
		a := newElector(t, srv, "a")
		b := newElector(t, srv, "b")
		stopA := r.start(t.Context(), "a", a, untilDone)
		synctest.Wait()
		stopB := r.start(t.Context(), "b", b, untilDone)
		synctest.Wait()
		srv.Compact()
		srv.CloseWatches()
		time.Sleep(5 * time.Second)
		stopA() // a releases; b must see it through its re-established watch
		synctest.Wait()
		if !b.IsLeader() {
			t.Fatal("b did not see the release after its watch was re-established")
		}
		stopB()
		r.wg.Wait()
	})
}

func TestHealthCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var r runner
		a := newElector(t, srv, "a")
		release := make(chan struct{})
		stop := r.start(t.Context(), "a", a, func(ctx context.Context) error {
			<-release // work that ignores its context
			return nil
		})
		synctest.Wait()
		if err := a.Check(nil); err != nil {
			t.Fatalf("healthy leader failed check: %v", err)
		}
		srv.Fail("update", func(string) error { return apierrors.NewServiceUnavailable("down") })
		time.Sleep(11 * time.Second)
		if err := a.Check(nil); err == nil {
			t.Fatal("check passed for a leader past its deadline whose work still runs")
		}
		close(release)
		srv.Fail("update", nil)
		synctest.Wait()
		if err := a.Check(nil); err != nil {
			t.Fatalf("check failed after the work stopped: %v", err)
		}
		stop()
		r.wg.Wait()
	})
}

func TestConfigValidateNamesEveryField(t *testing.T) {
	err := election.Config{Namespace: "Bad_NS", Name: "", LeaseDuration: 1500 * time.Millisecond, RenewDeadline: 5 * time.Second, RetryPeriod: -1}.Validate()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"Leases", "Namespace \"Bad_NS\"", "Name is required", "LeaseDuration 1.5s", "RenewDeadline 5s", "RetryPeriod -1ns"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (election.Config{Leases: fakelease.New(), Namespace: "a", Name: "b", Identity: "c"}).Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}

// TestLostRenewEndsContextAtDeadline: renewals start failing; the leader's
// context ends exactly RenewDeadline after its last successful renewal was
// sent, which is LeaseDuration-RenewDeadline before the follower, who saw
// that renewal, may take over.
func TestLostRenewEndsContextAtDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ts terms
		var r runner
		t0 := time.Now()
		a := newElector(t, srv, "a")
		stopA := r.start(t.Context(), "a", a, ts.work("a", untilDone))
		synctest.Wait()
		b := newElector(t, srv, "b")
		stopB := r.start(t.Context(), "b", b, ts.work("b", untilDone))
		synctest.Wait()
		// Renewals go out at t0+2s, +4s, ...; the one at +4s is the last
		// that succeeds.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		srv.Fail("update", func(string) error { return apierrors.NewServiceUnavailable("partitioned") })
		lastSent := t0.Add(4 * time.Second)
		for a.IsLeader() {
			time.Sleep(time.Millisecond)
		}
		synctest.Wait() // a's work has returned
		got := ts.check(t)
		if end, want := got[0].end, lastSent.Add(10*time.Second); !end.Equal(want) {
			t.Fatalf("a's work ended at +%v, want exactly the deadline +%v", end.Sub(t0), want.Sub(t0))
		}
		srv.Fail("update", nil)
		stopA()
		for !b.IsLeader() {
			time.Sleep(time.Millisecond)
		}
		got = ts.check(t)
		if len(got) < 2 || got[len(got)-1].id != "b" { // a may retake its own lease before it stops
			t.Fatalf("terms = %+v", got)
		}
		stopB()
		r.wg.Wait()
	})
}

// TestRaceForReleaseOneWinsOthersWatch: three followers race for a release;
// the fake holds their writes until all three have sent theirs, so exactly
// one write wins and the other two get 409; the losers go back to watching,
// and in steady state followers make no requests.
func TestRaceForReleaseOneWinsOthersWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ts terms
		var r runner
		a := newElector(t, srv, "a")
		stopA := r.start(t.Context(), "a", a, ts.work("a", untilDone))
		synctest.Wait()
		stops := map[string]context.CancelFunc{}
		for _, id := range []string{"b", "c", "d"} {
			e := newElector(t, srv, id)
			stops[id] = r.start(t.Context(), id, e, ts.work(id, untilDone))
		}
		synctest.Wait()
		srv.HoldUpdates(3, func(l *coordinationv1.Lease) bool {
			h := l.Spec.HolderIdentity
			return h != nil && *h != "" && *h != "a" // the followers' acquisitions
		})
		before, conflicts := srv.Count("update"), srv.Conflicts()
		stopA() // releases
		synctest.Wait()
		got := ts.check(t)
		if len(got) != 2 {
			t.Fatalf("terms = %+v, want a then exactly one follower", got)
		}
		// a's release, then three acquisitions on the same version.
		if n := srv.Count("update") - before; n != 4 {
			t.Errorf("%d updates for one release and takeover, want 4 (release + 3 racing writes)", n)
		}
		if n := srv.Conflicts() - conflicts; n != 2 {
			t.Errorf("%d conflicts, want exactly 2: every racing write but the winner's gets 409", n)
		}
		updates, gets, watches := srv.Count("update"), srv.Count("get"), srv.Count("watch")
		time.Sleep(20 * time.Second)
		synctest.Wait() // the renewal due at +20s is sent
		if n := srv.Count("update") - updates; n != 10 {
			t.Errorf("%d updates in 20s, want only the leader's 10 renewals", n)
		}
		if srv.Count("get") != gets || srv.Count("watch") != watches {
			t.Errorf("followers polled: gets %d->%d, watches %d->%d", gets, srv.Count("get"), watches, srv.Count("watch"))
		}
		for _, stop := range stops {
			stop()
		}
		r.wg.Wait()
	})
}

// TestRenewConflictRereadsOnce: a 409 on renewal makes the leader re-read
// once; the lease is still its own, so it renews and keeps leading.
func TestRenewConflictRereadsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var r runner
		a := newElector(t, srv, "a")
		stop := r.start(t.Context(), "a", a, untilDone)
		synctest.Wait()
		var once sync.Once
		srv.Fail("update", func(name string) error {
			var err error
			once.Do(func() {
				err = apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, name, errors.New("the object has been modified"))
			})
			return err
		})
		gets := srv.Count("get")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := srv.Count("get") - gets; n != 1 {
			t.Errorf("%d re-reads after one conflict, want 1", n)
		}
		if !a.IsLeader() {
			t.Fatal("a lost leadership over a conflict on its own lease")
		}
		stop()
		r.wg.Wait()
	})
}
