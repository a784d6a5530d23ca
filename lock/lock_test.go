package lock_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lock"
)

// Unit tests run in a synctest bubble against the in-memory Leases API: time
// is virtual and only moves when every goroutine is blocked, so "now" is
// exact, a 5-minute hold costs no real time, and the assertions on durations
// below are assertions on the algorithm, not on the machine's speed.

const ns = "default"

// intervals records holding intervals (virtual time in unit tests, wall-clock
// time in integration tests) and checks them: no two intervals on the same
// Lease overlap, at most limit intervals overlap in all, and the tokens of
// each Lease strictly increase in acquisition order.
type intervals struct {
	mu  sync.Mutex
	log []interval
}

type interval struct {
	id         string
	lease      string
	token      lease.Token
	start, end time.Time
}

// begin records that id holds h from now; call it right after Lock returns.
func (iv *intervals) begin(id string, h *lock.Held) int {
	now := time.Now()
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.log = append(iv.log, interval{id: id, lease: h.Lease(), token: h.Token(), start: now})
	return len(iv.log) - 1
}

// end closes interval i; call it right before Release.
func (iv *intervals) end(i int) {
	now := time.Now()
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.log[i].end = now
}

// check reports violations and returns the largest number of intervals that
// were open at once. Open intervals count as open until now.
func (iv *intervals) check(t *testing.T, limit int) (maxOpen int) {
	t.Helper()
	iv.mu.Lock()
	log := slices.Clone(iv.log)
	iv.mu.Unlock()
	problems, maxOpen := violations(log, limit, time.Now())
	for _, p := range problems {
		t.Error(p)
	}
	return maxOpen
}

func violations(log []interval, limit int, now time.Time) (problems []string, maxOpen int) {
	log = slices.Clone(log)
	for i := range log {
		if log[i].end.IsZero() {
			log[i].end = now
		}
	}
	byLease := map[string][]interval{}
	for _, in := range log {
		byLease[in.lease] = append(byLease[in.lease], in)
	}
	for l, ins := range byLease {
		slices.SortFunc(ins, func(a, b interval) int { return a.start.Compare(b.start) })
		for i := 1; i < len(ins); i++ {
			a, b := ins[i-1], ins[i]
			if b.start.Before(a.end) {
				problems = append(problems, fmt.Sprintf("%s: %s held [%v, %v] and %s held [%v, %v]: overlap", l, a.id, a.start, a.end, b.id, b.start, b.end))
			}
			if b.token <= a.token {
				problems = append(problems, fmt.Sprintf("%s: token of %s (%v) is not greater than the token of the earlier %s (%v)", l, b.id, b.token, a.id, a.token))
			}
		}
	}
	// Sweep over all intervals; at equal times an end comes before a start
	// (a release and the take-over it enables can share a virtual instant).
	type event struct {
		at    time.Time
		delta int
	}
	var evs []event
	for _, in := range log {
		evs = append(evs, event{in.start, +1}, event{in.end, -1})
	}
	slices.SortFunc(evs, func(a, b event) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	open := 0
	for _, e := range evs {
		open += e.delta
		maxOpen = max(maxOpen, open)
	}
	if maxOpen > limit {
		problems = append(problems, fmt.Sprintf("%d holders at once, want at most %d", maxOpen, limit))
	}
	return problems, maxOpen
}

// The checker itself must catch what it is there to catch.
func TestIntervalChecker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	in := func(id, l string, tok lease.Token, from, to int) interval {
		return interval{id: id, lease: l, token: tok, start: at(from), end: at(to)}
	}
	for _, tc := range []struct {
		name    string
		log     []interval
		limit   int
		want    []string
		maxOpen int
	}{
		{"back to back", []interval{in("a", "x", 1, 0, 1), in("b", "x", 2, 1, 2), in("c", "x", 3, 2, 3)}, 1, nil, 1},
		{"overlap", []interval{in("a", "x", 1, 0, 2), in("b", "x", 2, 1, 3)}, 1, []string{"overlap", "2 holders at once"}, 2},
		{"token backwards", []interval{in("a", "x", 5, 0, 1), in("b", "x", 4, 1, 2)}, 1, []string{"token of b (4)"}, 1},
		{"still open", []interval{in("a", "x", 1, 0, 0), in("b", "x", 2, 1, 2)}, 1, []string{"overlap", "2 holders at once"}, 2},
		{"permits", []interval{in("a", "x-0", 9, 0, 3), in("b", "x-1", 1, 0, 3), in("c", "x-2", 5, 1, 2), in("d", "x-2", 6, 2, 3)}, 3, nil, 3},
		{"too many permits", []interval{in("a", "x-0", 1, 0, 3), in("b", "x-1", 1, 0, 3), in("c", "x-2", 1, 1, 2)}, 2, []string{"3 holders at once"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := tc.log
			if tc.name == "still open" {
				log[0].end = time.Time{}
			}
			problems, maxOpen := violations(log, tc.limit, at(10))
			if maxOpen != tc.maxOpen {
				t.Errorf("maxOpen = %d, want %d", maxOpen, tc.maxOpen)
			}
			if len(problems) != len(tc.want) {
				t.Fatalf("problems = %q, want %d matching %q", problems, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(problems[i], w) {
					t.Errorf("problem %q does not mention %q", problems[i], w)
				}
			}
		})
	}
}

func (iv *intervals) len() int {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	return len(iv.log)
}

func config(srv coordinationv1client.LeasesGetter, name, id string, mod ...func(*lock.Config)) lock.Config {
	cfg := lock.Config{Leases: srv, Namespace: ns, Name: name, Identity: id}
	for _, m := range mod {
		m(&cfg)
	}
	return cfg
}

func newMutex(t *testing.T, srv coordinationv1client.LeasesGetter, name, id string, mod ...func(*lock.Config)) *lock.Mutex {
	t.Helper()
	m, err := lock.NewMutex(config(srv, name, id, mod...))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mustLock locks m; the lock is released in t.Cleanup unless the test
// released it (Release is idempotent), so that a failing test inside a
// synctest bubble leaves no goroutine behind.
func mustLock(t *testing.T, m *lock.Mutex) *lock.Held {
	t.Helper()
	h, err := m.Lock(t.Context())
	if err != nil {
		t.Fatalf("%s: Lock: %v", m.Identity(), err)
	}
	t.Cleanup(func() { _ = h.Release(context.Background()) })
	return h
}

func mustRelease(t *testing.T, h *lock.Held) {
	t.Helper()
	if err := h.Release(context.WithoutCancel(t.Context())); err != nil {
		t.Fatalf("Release %s: %v", h.Lease(), err)
	}
}

// result is what a Lock running in the background returned, and when.
type result struct {
	held *lock.Held
	err  error
	at   time.Time
}

// lockAsync runs m.Lock(ctx) in a goroutine owned by the test: t.Cleanup
// cancels it if it is still waiting, joins it and releases what it got.
func lockAsync(t *testing.T, ctx context.Context, m *lock.Mutex) <-chan result {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan result, 1)
	var held atomic.Pointer[lock.Held]
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if h := held.Load(); h != nil {
			_ = h.Release(context.Background())
		}
	})
	wg.Go(func() {
		h, err := m.Lock(ctx)
		held.Store(h)
		ch <- result{h, err, time.Now()}
	})
	return ch
}

// pending fails the test if the Lock running behind ch has returned.
func pending(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("Lock returned early (at %v): %v, %v", r.at, r.held, r.err)
	default:
	}
}

// leaseObj is a Lease as another client (a crashed process, client-go)
// wrote it.
func leaseObj(name, holder string, seconds, transitions int32, now time.Time) *coordinationv1.Lease {
	rec := lease.Record{Holder: holder, LeaseDuration: time.Duration(seconds) * time.Second, AcquireTime: now, RenewTime: now, Transitions: transitions}
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: rec.ToSpec()}
}

func holderOf(t *testing.T, srv *fakelease.Server, name string) (holder, preferred string) {
	t.Helper()
	l := srv.Lease(ns, name)
	if l == nil {
		t.Fatalf("lease %s/%s does not exist", ns, name)
	}
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if l.Spec.PreferredHolder != nil {
		preferred = *l.Spec.PreferredHolder
	}
	if a := l.Annotations[lease.PreferredHolderAnnotation]; preferred == "" && a != "" {
		preferred = "annotation:" + a
	}
	return holder, preferred
}

func TestLockReleaseTokensAndContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		a := newMutex(t, srv, "basic", "a")
		b := newMutex(t, srv, "basic", "b")
		var tokens []lease.Token

		h := mustLock(t, a)
		if h.Lease() != "default/basic" || h.Permit() != 0 || h.Err() != nil || h.Token().IsZero() {
			t.Fatalf("held %s permit %d err %v token %v", h.Lease(), h.Permit(), h.Err(), h.Token())
		}
		if d := time.Until(h.Deadline()); d != lock.DefaultRenewDeadline {
			t.Errorf("deadline in %v, want RenewDeadline %v", d, lock.DefaultRenewDeadline)
		}
		l := srv.Lease(ns, "basic")
		if *l.Spec.HolderIdentity != "a" || *l.Spec.LeaseDurationSeconds != 15 || *l.Spec.LeaseTransitions != 1 {
			t.Fatalf("lease spec after Lock: %+v", l.Spec)
		}
		ctx := h.Context()
		tokens = append(tokens, h.Token())
		mustRelease(t, h)
		select {
		case <-h.Done():
		default:
			t.Fatal("Done not closed by Release")
		}
		if !errors.Is(context.Cause(ctx), lock.ErrReleased) || !errors.Is(h.Err(), lock.ErrReleased) {
			t.Fatalf("cause %v, Err %v: want lock.ErrReleased", context.Cause(ctx), h.Err())
		}
		l = srv.Lease(ns, "basic")
		if *l.Spec.HolderIdentity != "" || *l.Spec.LeaseDurationSeconds != 1 || *l.Spec.LeaseTransitions != 1 {
			t.Fatalf("not released by convention: %+v", l.Spec)
		}
		updates := srv.Count("update")
		if err := h.Release(t.Context()); err != nil {
			t.Fatalf("second Release: %v", err)
		}
		if srv.Count("update") != updates {
			t.Error("second Release wrote again")
		}

		// The same Mutex again, then another identity: a released lock is taken
		// at once, and every acquisition has a larger token.
		for _, m := range []*lock.Mutex{a, b, a} {
			start := time.Now()
			h := mustLock(t, m)
			if d := time.Since(start); d != 0 {
				t.Errorf("%s waited %v for a released lock", m.Identity(), d)
			}
			tokens = append(tokens, h.Token())
			mustRelease(t, h)
		}
		if !slices.IsSorted(tokens) || len(slices.Compact(slices.Clone(tokens))) != len(tokens) {
			t.Errorf("tokens do not strictly increase: %v", tokens)
		}
	})
}

func TestTryLockWhenHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		a := newMutex(t, srv, "try", "a")
		b := newMutex(t, srv, "try", "b")
		h := mustLock(t, a)
		time.Sleep(3 * time.Second)
		updates := srv.Count("update")

		_, err := b.TryLock(t.Context())
		if !errors.Is(err, lock.ErrLocked) {
			t.Fatalf("TryLock = %v, want lock.ErrLocked", err)
		}
		var locked *lock.LockedError
		if !errors.As(err, &locked) || len(locked.Holders) != 1 {
			t.Fatalf("TryLock = %#v, want a *lock.LockedError with one holder", err)
		}
		got := locked.Holders[0]
		// b's observer read the lease just now: in b's view it expires one
		// lease duration from now unless a renews.
		if got.Lease != "default/try" || got.Identity != "a" || got.PreferredFor != "" || !got.ExpiresAt.Equal(time.Now().Add(lock.DefaultLeaseDuration)) {
			t.Errorf("holder = %+v, want a on default/try expiring at %v", got, time.Now().Add(lock.DefaultLeaseDuration))
		}
		if msg := err.Error(); !strings.Contains(msg, `"a"`) || !strings.Contains(msg, "default/try") {
			t.Errorf("error %q does not name the holder and the lease", msg)
		}
		if n := srv.Count("update") - updates; n != 0 {
			t.Errorf("TryLock on a held lock wrote %d times", n)
		}
		if time.Since(h.Deadline().Add(-lock.DefaultRenewDeadline)) > 2*time.Second {
			t.Error("holder is not renewing")
		}

		mustRelease(t, h)
		h2, err := b.TryLock(t.Context())
		if err != nil {
			t.Fatalf("TryLock of a released lock: %v", err)
		}
		mustRelease(t, h2)
	})
}

func TestWaiterWakesOnReleaseWithoutPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var renewals atomic.Int64
		a := newMutex(t, srv, "wake", "a", func(c *lock.Config) {
			c.Hooks.Renewed = func(time.Duration, error) { renewals.Add(1) }
		})
		b := newMutex(t, srv, "wake", "b")
		h := mustLock(t, a)
		time.Sleep(500 * time.Millisecond) // b starts between two renewals of a
		waiting := lockAsync(t, t.Context(), b)
		synctest.Wait()

		gets, watches, creates, updates := srv.Count("get"), srv.Count("watch"), srv.Count("create"), srv.Count("update")
		lockVersions := len(srv.Versions(ns, "wake"))
		renewed := renewals.Load()
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		pending(t, waiting)
		if d := srv.Count("get") - gets; d != 0 {
			t.Errorf("%d gets while the lock was validly held", d)
		}
		if d := srv.Count("watch") - watches; d != 0 {
			t.Errorf("%d new watches while the lock was validly held", d)
		}
		if d := srv.Count("create") - creates; d != 0 {
			t.Errorf("%d creates while the lock was validly held", d)
		}
		// The only writes: a's renewals (one per RetryPeriod) and the
		// renewals of b's queue entry (one per LeaseDuration/2).
		renews := renewals.Load() - renewed
		lockWrites := int64(len(srv.Versions(ns, "wake")) - lockVersions)
		if lockWrites != renews {
			t.Errorf("%d writes of the lock Lease during the hold, want only a's %d renewals", lockWrites, renews)
		}
		if renews < 148 || renews > 150 {
			t.Errorf("%d renewals in 5 minutes, want 150 (one per 2s)", renews)
		}
		if entry := int64(srv.Count("update")-updates) - lockWrites; entry < 39 || entry > 40 {
			t.Errorf("%d renewals of b's queue entry in 5 minutes, want 40 (one per 7.5s)", entry)
		}

		released := time.Now()
		mustRelease(t, h)
		r := <-waiting
		if r.err != nil {
			t.Fatal(r.err)
		}
		if d := r.at.Sub(released); d != 0 {
			t.Errorf("b took the lock %v after the release, want at once (the watch delivers the release)", d)
		}
		if r.held.Token() <= h.Token() {
			t.Errorf("token %v after %v", r.held.Token(), h.Token())
		}
		if holder, _ := holderOf(t, srv, "wake"); holder != "b" {
			t.Errorf("holder %q, want b", holder)
		}
		mustRelease(t, r.held)
	})
}

func TestCrashedHolderTakenAfterItsLeaseDuration(t *testing.T) {
	for _, seconds := range []int32{15, 40} {
		// 40s: the crashed holder wrote a longer lease than this process's
		// LeaseDuration and ClaimAfter (15s): the record's duration counts.
		t.Run(fmt.Sprintf("%ds", seconds), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fakelease.New()
				srv.Put(leaseObj("crash", "ghost", seconds, 7, time.Now()))
				b := newMutex(t, srv, "crash", "b")
				start := time.Now()
				waiting := lockAsync(t, t.Context(), b)
				expiry := time.Duration(seconds) * time.Second

				time.Sleep(expiry - time.Millisecond)
				synctest.Wait()
				pending(t, waiting)
				if holder, preferred := holderOf(t, srv, "crash"); holder != "ghost" || preferred != "" {
					t.Errorf("before expiry: holder %q preferred %q, want the ghost's record untouched", holder, preferred)
				}
				r := <-waiting
				if r.err != nil {
					t.Fatal(r.err)
				}
				if d := r.at.Sub(start); d != expiry {
					t.Errorf("took over after %v, want exactly the lease duration %v in the waiter's view", d, expiry)
				}
				l := srv.Lease(ns, "crash")
				if *l.Spec.HolderIdentity != "b" || *l.Spec.LeaseTransitions != 8 {
					t.Errorf("after take-over: %+v", l.Spec)
				}
				if n := len(srv.Versions(ns, "crash")); n != 3 {
					t.Errorf("%d versions of the lock Lease, want 3: the ghost's, the queue label, the take-over", n)
				}
				mustRelease(t, r.held)
			})
		})
	}
}

func TestLongHoldRenews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		var ok, failed atomic.Int64
		a := newMutex(t, srv, "long", "a", func(c *lock.Config) {
			c.Hooks.Renewed = func(_ time.Duration, err error) {
				if err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		})
		h := mustLock(t, a)
		time.Sleep(time.Second) // look between renewals
		for range 30 {
			time.Sleep(10 * time.Second)
			if h.Err() != nil || h.Context().Err() != nil {
				t.Fatalf("context ended without a fault: %v", h.Err())
			}
			if d := time.Until(h.Deadline()); d < lock.DefaultRenewDeadline-lock.DefaultRetryPeriod {
				t.Fatalf("deadline only %v away: renewals fell behind", d)
			}
			l := srv.Lease(ns, "long")
			if d := time.Since(l.Spec.RenewTime.Time); d > lock.DefaultRetryPeriod {
				t.Fatalf("renewTime %v old", d)
			}
		}
		if ok.Load() != 150 || failed.Load() != 0 {
			t.Errorf("%d renewals, %d failed in 5 minutes; want 150 (one per 2s), none failed", ok.Load(), failed.Load())
		}
		if tr := *srv.Lease(ns, "long").Spec.LeaseTransitions; tr != 1 {
			t.Errorf("transitions = %d, want 1", tr)
		}
		mustRelease(t, h)
	})
}

func TestLostRenewalsEndContextBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		a := newMutex(t, srv, "partition", "a")
		b := newMutex(t, srv, "partition", "b")
		h := mustLock(t, a)
		waiting := lockAsync(t, t.Context(), b)
		time.Sleep(31 * time.Second) // a renewed at 30s
		lastRenew := h.Deadline().Add(-lock.DefaultRenewDeadline)
		srv.Fail("update", func(string) error { return apierrors.NewServiceUnavailable("partitioned") })

		<-h.Done()
		aEnded := time.Now()
		synctest.Wait() // a renewal sent at the deadline has failed too
		if !errors.Is(h.Err(), lock.ErrDeadline) || !errors.Is(context.Cause(h.Context()), lock.ErrDeadline) {
			t.Fatalf("context ended with %v, want lock.ErrDeadline", h.Err())
		}
		if d := aEnded.Sub(lastRenew); d != lock.DefaultRenewDeadline {
			t.Errorf("context ended %v after the last successful renewal was sent, want RenewDeadline", d)
		}
		// The partition heals only for b (a's term has stopped writing).
		srv.Fail("update", nil)
		r := <-waiting
		if r.err != nil {
			t.Fatal(r.err)
		}
		margin := lock.DefaultLeaseDuration - lock.DefaultRenewDeadline
		if d := r.at.Sub(aEnded); d != margin {
			t.Errorf("b took over %v after a's context ended, want LeaseDuration-RenewDeadline = %v", d, margin)
		}
		// a's Release after the loss writes nothing and succeeds.
		mustRelease(t, h)
		if !errors.Is(h.Err(), lock.ErrDeadline) {
			t.Errorf("cause changed by Release to %v", h.Err())
		}
		if holder, _ := holderOf(t, srv, "partition"); holder != "b" {
			t.Errorf("holder %q after a's late Release, want b", holder)
		}
		mustRelease(t, r.held)
	})
}

func TestLockTimeoutIsAContextAndLeavesTheQueue(t *testing.T) {
	for _, timeout := range []time.Duration{3 * time.Second, 20 * time.Second} {
		// 3s: b gives up before its entry's first renewal; 20s: after
		// two renewals. Either way it leaves nothing behind.
		t.Run(timeout.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fakelease.New()
				a := newMutex(t, srv, "timeout", "a")
				b := newMutex(t, srv, "timeout", "b")
				c := newMutex(t, srv, "timeout", "c")
				h := mustLock(t, a)
				time.Sleep(500 * time.Millisecond)
				lockVersions := len(srv.Versions(ns, "timeout"))
				renewals := int((timeout + 500*time.Millisecond) / (2 * time.Second))

				ctx, cancel := context.WithTimeout(t.Context(), timeout)
				defer cancel()
				waiting := lockAsync(t, ctx, b)
				synctest.Wait()
				// a deleted its entry when it took the lock; b's is the
				// only one.
				if n := len(queueEntries(srv, "timeout")); n != 1 {
					t.Fatalf("%d queue entries while b waits, want 1 (b's)", n)
				}
				r := <-waiting
				if !errors.Is(r.err, context.DeadlineExceeded) || r.held != nil {
					t.Fatalf("Lock = %v, %v; want context.DeadlineExceeded", r.held, r.err)
				}
				synctest.Wait()
				// b's entry stays, marked left (no holder), until the next
				// hand-over deletes it: a grant on its way to it is then
				// taken at once by the waiter behind.
				for _, name := range queueEntries(srv, "timeout") {
					if l := srv.Lease(ns, name); l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
						t.Fatalf("queue entry %s still names %q after b gave up, want it marked left", name, *l.Spec.HolderIdentity)
					}
				}
				if d := len(srv.Versions(ns, "timeout")) - lockVersions; d < renewals-1 || d > renewals {
					t.Errorf("%d writes of the lock Lease while b waited, want only a's %d renewals", d, renewals)
				}
				if h.Err() != nil {
					t.Fatalf("a lost the lock: %v", h.Err())
				}

				// Nothing of b is left: the next waiter is served at once on
				// the release.
				time.Sleep(time.Second)
				next := lockAsync(t, t.Context(), c)
				synctest.Wait()
				released := time.Now()
				mustRelease(t, h)
				r = <-next
				if r.err != nil {
					t.Fatal(r.err)
				}
				if d := r.at.Sub(released); d != 0 {
					t.Errorf("c waited %v after the release", d)
				}
				mustRelease(t, r.held)
				synctest.Wait()
				if n := queueEntries(srv, "timeout"); len(n) != 0 {
					t.Errorf("queue entries %v after the hand-overs, want none", n)
				}
			})
		})
	}
}

// queueEntries returns the names of the lock's queue entries on srv.
func queueEntries(srv *fakelease.Server, lockName string) []string {
	var out []string
	for _, l := range srv.List(ns) {
		if l.Labels["leasehold.io/queue-entry"] != "" && strings.HasPrefix(l.Name, lockName+"-q-") {
			out = append(out, l.Name)
		}
	}
	return out
}

func TestSemaphoreNeverExceedsPermits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		const permits, contenders, rounds = 3, 10, 4
		var iv intervals
		var wg sync.WaitGroup
		for i := range contenders {
			s, err := lock.NewSemaphore(config(srv, "sem", fmt.Sprintf("c%d", i)), permits)
			if err != nil {
				t.Fatal(err)
			}
			if s.Permits() != permits {
				t.Fatalf("Permits() = %d", s.Permits())
			}
			hold := time.Second + time.Duration(i%4)*300*time.Millisecond
			wg.Go(func() {
				for range rounds {
					h, err := s.Acquire(t.Context())
					if err != nil {
						t.Error(err)
						return
					}
					if want := fmt.Sprintf("default/sem-%d", h.Permit()); h.Lease() != want || h.Permit() < 0 || h.Permit() >= permits {
						t.Errorf("permit %d on %s", h.Permit(), h.Lease())
					}
					k := iv.begin(s.Identity(), h)
					time.Sleep(hold)
					iv.end(k)
					if err := h.Release(t.Context()); err != nil {
						t.Error(err)
					}
				}
			})
		}
		// While all permits are taken, TryAcquire lists every holder.
		time.Sleep(500 * time.Millisecond)
		s, err := lock.NewSemaphore(config(srv, "sem", "try"), permits)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.TryAcquire(t.Context())
		var locked *lock.LockedError
		if !errors.As(err, &locked) || !errors.Is(err, lock.ErrLocked) || len(locked.Holders) != permits {
			t.Errorf("TryAcquire with all permits taken = %v, want a LockedError listing %d holders", err, permits)
		}
		wg.Wait()

		if n := iv.len(); n != contenders*rounds {
			t.Fatalf("%d acquisitions, want %d", n, contenders*rounds)
		}
		if got := iv.check(t, permits); got != permits {
			t.Errorf("at most %d holders at once; with %d contenders all %d permits should be in use", got, contenders, permits)
		}
		for i := range permits + 1 {
			name := fmt.Sprintf("sem-%d", i)
			if exists := srv.Lease(ns, name) != nil; exists != (i < permits) {
				t.Errorf("lease %s exists: %v", name, exists)
			}
		}
		// The Lease named like the semaphore only records its kind, so
		// that a Mutex of the same name is refused; nobody holds it.
		if l := srv.Lease(ns, "sem"); l == nil || *l.Spec.HolderIdentity != "" || l.Annotations[lease.KindAnnotation] != fmt.Sprintf("semaphore/%d", permits) {
			t.Errorf("lease sem = %+v, want it released and recording the semaphore", l)
		}
	})
}

func TestFairnessUnderSteadyContention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		const contenders, hold, duration = 5, time.Second, 10 * time.Minute
		var iv intervals
		var mu sync.Mutex
		waits := map[string][]time.Duration{}
		ctx, cancel := context.WithTimeout(t.Context(), duration)
		defer cancel()
		var wg sync.WaitGroup
		for i := range contenders {
			m := newMutex(t, srv, "fair", fmt.Sprintf("c%d", i))
			wg.Go(func() {
				for ctx.Err() == nil {
					start := time.Now()
					h, err := m.Lock(ctx)
					if err != nil {
						if ctx.Err() == nil {
							t.Error(err)
						}
						return
					}
					mu.Lock()
					waits[m.Identity()] = append(waits[m.Identity()], time.Since(start))
					mu.Unlock()
					k := iv.begin(m.Identity(), h)
					time.Sleep(hold)
					iv.end(k)
					if err := h.Release(context.WithoutCancel(ctx)); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		iv.check(t, 1)

		// Bound: waiters are served in the order they queued. A contender
		// that releases queues again behind the other 4, which are all
		// waiting (holds take virtual time, hand-overs none), so it waits
		// exactly their 4 holds. The former claim rule allowed 21s here, and
		// a free-for-all without claims 40s and more.
		bound := (contenders - 1) * hold
		var report []string
		for i := range contenders {
			id := fmt.Sprintf("c%d", i)
			ws := waits[id]
			if len(ws) == 0 {
				t.Errorf("%s never acquired the lock in %v", id, duration)
				continue
			}
			worst := slices.Max(ws)
			if worst > bound {
				t.Errorf("%s waited %v, longer than the bound %v", id, worst, bound)
			}
			report = append(report, fmt.Sprintf("%s: %d turns, longest wait %v", id, len(ws), worst))
		}
		t.Log(strings.Join(report, "; "))
	})
}

func TestForbiddenNamesTheVerb(t *testing.T) {
	forbidden := func(verb string) func(string) error {
		return func(name string) error {
			return apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, name,
				fmt.Errorf("User \"system:serviceaccount:default:app\" cannot %s resource \"leases\"", verb))
		}
	}
	for _, tc := range []struct {
		verb  string
		setup func(*fakelease.Server)
	}{
		// A Lease held by another client (no queue label): the permits'
		// watch, by label, misses it; one read. (A released one is taken
		// as its first list read it.)
		{"get", func(srv *fakelease.Server) { srv.Put(leaseObj("rbac", "other", 15, 2, time.Now())) }},
		{"create", nil}, // the lease does not exist yet
		{"update", func(srv *fakelease.Server) { srv.Put(leaseObj("rbac", "", 1, 2, time.Now())) }},
		// A held lease: the first read succeeds, the watch is then refused;
		// waiting without the watch would never see the release.
		{"watch", func(srv *fakelease.Server) { srv.Put(leaseObj("rbac", "other", 15, 2, time.Now())) }},
	} {
		t.Run(tc.verb, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fakelease.New()
				if tc.setup != nil {
					tc.setup(srv)
				}
				srv.Fail(tc.verb, forbidden(tc.verb))
				m := newMutex(t, srv, "rbac", "a")
				start := time.Now()
				h, err := m.Lock(t.Context())
				if err == nil {
					mustRelease(t, h)
					t.Fatal("Lock succeeded")
				}
				if !errors.Is(err, lease.ErrForbidden) {
					t.Fatalf("Lock = %v, want lease.ErrForbidden", err)
				}
				var apiErr *lease.APIError
				if !errors.As(err, &apiErr) || apiErr.Verb != tc.verb {
					t.Errorf("Lock = %v, want an *lease.APIError for verb %q", err, tc.verb)
				}
				if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("verb %q", tc.verb)) || !strings.Contains(msg, `"leases"`) {
					t.Errorf("error %q does not name verb %q on resource leases", msg, tc.verb)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("Lock returned after %v, want at once (a permanent error)", d)
				}
			})
		})
	}
}

func TestConfigValidationNamesEveryField(t *testing.T) {
	srv := fakelease.New()
	name251 := strings.Repeat("n", 251)
	name226 := strings.Repeat("n", 226)
	for _, tc := range []struct {
		name    string
		cfg     lock.Config
		sem     bool // NewSemaphore(cfg, permits), else NewMutex(cfg)
		permits int
		want    []string
	}{
		{"empty", lock.Config{}, false, 0, []string{"Leases is required", "Namespace is required", "Name is required"}},
		{"every field bad", lock.Config{
			Namespace: "Bad_NS", Name: "Bad Name", LeaseDuration: 1500 * time.Millisecond,
			RenewDeadline: 5 * time.Second, RetryPeriod: -time.Second,
		}, false, 0, []string{"Leases is required", `Namespace "Bad_NS"`, `Name "Bad Name"`, "LeaseDuration 1.5s", "RenewDeadline 5s", "RetryPeriod -1s"}},
		{"renew deadline not below lease duration", config(srv, "x", "a", func(c *lock.Config) {
			c.LeaseDuration, c.RenewDeadline = 10*time.Second, 10*time.Second
		}), false, 0, []string{"RenewDeadline 10s must be less than LeaseDuration 10s"}},
		{"zero permits", config(srv, "x", "a"), true, 0, []string{"permits 0"}},
		{"negative permits and bad namespace", config(srv, "x", "a", func(c *lock.Config) { c.Namespace = "-" }), true, -3, []string{"permits -3", `Namespace "-"`}},
		{"name too long for the queue entries", config(srv, name251, "a"), false, 0, []string{`Name "` + name251 + `"`, "more than 226", "-q-<24 hex digits>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.cfg
			var err error
			if tc.sem {
				_, err = lock.NewSemaphore(tc.cfg, tc.permits)
			} else {
				_, err = lock.NewMutex(tc.cfg)
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !reflect.DeepEqual(before, tc.cfg) {
				t.Error("New* modified the caller's Config")
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		cfg := config(srv, name226, "")
		m, err := lock.NewMutex(cfg)
		if err != nil {
			t.Fatalf("a 226-character name is a valid Mutex: %v", err)
		}
		if m.Identity() == "" || cfg.Identity != "" {
			t.Errorf("default identity %q; caller's Identity %q must stay empty", m.Identity(), cfg.Identity)
		}
		if _, err := lock.NewSemaphore(cfg, 10); err != nil {
			t.Fatalf("%s-9 is a valid Lease name: %v", name226, err)
		}
		if _, err := lock.NewMutex(config(srv, "x", "a", func(c *lock.Config) { c.ClaimAfter = -1 })); err != nil {
			t.Fatalf("negative ClaimAfter disables claims: %v", err)
		}
	})
}

func TestRetriedLockTakesCrashedHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		srv.Put(leaseObj("retry", "ghost", 15, 1, time.Now()))
		b := newMutex(t, srv, "retry", "b")
		start := time.Now()
		for time.Since(start) < 2*time.Minute {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			h, err := b.Lock(ctx)
			cancel()
			if err == nil {
				if d := time.Since(start); d > 15*time.Second {
					t.Errorf("took the lock after %v; this process has seen the record unchanged for 15s since %v", d, start)
				}
				mustRelease(t, h)
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
		}
		t.Fatal("retrying Lock with a 10s timeout never took a lock whose holder crashed 2 minutes ago (leaseDurationSeconds 15)")
	})
}
