package lock_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lock"
)

var handOvers = flag.Int("handovers", 300, "TestNoOvertakes: hand-overs to check")

// queueInOrder starts Lock on each mutex in turn, each after the previous
// one is in the queue, and returns their results in call order.
func queueInOrder(t *testing.T, ctx context.Context, ms ...*lock.Mutex) []<-chan result {
	t.Helper()
	var out []<-chan result
	for _, m := range ms {
		out = append(out, lockAsync(t, ctx, m))
		synctest.Wait()
	}
	return out
}

// holderAndQueue locks name as "holder" and queues n more Mutexes behind
// it, w00 … in order; it returns the holder's Held and their Lock results.
func holderAndQueue(t *testing.T, srv *fakelease.Server, name string, n int) (*lock.Held, []<-chan result) {
	t.Helper()
	h := mustLock(t, newMutex(t, srv, name, "holder"))
	var ms []*lock.Mutex
	for i := range n {
		ms = append(ms, newMutex(t, srv, name, fmt.Sprintf("w%02d", i)))
	}
	return h, queueInOrder(t, t.Context(), ms...)
}

// served waits for the Lock behind ch and returns what it got.
func served(t *testing.T, ch <-chan result) *lock.Held {
	t.Helper()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.held
}

// Waiters are served in queue order, one write of the lock Lease per
// hand-over: each holder here releases within a RetryPeriod of joining,
// before its adopting write is due, so the grant is the only write. A
// holder that keeps the lock longer adopts it: one write more.
func TestWaitersServedInQueueOrderWithOneWriteEach(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		const n = 8
		h := mustLock(t, newMutex(t, srv, "fifo", "holder"))
		var ms []*lock.Mutex
		for i := range n {
			ms = append(ms, newMutex(t, srv, "fifo", fmt.Sprintf("w%d", i)))
		}
		waits := queueInOrder(t, t.Context(), ms...)
		for i, w := range waits {
			versions, conflicts := len(srv.Versions(ns, "fifo")), srv.Conflicts()
			mustRelease(t, h)
			synctest.Wait()
			for j := i + 1; j < n; j++ {
				pending(t, waits[j])
			}
			r := <-w
			if r.err != nil {
				t.Fatal(r.err)
			}
			if got := len(srv.Versions(ns, "fifo")) - versions; got != 1 {
				t.Errorf("hand-over to w%d: %d writes of the lock Lease, want 1 (the grant)", i, got)
			}
			if c := srv.Conflicts() - conflicts; c != 0 {
				t.Errorf("hand-over to w%d: %d conflicts", i, c)
			}
			h = r.held
		}
		versions := len(srv.Versions(ns, "fifo"))
		time.Sleep(2 * time.Second) // RetryPeriod: the adoption is due
		synctest.Wait()
		if got := len(srv.Versions(ns, "fifo")) - versions; got != 1 {
			t.Errorf("%d writes of the lock Lease while w%d held it for a RetryPeriod, want 1 (its adoption)", got, n-1)
		}
		if a := srv.Lease(ns, "fifo").Annotations["leasehold.io/queue-entry"]; !strings.HasPrefix(a, "held/") {
			t.Errorf("lock annotation %q after a RetryPeriod, want the adoption's held/", a)
		}
		mustRelease(t, h)
	})
}

// A grant counts the grantee's deadline from its entry's last write, here
// five seconds before the grant (RenewDeadline 10s, RetryPeriod 2s). The
// adopting write still waits a RetryPeriod (half the five seconds left, at
// most a RetryPeriod) after the grant instead of going out at once: a
// holder that releases within that time costs the hand-over one write.
func TestGrantOnAnOldEntryWriteAdoptsNoSoonerThanARetryPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		h := mustLock(t, newMutex(t, srv, "late-adopt", "holder"))
		waits := queueInOrder(t, t.Context(), newMutex(t, srv, "late-adopt", "w"))
		time.Sleep(5 * time.Second) // the entry is not renewed (LeaseDuration/2 is 7.5s)
		versions := len(srv.Versions(ns, "late-adopt"))
		mustRelease(t, h)
		r := <-waits[0]
		if r.err != nil {
			t.Fatal(r.err)
		}
		time.Sleep(1900 * time.Millisecond)
		synctest.Wait()
		if got := len(srv.Versions(ns, "late-adopt")) - versions; got != 1 {
			t.Errorf("%d writes of the lock Lease within 1.9s of a grant on a 5s-old entry write, want 1 (the grant)", got)
		}
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if got := len(srv.Versions(ns, "late-adopt")) - versions; got != 2 {
			t.Errorf("%d writes of the lock Lease 2.1s after the grant, want 2 (the grant and the adoption)", got)
		}
		if err := r.held.Context().Err(); err != nil {
			t.Errorf("the adopted term ended: %v", context.Cause(r.held.Context()))
		}
		mustRelease(t, r.held)
	})
}

// Waiting on a semaphore costs a fixed number of watches, whatever its
// number of permits: the read of the queue on joining, which then goes on
// as the queue's watch near the head, and the permits' watch.
func TestSemaphoreWaitCostsOneWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		const permits = 64
		var held []*lock.Held
		for i := range permits {
			s, err := lock.NewSemaphore(config(srv, "many", fmt.Sprintf("h%d", i)), permits)
			if err != nil {
				t.Fatal(err)
			}
			h, err := s.Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, h)
		}
		synctest.Wait()
		s, err := lock.NewSemaphore(config(srv, "many", "waiter"), permits)
		if err != nil {
			t.Fatal(err)
		}
		watches := srv.Count("watch")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan *lock.Held, 1)
		go func() {
			h, err := s.Acquire(ctx)
			if err != nil {
				t.Error(err)
			}
			done <- h
		}()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if d := srv.Count("watch") - watches; d != 2 {
			t.Errorf("waiting on a semaphore of %d permits opened %d watches, want 2", permits, d)
		}
		mustRelease(t, held[37])
		h := <-done
		if h == nil {
			t.Fatal("no permit")
		}
		if h.Permit() != 37 {
			t.Errorf("got permit %d, want 37, the one released", h.Permit())
		}
		held[37] = h
		for _, h := range held {
			mustRelease(t, h)
		}
	})
}

// entryObj is a queue entry as a waiter that crashed right after queuing
// left it: never renewed.
func entryObj(lockName, suffix, holder string, now time.Time) *coordinationv1.Lease {
	rec := lease.Record{Holder: holder, LeaseDuration: 15 * time.Second, AcquireTime: now, RenewTime: now}
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: lockName + "-q-" + suffix,
		Labels: map[string]string{"leasehold.io/queue-entry": lockName},
	}, Spec: rec.ToSpec()}
}

func TestCrashedWaiterSkipped(t *testing.T) {
	t.Run("expired before the release: skipped at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fakelease.New()
			h := mustLock(t, newMutex(t, srv, "skip", "a"))
			srv.Put(entryObj("skip", "00000000", "ghost", time.Now()))
			w := queueInOrder(t, t.Context(), newMutex(t, srv, "skip", "b"))[0]
			time.Sleep(20 * time.Second) // the ghost's entry expires (15s)
			released := time.Now()
			mustRelease(t, h)
			r := <-w
			if r.err != nil {
				t.Fatal(r.err)
			}
			if d := r.at.Sub(released); d != 0 {
				t.Errorf("b waited %v after the release; the ghost's expired entry must be skipped", d)
			}
			synctest.Wait()
			if srv.Lease(ns, "skip-q-00000000") != nil {
				t.Error("the ghost's expired entry was not removed")
			}
			mustRelease(t, r.held)
		})
	})
	t.Run("alive at the release: its grant expires, then the next takes over", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fakelease.New()
			h := mustLock(t, newMutex(t, srv, "skip", "a"))
			srv.Put(entryObj("skip", "00000000", "ghost", time.Now()))
			w := queueInOrder(t, t.Context(), newMutex(t, srv, "skip", "b"))[0]
			time.Sleep(5 * time.Second)
			mustRelease(t, h)
			granted := time.Now()
			if holder, _ := holderOf(t, srv, "skip"); holder != "ghost" {
				t.Fatalf("holder %q after the release, want the ghost, first in the queue", holder)
			}
			r := <-w
			if r.err != nil {
				t.Fatal(r.err)
			}
			if d := r.at.Sub(granted); d != lock.DefaultLeaseDuration {
				t.Errorf("b took over %v after the unadopted grant, want its LeaseDuration %v", d, lock.DefaultLeaseDuration)
			}
			mustRelease(t, r.held)
		})
	})
}

func TestGivingUpAtTheHeadBlocksNobody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		h := mustLock(t, newMutex(t, srv, "giveup", "a"))
		ctx, cancel := context.WithCancel(t.Context())
		b := queueInOrder(t, ctx, newMutex(t, srv, "giveup", "b"))[0]
		c := queueInOrder(t, t.Context(), newMutex(t, srv, "giveup", "c"))[0]
		time.Sleep(3 * time.Second)
		cancel() // b, first in line, gives up
		if r := <-b; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("b: %v, want context.Canceled", r.err)
		}
		synctest.Wait()
		released := time.Now()
		mustRelease(t, h)
		r := <-c
		if r.err != nil || r.at.Sub(released) != 0 {
			t.Fatalf("c: %v after %v, want the lock at once", r.err, r.at.Sub(released))
		}
		mustRelease(t, r.held)
	})
}

// requeues records what Hooks.Requeued receives.
type requeues struct {
	mu   sync.Mutex
	errs []error
}

// record sets Hooks.Requeued to append to r.
func (r *requeues) record(c *lock.Config) {
	c.Hooks.Requeued = func(err error) {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
	}
}

func (r *requeues) get() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

func TestHandDeletedEntryQueuesAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		h := mustLock(t, newMutex(t, srv, "edit", "a"))
		var requeued requeues
		b := newMutex(t, srv, "edit", "b", requeued.record)
		w := queueInOrder(t, t.Context(), b)[0]
		var entry string
		for _, l := range srv.List(ns) {
			if l.Labels["leasehold.io/queue-entry"] != "" && *l.Spec.HolderIdentity == "b" {
				entry = l.Name
			}
		}
		if entry == "" {
			t.Fatal("b has no queue entry")
		}
		srv.Delete(ns, entry)
		time.Sleep(8 * time.Second) // b's next entry renewal (every 7.5s) finds it gone
		if lost := requeued.get(); len(lost) != 1 || !errors.Is(lost[0], lock.ErrQueueEntryLost) {
			t.Errorf("Requeued got %v, want one ErrQueueEntryLost", lost)
		}
		mustRelease(t, h)
		r := <-w
		if r.err != nil {
			t.Fatal(r.err)
		}
		mustRelease(t, r.held)
	})
}

// No overtakes over many hand-overs: 20 waiters lock, hold 1s and lock
// again; each acquisition goes to the waiter that queued first.
func TestNoOvertakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		const waiters = 20
		target := *handOvers
		var (
			mu        sync.Mutex
			queuedAt  = map[int]time.Time{}
			count     int
			overtakes int
		)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var wg sync.WaitGroup
		for i := range waiters {
			m := newMutex(t, srv, "overtake", fmt.Sprintf("w%d", i))
			mu.Lock()
			queuedAt[i] = time.Now()
			mu.Unlock()
			wg.Go(func() {
				for {
					h, err := m.Lock(ctx)
					if err != nil {
						return
					}
					mu.Lock()
					me := queuedAt[i]
					delete(queuedAt, i)
					for _, at := range queuedAt {
						if at.Before(me) {
							overtakes++
							break
						}
					}
					count++
					done := count >= target
					mu.Unlock()
					time.Sleep(time.Second)
					if err := h.Release(context.WithoutCancel(ctx)); err != nil {
						t.Error(err)
					}
					if done {
						cancel()
						return
					}
					mu.Lock()
					queuedAt[i] = time.Now()
					mu.Unlock()
				}
			})
			time.Sleep(time.Millisecond) // queue in index order
		}
		wg.Wait()
		if overtakes != 0 {
			t.Errorf("%d overtakes in %d hand-overs", overtakes, count)
		}
		t.Logf("%d hand-overs among %d waiters, %d overtakes", count, waiters, overtakes)
	})
}

// A served holder's entry that its owner has not removed yet (it sits at or
// below the queue's cursor) is never granted the lock again.
func TestServedEntryIsNotGrantedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		h := mustLock(t, newMutex(t, srv, "served", "a")) // a free lock: taken with no entry
		c := queueInOrder(t, t.Context(), newMutex(t, srv, "served", "c"))[0]
		mustRelease(t, h)
		h = served(t, c) // the cursor is now c's entry
		old := entryObj("served", "00000000", "x", time.Now())
		old.Annotations = map[string]string{"leasehold.io/queued-at": "1"} // queued long ago: served
		srv.Put(old)
		w := queueInOrder(t, t.Context(), newMutex(t, srv, "served", "b"))[0]
		released := time.Now()
		mustRelease(t, h)
		r := <-w
		if r.err != nil {
			t.Fatal(r.err)
		}
		if d := r.at.Sub(released); d != 0 {
			t.Errorf("b got the lock %v after the release, want at once (x's entry is served already)", d)
		}
		mustRelease(t, r.held)
	})
}

// A hand-over wakes a fixed number of watches, whatever the queue's length:
// waiters far back watch only the entries just ahead of them, so neither
// the grant, the adoption nor the served waiter's leaving reaches them.
func TestHandOverWakesFewWaiters(t *testing.T) {
	for _, n := range []int{10, 40} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fakelease.New()
				h := mustLock(t, newMutex(t, srv, "wake", "holder"))
				var ms []*lock.Mutex
				for i := range n {
					ms = append(ms, newMutex(t, srv, "wake", fmt.Sprintf("w%d", i)))
				}
				waits := queueInOrder(t, t.Context(), ms...)
				for i, w := range waits[:5] {
					before := srv.Delivered()
					mustRelease(t, h)
					r := <-w
					if r.err != nil {
						t.Fatal(r.err)
					}
					synctest.Wait()
					// The grant and the adoption reach the holder and the
					// two waiters near the head (3 watches of the permit,
					// 2 writes), the served entry's deletion their queue
					// views and the one waiter that followed it: about a
					// dozen, never one per waiter.
					if d := srv.Delivered() - before; d > 16 {
						t.Errorf("hand-over %d with %d waiters delivered %d watch events, want at most 16", i, n, d)
					}
					h = r.held
				}
				mustRelease(t, h)
			})
		})
	}
}

// A lock released with nobody granted (by a client-go holder, say) is taken
// by the head of the queue, and the release wakes only the waiters near
// the head: the others never see the lock's Lease, so a free lock sets off
// no rush of the whole queue.
func TestFreeLockWakesOnlyTheHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		srv.Put(leaseObj("free", "ghost", 15, 3, time.Now()))
		const n = 30
		var ms []*lock.Mutex
		for i := range n {
			ms = append(ms, newMutex(t, srv, "free", fmt.Sprintf("w%d", i)))
		}
		waits := queueInOrder(t, t.Context(), ms...)
		time.Sleep(time.Second)
		synctest.Wait()
		before, watches := srv.Delivered(), srv.Count("watch")
		l := srv.Lease(ns, "free")
		released := lease.Record{LeaseDuration: time.Second, AcquireTime: time.Now(), RenewTime: time.Now(), Transitions: 3}
		l.Spec = released.ToSpec()
		srv.Put(l)
		r := <-waits[0]
		if r.err != nil {
			t.Fatal(r.err)
		}
		synctest.Wait()
		for _, w := range waits[1:] {
			pending(t, w)
		}
		if d := srv.Delivered() - before; d > 12 {
			t.Errorf("the release and the take-over delivered %d watch events to %d waiters, want at most 12", d, n)
		}
		if d := srv.Count("watch") - watches; d > 4 {
			t.Errorf("the release and the take-over opened %d watches, want at most 4", d)
		}
		mustRelease(t, r.held)
	})
}

// A Mutex that locks again right after releasing does not read the whole
// queue: it replays the changes since its last call's view of it.
func TestLockingAgainReplaysTheQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		m := newMutex(t, srv, "again", "m")
		h := mustLock(t, m)
		const n = 20
		var ms []*lock.Mutex
		for i := range n {
			ms = append(ms, newMutex(t, srv, "again", fmt.Sprintf("w%d", i)))
		}
		waits := queueInOrder(t, t.Context(), ms...)
		time.Sleep(time.Second)
		mustRelease(t, h)
		r := <-waits[0]
		if r.err != nil {
			t.Fatal(r.err)
		}
		synctest.Wait()
		read := srv.Count("initial-event")
		again := lockAsync(t, t.Context(), m)
		synctest.Wait()
		if d := srv.Count("initial-event") - read; d != 0 {
			t.Errorf("locking again read %d entries, want 0 (the queue replayed from the last view)", d)
		}
		// It queued at the back: served after the 20 waiters.
		mustRelease(t, r.held)
		for _, w := range waits[1:] {
			r := <-w
			if r.err != nil {
				t.Fatal(r.err)
			}
			pending(t, again)
			mustRelease(t, r.held)
		}
		if r := <-again; r.err != nil {
			t.Fatal(r.err)
		} else {
			mustRelease(t, r.held)
		}
	})
}

// failAdoptions lets the next update of the lock Lease name through (the
// holder's grant) and refuses every later one (the grantee's adoption and
// its retries).
func failAdoptions(srv *fakelease.Server, name string) {
	var mu sync.Mutex
	passed := false
	srv.Fail("update", func(n string) error {
		mu.Lock()
		defer mu.Unlock()
		if n != name {
			return nil
		}
		if !passed {
			passed = true
			return nil
		}
		return apierrors.NewServiceUnavailable("adoption refused by the test")
	})
}

// A grant starts the grantee's term at once, before its adopting write:
// the term's deadline counts from the send of the entry version the grant
// names (the waiter's join here), so it ends RenewDeadline after the join
// if no adoption gets through.
func TestGrantStartsTheTermAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		h := mustLock(t, newMutex(t, srv, "early", "a"))
		joined := time.Now()
		w := queueInOrder(t, t.Context(), newMutex(t, srv, "early", "b"))[0]
		time.Sleep(time.Second) // before b's first entry renewal (3.75s–7.5s)
		failAdoptions(srv, "early")
		released := time.Now()
		mustRelease(t, h)
		var r result
		select {
		case r = <-w:
		case <-time.After(5 * time.Second):
			t.Fatal("b's Lock did not return on the grant while its adoption fails")
		}
		if r.err != nil || r.at != released {
			t.Fatalf("b: %v at %v after the release, want the lock at once", r.err, r.at.Sub(released))
		}
		if a := srv.Lease(ns, "early").Annotations["leasehold.io/queue-entry"]; !strings.HasPrefix(a, "granted/") {
			t.Fatalf("lock annotation %q, want the grant not yet adopted", a)
		}
		if want := joined.Add(10 * time.Second); !r.held.Deadline().Equal(want) {
			t.Fatalf("deadline %v after the join, want RenewDeadline (10s)", r.held.Deadline().Sub(joined))
		}
		<-r.held.Done()
		if !errors.Is(context.Cause(r.held.Context()), lock.ErrDeadline) || time.Since(joined) != 10*time.Second {
			t.Fatalf("b's term ended %v after the join with %v, want ErrDeadline at 10s", time.Since(joined), context.Cause(r.held.Context()))
		}
		srv.Fail("update", nil)
		_ = r.held.Release(t.Context())
	})
}

// A grant whose entry is gone is not free before it expires: the grantee
// may already work under it (it starts on the grant and deletes its entry
// at once). Here its adoption never gets through; the waiter behind takes
// the lock only after the grant expires, after the grantee's term ended.
func TestGrantToADeletedEntryWaitsForExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		h := mustLock(t, newMutex(t, srv, "void", "a"))
		ws := queueInOrder(t, t.Context(), newMutex(t, srv, "void", "b"), newMutex(t, srv, "void", "c"))
		time.Sleep(time.Second)
		failAdoptions(srv, "void")
		released := time.Now()
		mustRelease(t, h)
		b := <-ws[0]
		if b.err != nil {
			t.Fatal(b.err)
		}
		synctest.Wait()
		for _, l := range srv.List(ns) {
			if l.Labels["leasehold.io/queue-entry"] != "" && *l.Spec.HolderIdentity == "b" {
				t.Fatalf("b's entry %s is still there; the test needs it gone", l.Name)
			}
		}
		<-b.held.Done() // adoptions keep failing: b's term ends at its deadline
		bEnded := time.Now()
		srv.Fail("update", nil) // from now on c's take may go through
		c := <-ws[1]
		if c.err != nil {
			t.Fatal(c.err)
		}
		if c.at.Before(bEnded) {
			t.Fatalf("c took the lock %v after the release, while b's term ran (it ended at %v)", c.at.Sub(released), bEnded.Sub(released))
		}
		if c.at.Sub(released) < 15*time.Second {
			t.Errorf("c took the lock %v after the release, before the grant expired (15s)", c.at.Sub(released))
		}
		_ = b.held.Release(t.Context())
		mustRelease(t, c.held)
	})
}

// A grant that crossed its waiter's give-up names an entry marked left:
// the waiter behind takes the lock at once, without waiting for the grant
// to expire.
func TestGrantToAWaiterThatLeftIsTakenAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		h := mustLock(t, newMutex(t, srv, "left", "a"))
		ctx, cancel := context.WithCancel(t.Context())
		b := queueInOrder(t, ctx, newMutex(t, srv, "left", "b"))[0]
		c := queueInOrder(t, t.Context(), newMutex(t, srv, "left", "c"))[0]
		time.Sleep(time.Second)
		cancel()
		if r := <-b; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("b: %v, want context.Canceled", r.err)
		}
		synctest.Wait()
		var entry *coordinationv1.Lease
		for _, name := range queueEntries(srv, "left") {
			if l := srv.Lease(ns, name); l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == "" {
				entry = l
			}
		}
		if entry == nil {
			t.Fatal("no queue entry marked left after b gave up")
		}
		// a's hand-over to b, as it would have been written had a read
		// the queue just before b left (a's term ends: it reads the new
		// holder).
		cur := srv.Lease(ns, "left")
		grant := cur.DeepCopy()
		b0, now := "b", metav1.NewMicroTime(time.Now())
		grant.Spec.HolderIdentity = &b0
		grant.Spec.AcquireTime, grant.Spec.RenewTime = &now, &now
		trans := *cur.Spec.LeaseTransitions + 1
		grant.Spec.LeaseTransitions = &trans
		pos := entry.Annotations["leasehold.io/queued-at"]
		if pos == "" {
			pos = entry.ResourceVersion
		}
		grant.Annotations["leasehold.io/queue-entry"] = "granted/" + pos + "/" + entry.Name
		grant.Annotations["leasehold.io/granted-on"] = entry.ResourceVersion
		tok, err := lease.TokenOf(cur.ResourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		grant.Annotations[lease.TokenAnnotation] = lease.TokenAnnotationValue(tok, trans, "b")
		granted := time.Now()
		srv.Put(grant)
		<-h.Done()
		r := <-c
		if r.err != nil || r.at != granted {
			t.Fatalf("c: %v %v after the grant to b's left entry, want the lock at once", r.err, r.at.Sub(granted))
		}
		_ = h.Release(t.Context())
		mustRelease(t, r.held)
	})
}

// A waiter that turns near the head renews its entry if its last write is
// more than RenewDeadline − 2·RetryPeriod old (6s here), so that its grant
// names a version that leaves time for the adoption: its term then starts
// with most of its deadline ahead. A younger entry is not renewed. (A
// LeaseDuration of 30s puts the first periodic renewal at 7.5s or later.)
func TestNearWaiterRenewsAnOldEntryOnly(t *testing.T) {
	for _, tc := range []struct {
		age    time.Duration
		writes int
	}{{3 * time.Second, 0}, {7 * time.Second, 1}} {
		t.Run(tc.age.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fakelease.New()
				long := func(c *lock.Config) {
					c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 30*time.Second, 10*time.Second, 2*time.Second
				}
				h := mustLock(t, newMutex(t, srv, "stale", "a", long))
				ws := queueInOrder(t, t.Context(), newMutex(t, srv, "stale", "b", long), newMutex(t, srv, "stale", "c", long), newMutex(t, srv, "stale", "d", long))
				var entry string
				for _, name := range queueEntries(srv, "stale") {
					if *srv.Lease(ns, name).Spec.HolderIdentity == "d" {
						entry = name
					}
				}
				joined := time.Now()
				time.Sleep(tc.age)
				before := len(srv.Versions(ns, entry))
				mustRelease(t, h) // to b: d is now second in line, near
				synctest.Wait()
				turnedNear := time.Now()
				if got := len(srv.Versions(ns, entry)) - before; got != tc.writes {
					t.Fatalf("d's entry, %v old, written %d times as d turned near, want %d", tc.age, got, tc.writes)
				}
				b := <-ws[0]
				mustRelease(t, b.held) // to c
				c := <-ws[1]
				mustRelease(t, c.held) // to d
				d := <-ws[2]
				if d.err != nil {
					t.Fatal(d.err)
				}
				from := joined
				if tc.writes == 1 {
					from = turnedNear
				}
				if want := from.Add(10 * time.Second); !d.held.Deadline().Equal(want) {
					t.Errorf("d's deadline %v after its entry's last write, want RenewDeadline (10s)", d.held.Deadline().Sub(from))
				}
				mustRelease(t, d.held)
			})
		})
	}
}

// A waiter that joins a long queue reads nothing of it: the lock's Lease
// names the queue's tail (written with the grant before), and the waiter
// follows those two entries, each by name. It is served last.
func TestJoinFollowsTheTailReadingNoQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		const n = 30
		h, waits := holderAndQueue(t, srv, "tail", n)
		mustRelease(t, h) // the grant to w00 names the tail: w28, w29
		h = served(t, waits[0])
		synctest.Wait()
		initial, watches, listed := srv.Count("initial-event"), srv.Count("watch"), srv.Count("list-item")
		last := lockAsync(t, t.Context(), newMutex(t, srv, "tail", "late"))
		synctest.Wait()
		if d := srv.Count("initial-event") - initial; d != 0 {
			t.Errorf("joining behind %d waiters read %d entries as a watch's initial state, want 0", n-1, d)
		}
		if d := srv.Count("list-item") - listed; d != 1 {
			t.Errorf("joining listed %d Leases, want 1 (the lock's, for its version and the tail it names)", d)
		}
		if d := srv.Count("watch") - watches; d != 2 {
			t.Errorf("joining opened %d watches, want 2 (the two entries of the tail)", d)
		}
		for i := 1; i < n; i++ {
			mustRelease(t, h)
			h = served(t, waits[i])
			pending(t, last)
		}
		mustRelease(t, h)
		mustRelease(t, served(t, last))
	})
}

// A hand-over in a long queue reads only its head: the waiter that moves
// near lists the first entries by name (where the queue's order is), never
// the whole queue, and every waiter is served in order.
func TestHandOverListsOnlyTheHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		const n = 40
		h, waits := holderAndQueue(t, srv, "head", n)
		const queue = "initial-event:leasehold.io/queue-entry=head"
		initial, listed := srv.Count(queue), srv.Count("list-item")
		for i := range n {
			mustRelease(t, h)
			h = served(t, waits[i])
		}
		mustRelease(t, h)
		if d := srv.Count(queue) - initial; d != 0 {
			t.Errorf("%d hand-overs read %d queue entries as a watch's initial state, want 0", n, d)
		}
		if d := srv.Count("list-item") - listed; d > 16*n {
			t.Errorf("%d hand-overs listed %d entries, more than 16 each", n, d)
		}
	})
}

// entryNamed is a queue entry of lockName named with the estimate est (as
// the package names them), held by holder ("" : its waiter left).
func entryNamed(lockName string, est uint64, holder string, now time.Time) *coordinationv1.Lease {
	l := entryObj(lockName, fmt.Sprintf("%016x00000000", est), holder, now)
	if holder == "" {
		l.Spec.HolderIdentity = nil
	}
	return l
}

// A holder whose view started from a list of the head of the queue does
// not grant beyond what that list holds: the waiter it would choose may be
// preceded by one it has not seen (here alpha, queued before beta and
// quiet since). It reads the whole queue first, and grants to alpha.
func TestSuccessorBeyondTheListedHeadIsReadWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		now := time.Now()
		const far = 1 << 40 // places after every waiter that joins here
		for k := range 15 {
			srv.Put(entryNamed("beyond", far+uint64(k), "", now)) // left: dead
		}
		alpha := srv.Put(entryNamed("beyond", far+16, "alpha", now))
		beta := srv.Put(entryNamed("beyond", far+18, "beta", now))
		// h lists the head: itself and the 15 entries that left; alpha
		// and beta lie beyond.
		h := mustLock(t, newMutex(t, srv, "beyond", "h"))
		synctest.Wait()
		time.Sleep(time.Second)
		beta.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		srv.Put(beta) // renewed: now in h's view
		synctest.Wait()
		mustRelease(t, h)
		got := srv.Lease(ns, "beyond").Annotations["leasehold.io/queue-entry"]
		if want := "/" + alpha.Name; !strings.HasPrefix(got, "granted/") || !strings.HasSuffix(got, want) {
			t.Errorf("released to %q, want a grant to alpha's entry %s", got, alpha.Name)
		}
	})
}

// A waiter whose entry was still being created when the lock was handed
// to a waiter placed after it (their calls began together) was never
// passed over by anyone: it queues again without reporting a loss, and
// gets the lock next.
func TestEntryCreatedLateQueuesAgainQuietly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		h := mustLock(t, newMutex(t, srv, "late", "holder"))
		var requeued requeues
		j := newMutex(t, srv, "late", "j", requeued.record)
		release := srv.HoldCreates(func(l *coordinationv1.Lease) bool {
			return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == "j"
		})
		jw := lockAsync(t, t.Context(), j) // reads its version, then its create waits
		synctest.Wait()
		srv.Put(leaseObj("unrelated", "x", 15, 0, time.Now())) // a later version for k
		kw := queueInOrder(t, t.Context(), newMutex(t, srv, "late", "k"))[0]
		mustRelease(t, h) // to k: j's entry does not exist yet
		k := served(t, kw)
		release()
		synctest.Wait()
		pending(t, jw)
		mustRelease(t, k)
		mustRelease(t, served(t, jw))
		if lost := requeued.get(); len(lost) != 0 {
			t.Errorf("Requeued got %v, want nothing: j's entry was never passed over", lost)
		}
	})
}

// A Lock that finds the lock released and nobody queued takes it at once:
// no queue entry is created or deleted, and a Lock+Release cycle writes the
// lock's Lease twice (the take and the release), nothing else.
func TestLockOfAFreeLockQueuesNoEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		m := newMutex(t, srv, "free", "a")
		mustRelease(t, mustLock(t, m)) // creates the lock's Lease
		synctest.Wait()
		creates, updates, deletes := srv.Count("create"), srv.Count("update"), srv.Count("delete")
		for range 3 {
			mustRelease(t, mustLock(t, m))
			synctest.Wait()
		}
		if n := srv.Count("create") - creates; n != 0 {
			t.Errorf("3 Lock+Release cycles of a free lock created %d Leases (queue entries), want 0", n)
		}
		if n := srv.Count("delete") - deletes; n != 0 {
			t.Errorf("3 Lock+Release cycles of a free lock deleted %d Leases, want 0", n)
		}
		if n := srv.Count("update") - updates; n != 6 {
			t.Errorf("3 Lock+Release cycles of a free lock made %d updates, want 6 (take, release)", n)
		}
		for _, l := range srv.List(ns) {
			if strings.Contains(l.Name, "-q-") {
				t.Errorf("queue entry %s left behind", l.Name)
			}
		}
	})
}

// A Lock that finds the lock released while a waiter is queued (whose take
// has not landed yet) does not take it: it queues behind that waiter.
func TestLockOfAReleasedLockWithAWaiterQueues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		mustLock(t, newMutex(t, srv, "behind", "a"))
		b := queueInOrder(t, t.Context(), newMutex(t, srv, "behind", "b"))[0]
		// Another client releases the lock under a's feet (as kubectl or
		// a client-go holder would: no grant); b's take fails for now.
		srv.Fail("update", func(name string) error {
			if name == "behind" {
				return apierrors.NewServiceUnavailable("busy")
			}
			return nil
		})
		released := srv.Lease(ns, "behind").DeepCopy()
		released.Spec.HolderIdentity = nil
		srv.Put(released)
		synctest.Wait()
		creates := srv.Count("create")
		c := queueInOrder(t, t.Context(), newMutex(t, srv, "behind", "c"))[0]
		if n := srv.Count("create") - creates; n != 1 {
			t.Errorf("c created %d Leases, want 1: its queue entry, behind b's", n)
		}
		if n := srv.Count("update behind c"); n != 0 {
			t.Errorf("c tried to take the released lock %d times, want 0: b queued first", n)
		}
		srv.Fail("update", nil)
		hb := served(t, b) // b's retry
		synctest.Wait()
		select {
		case r := <-c:
			t.Fatalf("c got the lock (err %v) while b held it", r.err)
		default:
		}
		mustRelease(t, hb)
		mustRelease(t, served(t, c))
	})
}

// Two Locks that both find the lock free and nobody queued race for it with
// one conditional write each: one takes it, the other queues (near the
// head: it follows the queue already) and is granted the lock on release.
func TestLockersOfAFreeLockRaceOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		mustRelease(t, mustLock(t, newMutex(t, srv, "race", "a"))) // creates the lock's Lease
		synctest.Wait()
		srv.HoldUpdates(2, nil) // both takes reach the server on one version
		conflicts := srv.Conflicts()
		rb := lockAsync(t, t.Context(), newMutex(t, srv, "race", "b"))
		rc := lockAsync(t, t.Context(), newMutex(t, srv, "race", "c"))
		synctest.Wait()
		var winner result
		var loser <-chan result
		select {
		case winner = <-rb:
			loser = rc
		case winner = <-rc:
			loser = rb
		default:
			t.Fatal("neither b nor c took the free lock")
		}
		if winner.err != nil {
			t.Fatal(winner.err)
		}
		if n := srv.Conflicts() - conflicts; n != 1 {
			t.Errorf("%d conflicts, want 1 (the loser's take)", n)
		}
		select {
		case r := <-loser:
			t.Fatalf("both b and c got the lock (err %v)", r.err)
		default:
		}
		released := time.Now()
		mustRelease(t, winner.held)
		r := <-loser
		if r.err != nil {
			t.Fatal(r.err)
		}
		if d := r.at.Sub(released); d != 0 {
			t.Errorf("the loser got the lock %v after the release, want at once (granted)", d)
		}
		mustRelease(t, r.held)
	})
}
