package lock_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/leasehold/leasehold/internal/testenv"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lock"
)

// Integration tests: a real kube-apiserver and etcd (one control plane for
// all of them, each subtest on its own Leases), wall-clock time and short
// timings. They assert safety (no overlap, ordering of tokens and of expiry)
// and only loose bounds on speed.

const (
	itLease   = 3 * time.Second
	itRenew   = 2 * time.Second
	itRetry   = 500 * time.Millisecond
	itTimeout = 45 * time.Second // a subtest that hangs fails instead
)

func fast(c *lock.Config) {
	c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = itLease, itRenew, itRetry
}

func TestIntegration(t *testing.T) {
	cp := testenv.Start(t)
	cs := testenv.Clientset(t, cp)
	t.Run("MutualExclusion", func(t *testing.T) { testMutualExclusion(t, cs) })
	t.Run("CrashedGhostHolder", func(t *testing.T) { testCrashedGhostHolder(t, cs) })
	t.Run("PartitionedHolder", func(t *testing.T) { testPartitionedHolder(t, cs) })
	t.Run("Semaphore", func(t *testing.T) { testSemaphore(t, cs) })
	t.Run("NamespacesAndRBAC", func(t *testing.T) { testNamespacesAndRBAC(t, cp, cs) })
	t.Run("FIFOHandOver", func(t *testing.T) { testFIFOHandOver(t, cp) })
	t.Run("HeadOfTheQueue", func(t *testing.T) { testHeadOfTheQueue(t, cp) })
}

func timeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), itTimeout)
	t.Cleanup(cancel)
	return ctx
}

// 20 contenders, each its own Mutex and identity, lock 3 times each with
// short holds; the wall-clock intervals from Lock's return to the call of
// Release never overlap and the tokens grow in acquisition order.
func testMutualExclusion(t *testing.T, cs kubernetes.Interface) {
	const contenders, rounds = 20, 3
	ctx := timeout(t)
	var (
		iv        intervals
		conflicts atomic.Int64
		lost      atomic.Int64
		wg        sync.WaitGroup
	)
	for i := range contenders {
		m := newMutex(t, cs.CoordinationV1(), "mutex", fmt.Sprintf("c%02d", i), fast, func(c *lock.Config) {
			c.Hooks.Conflict = func() { conflicts.Add(1) }
		})
		wg.Go(func() {
			for r := range rounds {
				h, err := m.Lock(ctx)
				if err != nil {
					t.Errorf("%s round %d: %v", m.Identity(), r, err)
					return
				}
				k := iv.begin(m.Identity(), h)
				time.Sleep(time.Duration(10+(i*7+r*13)%30) * time.Millisecond)
				if h.Err() != nil {
					lost.Add(1) // e.g. a renewal slower than RenewDeadline on a loaded machine
					t.Logf("%s lost its lock while holding: %v", m.Identity(), h.Err())
				}
				iv.end(k)
				if err := h.Release(context.WithoutCancel(ctx)); err != nil {
					t.Errorf("%s: Release: %v", m.Identity(), err)
				}
			}
		})
	}
	wg.Wait()
	if n := iv.len(); n != contenders*rounds {
		t.Fatalf("%d acquisitions, want %d", n, contenders*rounds)
	}
	iv.check(t, 1)
	t.Logf("%d acquisitions by %d contenders, %d conflicts, %d holds lost", iv.len(), contenders, conflicts.Load(), lost.Load())
}

// A holder crashed: its record stays, nobody renews it. The waiter takes the
// lock once the record's leaseDurationSeconds has passed in its own view.
func testCrashedGhostHolder(t *testing.T, cs kubernetes.Interface) {
	ctx := timeout(t)
	c, err := lease.NewClient(cs.CoordinationV1(), ns, "ghost")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := c.Create(ctx, lease.Record{Holder: "ghost", LeaseDuration: 2 * time.Second, AcquireTime: now, RenewTime: now, Transitions: 4}); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	m := newMutex(t, cs.CoordinationV1(), "ghost", "b", fast)
	h, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.WithoutCancel(ctx))
	took := time.Since(written)
	if took < 2*time.Second {
		t.Errorf("took the lock %v after the ghost's write, before its 2s lease could expire", took)
	}
	if took > 2*time.Second+itTimeout/3 {
		t.Errorf("took the lock only after %v", took)
	}
	s, err := c.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Record.Holder != "b" || s.Record.Transitions != 5 || s.Token != h.Token() {
		t.Errorf("after take-over: %+v token %v, want b at transition 5 with token %v", s.Record, s.Token, h.Token())
	}
	t.Logf("ghost's 2s lease taken over %v after it was written", took)
}

// partition wraps a LeasesGetter; while cut, every new request fails as if
// the apiserver were unreachable from this one client. It stands in for a
// holder process that hangs or loses its network without releasing.
type partition struct {
	coordinationv1client.LeasesGetter
	cut atomic.Bool
}

func (p *partition) Leases(namespace string) coordinationv1client.LeaseInterface {
	return partitioned{LeaseInterface: p.LeasesGetter.Leases(namespace), p: p}
}

type partitioned struct {
	coordinationv1client.LeaseInterface
	p *partition
}

func (l partitioned) err() error {
	if l.p.cut.Load() {
		return apierrors.NewServiceUnavailable("test partition")
	}
	return nil
}

func (l partitioned) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	if err := l.err(); err != nil {
		return nil, err
	}
	return l.LeaseInterface.Get(ctx, name, opts)
}

func (l partitioned) Create(ctx context.Context, in *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	if err := l.err(); err != nil {
		return nil, err
	}
	return l.LeaseInterface.Create(ctx, in, opts)
}

func (l partitioned) Update(ctx context.Context, in *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	if err := l.err(); err != nil {
		return nil, err
	}
	return l.LeaseInterface.Update(ctx, in, opts)
}

func (l partitioned) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	if err := l.err(); err != nil {
		return nil, err
	}
	return l.LeaseInterface.Watch(ctx, opts)
}

// A real Mutex holder stops getting through to the apiserver and never
// releases: its Context ends with ErrDeadline at RenewDeadline after its last
// successful renewal was sent, and the waiter takes over no earlier than
// LeaseDuration after that renewal, i.e. LeaseDuration-RenewDeadline after the
// holder's context ended.
func testPartitionedHolder(t *testing.T, cs kubernetes.Interface) {
	ctx := timeout(t)
	p := &partition{LeasesGetter: cs.CoordinationV1()}
	a := newMutex(t, p, "partition", "a", fast)
	b := newMutex(t, cs.CoordinationV1(), "partition", "b", fast)
	h, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		h   *lock.Held
		err error
		at  time.Time
	}
	waiting := make(chan got, 1)
	go func() {
		h, err := b.Lock(ctx)
		waiting <- got{h, err, time.Now()}
	}()
	time.Sleep(2 * itRetry) // a renews at least once while b waits
	p.cut.Store(true)
	<-h.Done()
	ended := time.Now()
	if !errors.Is(h.Err(), lock.ErrDeadline) {
		t.Errorf("a's context ended with %v, want lock.ErrDeadline", h.Err())
	}
	r := <-waiting
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.h.Release(context.WithoutCancel(ctx))
	if !r.at.After(ended) {
		t.Fatalf("b acquired at %v, before a's context ended at %v", r.at, ended)
	}
	// h.Deadline() is a's last successful renewal send time + RenewDeadline;
	// b saw that renewal no earlier than it was sent.
	if margin := r.at.Sub(h.Deadline()); margin < itLease-itRenew {
		t.Errorf("b took over %v after a's deadline, want at least LeaseDuration-RenewDeadline = %v", margin, itLease-itRenew)
	}
	if r.h.Token() <= h.Token() {
		t.Errorf("token %v after %v", r.h.Token(), h.Token())
	}
	p.cut.Store(false)
	if err := h.Release(context.WithoutCancel(ctx)); err != nil {
		t.Errorf("a's Release after the loss: %v", err)
	}
	t.Logf("a's context ended %v after its deadline; b took over %v after a's context ended",
		ended.Sub(h.Deadline()), r.at.Sub(ended))
}

func testSemaphore(t *testing.T, cs kubernetes.Interface) {
	const permits, contenders, rounds = 3, 8, 3
	ctx := timeout(t)
	var iv intervals
	var wg sync.WaitGroup
	for i := range contenders {
		s, err := lock.NewSemaphore(config(cs.CoordinationV1(), "sem", fmt.Sprintf("s%d", i), fast), permits)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for range rounds {
				h, err := s.Acquire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				k := iv.begin(s.Identity(), h)
				time.Sleep(time.Duration(50+i*20) * time.Millisecond)
				iv.end(k)
				if err := h.Release(context.WithoutCancel(ctx)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := iv.len(); n != contenders*rounds {
		t.Fatalf("%d acquisitions, want %d", n, contenders*rounds)
	}
	most := iv.check(t, permits)
	for i := range permits + 1 {
		_, err := cs.CoordinationV1().Leases(ns).Get(ctx, fmt.Sprintf("sem-%d", i), metav1.GetOptions{})
		if exists := err == nil; exists != (i < permits) {
			t.Errorf("lease sem-%d exists: %v (%v)", i, exists, err)
		}
	}
	t.Logf("%d acquisitions, at most %d holders at once", iv.len(), most)
}

// The same lock name in two namespaces is two locks; a ServiceAccount may
// lock only where its Role allows, and a Role without create/update fails
// with an error that names the missing verb.
func testNamespacesAndRBAC(t *testing.T, cp *testenv.ControlPlane, cs kubernetes.Interface) {
	ctx := timeout(t)
	saClient := func(namespace, name string, rules []rbacv1.PolicyRule) coordinationv1client.LeasesGetter {
		t.Helper()
		token, err := cp.ServiceAccountToken(ctx, namespace, name, rules)
		if err != nil {
			t.Fatal(err)
		}
		c, err := kubernetes.NewForConfig(cp.ConfigForToken(token))
		if err != nil {
			t.Fatal(err)
		}
		return c.CoordinationV1()
	}
	teamA := saClient("team-a", "app", testenv.LeaseRules())
	teamB := saClient("team-b", "app", testenv.LeaseRules())
	viewer := saClient("readonly", "viewer", []rbacv1.PolicyRule{{
		APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch"},
	}})

	mutex := func(leases coordinationv1client.LeasesGetter, namespace, id string) *lock.Mutex {
		t.Helper()
		m, err := lock.NewMutex(lock.Config{Leases: leases, Namespace: namespace, Name: "shared", Identity: id,
			LeaseDuration: itLease, RenewDeadline: itRenew, RetryPeriod: itRetry})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ha, err := mutex(teamA, "team-a", "a").TryLock(ctx)
	if err != nil {
		t.Fatalf("team-a: %v", err)
	}
	defer ha.Release(context.WithoutCancel(ctx))
	hb, err := mutex(teamB, "team-b", "b").TryLock(ctx)
	if err != nil {
		t.Fatalf("team-b, while team-a/shared is held: %v", err)
	}
	defer hb.Release(context.WithoutCancel(ctx))
	if ha.Lease() != "team-a/shared" || hb.Lease() != "team-b/shared" {
		t.Errorf("leases %s and %s", ha.Lease(), hb.Lease())
	}
	if _, err := mutex(cs.CoordinationV1(), "team-a", "admin").TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Errorf("team-a/shared while held: %v, want lock.ErrLocked", err)
	}

	forbidden := func(t *testing.T, err error, verb, namespace string) {
		t.Helper()
		var apiErr *lease.APIError
		if !errors.Is(err, lease.ErrForbidden) || !errors.As(err, &apiErr) || apiErr.Verb != verb {
			t.Fatalf("Lock = %v, want lease.ErrForbidden for verb %q", err, verb)
		}
		msg := err.Error()
		for _, want := range []string{fmt.Sprintf("verb %q", verb), `resource "leases"`, fmt.Sprintf("namespace %q", namespace)} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %s", msg, want)
			}
		}
	}
	t.Run("other namespace", func(t *testing.T) {
		_, err := mutex(teamA, "team-b", "a").Lock(ctx)
		forbidden(t, err, "list", "team-b") // its first request reads the current version
	})
	t.Run("read-only role, no lease yet", func(t *testing.T) {
		_, err := mutex(viewer, "readonly", "v").Lock(ctx)
		forbidden(t, err, "create", "readonly")
	})
	t.Run("read-only role, released lease", func(t *testing.T) {
		c, err := lease.NewClient(cs.CoordinationV1(), "readonly", "shared")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Create(ctx, lease.Record{}.Released(time.Now())); err != nil {
			t.Fatal(err)
		}
		_, err = mutex(viewer, "readonly", "v").Lock(ctx)
		forbidden(t, err, "update", "readonly") // nobody queued: it takes the lock at once
		_, err = mutex(viewer, "readonly", "v").TryLock(ctx)
		forbidden(t, err, "update", "readonly") // TryLock does not queue
		if s, err := c.Get(ctx); err != nil || s.Record.Holder != "" || s.Record.PreferredHolder != "" {
			t.Errorf("lease after the refused Lock: %+v, %v", s, err)
		}
	})
}

// One holder and 10 waiters that queued one after the other: each release
// hands the lock to the next waiter in queue order, with no conflict and
// exactly two writes of the lock Lease once the new holder has adopted it
// (the grant, and its first renewal a RetryPeriod after it queued); the
// previous holder queues again at the back.
func testFIFOHandOver(t *testing.T, cp *testenv.ControlPlane) {
	const waiters, handOvers = 10, 25
	ctx, cancel := context.WithCancel(timeout(t))
	const name = "fifo"
	cs, puts := countingClient(t, cp, name)
	var conflicts atomic.Int64
	type won struct {
		m *lock.Mutex
		h *lock.Held
	}
	wins := make(chan won, waiters+1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the Wait: on failure, stop the waiters
	var ms []*lock.Mutex
	queuedAhead := map[string]chan int{}
	for i := range waiters + 1 {
		id := fmt.Sprintf("w%02d", i)
		ahead := make(chan int, 100)
		queuedAhead[id] = ahead
		ms = append(ms, newMutex(t, cs.CoordinationV1(), name, id, fast, func(c *lock.Config) {
			c.Hooks.Conflict = func() { conflicts.Add(1) }
			c.Hooks.Queued = func(n int) { ahead <- n }
		}))
	}
	// queue starts m's Lock and returns once m is in the queue (its
	// first Queued report), so that the order of calls is the queue order.
	queue := func(m *lock.Mutex) {
		wg.Go(func() {
			h, err := m.Lock(ctx)
			if err != nil {
				if ctx.Err() == nil {
					t.Error(err)
				}
				return
			}
			wins <- won{m, h}
		})
		select {
		case <-queuedAhead[m.Identity()]:
		case <-ctx.Done():
		}
	}
	cur := won{ms[0], nil}
	var err error
	if cur.h, err = ms[0].Lock(ctx); err != nil {
		t.Fatal(err)
	}
	order := []*lock.Mutex{}
	for _, m := range ms[1:] {
		queue(m)
		order = append(order, m)
	}
	var tokens []lease.Token
	for k := range handOvers {
		before, c0 := puts.Load(), conflicts.Load()
		if err := cur.h.Release(ctx); err != nil {
			t.Fatal(err)
		}
		prev := cur
		cur = <-wins
		if want := order[0]; cur.m != want {
			t.Fatalf("hand-over %d went to %s, want %s, the first in the queue", k, cur.m.Identity(), want.Identity())
		}
		order = append(order[1:], prev.m)
		if n := conflicts.Load() - c0; n != 0 {
			t.Errorf("hand-over %d: %d conflicts", k, n)
		}
		// The new holder's term starts on the grant; its adopting write
		// follows. Count once it is in.
		adopted(t, ctx, cs, name, cur.m.Identity())
		if writes := puts.Load() - before; writes != 2 {
			t.Errorf("hand-over %d: the lock Lease was written %d times, want 2 (grant, adoption)", k, writes)
		}
		tokens = append(tokens, cur.h.Token())
		queue(prev.m)
	}
	if err := cur.h.Release(ctx); err != nil {
		t.Error(err)
	}
	for range waiters {
		w := <-wins
		if err := w.h.Release(ctx); err != nil {
			t.Error(err)
		}
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("tokens not increasing: %v", tokens)
		}
	}
}

// countingClient returns a clientset of cp whose PUTs of the Lease name
// are counted.
func countingClient(t *testing.T, cp *testenv.ControlPlane, name string) (kubernetes.Interface, *atomic.Int64) {
	t.Helper()
	var puts atomic.Int64
	cfg := cp.Config()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/leases/"+name) {
				puts.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, &puts
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// adopted waits until the lock Lease name records identity's adopting
// write (its queue-entry annotation says held/).
func adopted(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, identity string) {
	t.Helper()
	for {
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == identity &&
			strings.HasPrefix(l.Annotations["leasehold.io/queue-entry"], "held/") {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s's adopting write of %s never came: %v", identity, name, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// 30 waiters queue one after the other behind a holder, more than one list
// of the head of the queue holds (16 entries), and 5 more join once the
// lock has been handed over, behind the tail that hand-over named: the
// apiserver lists entries in name order, so every hand-over goes to the
// next waiter in queue order; the late joiners read nothing of the queue,
// and the waiters that move near the head list only its head: no read of
// the whole queue after the first 30 joined.
func testHeadOfTheQueue(t *testing.T, cp *testenv.ControlPlane) {
	const waiters, late = 30, 5
	ctx := timeout(t)
	const name = "head"
	var wholeReads, headReads, byLabel, byName atomic.Int64
	cfg := cp.Config()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			q := r.URL.Query()
			switch {
			case r.Method == http.MethodGet && q.Get("watch") == "" && strings.HasPrefix(q.Get("labelSelector"), "leasehold.io/queue="):
				byLabel.Add(1)
			case r.Method == http.MethodGet && q.Get("watch") == "" && q.Get("fieldSelector") == "metadata.name="+name:
				byName.Add(1)
			case q.Get("sendInitialEvents") == "true" && strings.HasPrefix(q.Get("labelSelector"), "leasehold.io/queue-entry="):
				wholeReads.Add(1)
			case r.Method == http.MethodGet && q.Get("watch") == "" && q.Get("limit") != "" && strings.HasPrefix(q.Get("labelSelector"), "leasehold.io/queue-entry="):
				headReads.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	queued := func(id string) bool {
		l, err := cs.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: lock.QueueSelector(name, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(l.Items, func(e coordinationv1.Lease) bool {
			return e.Spec.HolderIdentity != nil && *e.Spec.HolderIdentity == id
		})
	}
	h, err := newMutex(t, cs.CoordinationV1(), name, "holder", fast).Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type won struct {
		i int
		h *lock.Held
	}
	wins := make(chan won, waiters+late)
	var wg sync.WaitGroup
	defer wg.Wait()
	// join starts waiter i's Lock; the next call begins once its entry
	// exists: it is behind it.
	join := func(i int) {
		id := fmt.Sprintf("w%02d", i)
		m := newMutex(t, cs.CoordinationV1(), name, id, fast)
		wg.Go(func() {
			h, err := m.Lock(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			wins <- won{i, h}
		})
		for !queued(id) {
			select {
			case <-ctx.Done():
				t.Fatalf("w%02d's queue entry never appeared", i)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	for i := range waiters {
		join(i)
	}
	time.Sleep(itRetry) // the joins' reads are over
	whole0, head0 := wholeReads.Load(), headReads.Load()
	for i := range waiters + late {
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
		w := <-wins
		if w.i != i {
			t.Fatalf("hand-over %d went to w%02d, want w%02d, the next in the queue", i, w.i, i)
		}
		h = w.h
		if i == 0 {
			for k := range late {
				join(waiters + k)
			}
		}
	}
	if err := h.Release(ctx); err != nil {
		t.Error(err)
	}
	if n := wholeReads.Load() - whole0; n != 0 {
		t.Errorf("%d reads of the whole queue during %d hand-overs and %d joins, want 0", n, waiters+late, late)
	}
	if n := headReads.Load() - head0; n == 0 || n > 2*(waiters+late) {
		t.Errorf("%d lists of the head of the queue during %d hand-overs, want 1 to %d", n, waiters+late, 2*(waiters+late))
	}
	// Each join lists the lock's Lease by name (the apiserver reads one
	// key), never the namespace by the permits' label.
	if n := byLabel.Load(); n != 0 {
		t.Errorf("%d lists of the lock's Lease by label, want 0", n)
	}
	if n := byName.Load(); n < waiters+late {
		t.Errorf("%d lists of the lock's Lease by name for %d joins, want one each", n, waiters+late)
	}
}
