package holder_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// Observer tests run in a synctest bubble: time only moves when every
// goroutine is blocked, so "now" is exact and retries cost no real time.

const obsRetry = 2 * time.Second

var leasesGR = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

// leasesProxy sits between the Observer and the fake apiserver. It can hold
// watch requests at a gate (so that a test can change the server while the
// Observer's watch is down), hand out prepared watches, and stop a runaway
// read loop.
type leasesProxy struct {
	coordinationv1client.LeasesGetter

	mu       sync.Mutex
	gate     chan struct{}
	watchRVs []string
	prepared []watch.Interface
	getLimit int // > 0: Get calls beyond this many block until their context ends
	gets     int
	runaway  bool
}

func (p *leasesProxy) Leases(ns string) coordinationv1client.LeaseInterface {
	return &proxyLeaseInterface{LeaseInterface: p.LeasesGetter.Leases(ns), p: p}
}

// holdWatches makes watch requests wait until releaseWatches.
func (p *leasesProxy) holdWatches() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
}

func (p *leasesProxy) releaseWatches() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

// prepareWatch makes the next watch request return w instead of a real watch.
func (p *leasesProxy) prepareWatch(w watch.Interface) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prepared = append(p.prepared, w)
}

// watchedFrom returns the resourceVersions of all watch requests so far.
func (p *leasesProxy) watchedFrom() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.watchRVs...)
}

func (p *leasesProxy) ranAway() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runaway
}

type proxyLeaseInterface struct {
	coordinationv1client.LeaseInterface
	p *leasesProxy
}

func (l *proxyLeaseInterface) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	p := l.p
	p.mu.Lock()
	p.gets++
	stuck := p.getLimit > 0 && p.gets > p.getLimit
	if stuck {
		p.runaway = true
	}
	p.mu.Unlock()
	if stuck {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return l.LeaseInterface.Get(ctx, name, opts)
}

func (l *proxyLeaseInterface) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	p := l.p
	p.mu.Lock()
	p.watchRVs = append(p.watchRVs, opts.ResourceVersion)
	gate := p.gate
	var w watch.Interface
	if len(p.prepared) > 0 {
		w, p.prepared = p.prepared[0], p.prepared[1:]
	}
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if w != nil {
		return w, nil
	}
	return l.LeaseInterface.Watch(ctx, opts)
}

// observerEnv is one Observer of ns/lock on a fake apiserver, reached through
// a leasesProxy.
type observerEnv struct {
	srv   *fakelease.Server
	proxy *leasesProxy
	obs   *holder.Observer
	done  chan error // receives Run's result
}

// newObserverEnv must be called inside a synctest bubble. The Observer is not
// running yet; see run.
func newObserverEnv(t *testing.T) *observerEnv {
	t.Helper()
	srv := fakelease.New()
	proxy := &leasesProxy{LeasesGetter: srv}
	c, err := lease.NewClient(proxy, "ns", "lock")
	if err != nil {
		t.Fatal(err)
	}
	return &observerEnv{srv: srv, proxy: proxy, obs: holder.NewObserver(c, nil, obsRetry), done: make(chan error, 1)}
}

// run starts the Observer until the test ends and checks that Run then
// returns context.Canceled, unless the test took Run's result with ended.
func (e *observerEnv) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		e.done <- e.obs.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-returned
		select {
		case err := <-e.done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Observer.Run returned %v, want context.Canceled", err)
			}
		default: // taken by ended
		}
	})
}

// ended waits until the bubble is idle and returns Run's result, failing the
// test if Run is still running.
func (e *observerEnv) ended(t *testing.T) error {
	t.Helper()
	synctest.Wait()
	select {
	case err := <-e.done:
		return err
	default:
		t.Fatal("Observer.Run is still running")
		return nil
	}
}

// put stores rec as the spec of ns/lock, as another client would, and
// returns the stored Lease.
func (e *observerEnv) put(rec lease.Record, mutate ...func(*coordinationv1.Lease)) *coordinationv1.Lease {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "lock"}, Spec: rec.ToSpec()}
	if cur := e.srv.Lease("ns", "lock"); cur != nil {
		l.ObjectMeta = cur.ObjectMeta
	}
	for _, m := range mutate {
		m(l)
	}
	return e.srv.Put(l)
}

// state waits until the Observer is idle and returns its state.
func (e *observerEnv) state(t *testing.T) (holder.State, <-chan struct{}) {
	t.Helper()
	synctest.Wait()
	return e.obs.State()
}

func heldBy(holder string, transitions int32) lease.Record {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return lease.Record{Holder: holder, LeaseDuration: 15 * time.Second, AcquireTime: now, RenewTime: now, Transitions: transitions}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// checkState fails unless st holds the lease stored as want (nil: absent),
// observed at observedAt, without error.
func checkState(t *testing.T, st holder.State, want *coordinationv1.Lease, observedAt time.Time) {
	t.Helper()
	if !st.Synced {
		t.Error("State.Synced = false")
	}
	if st.Err != nil {
		t.Errorf("State.Err = %v", st.Err)
	}
	if !st.ObservedAt.Equal(observedAt) {
		t.Errorf("State.ObservedAt = %s, want %s", st.ObservedAt.Format(time.RFC3339Nano), observedAt.Format(time.RFC3339Nano))
	}
	if want == nil {
		if st.Lease != nil || st.Exists() || st.Holder() != "" || !st.ExpiresAt().IsZero() {
			t.Errorf("State has lease %+v (Exists %t, Holder %q, ExpiresAt %v), want none", st.Lease, st.Exists(), st.Holder(), st.ExpiresAt())
		}
		return
	}
	if st.Lease == nil || !st.Exists() {
		t.Fatalf("State.Lease = nil, want version %s", want.ResourceVersion)
	}
	if st.Lease.ResourceVersion != want.ResourceVersion || st.Lease.UID != want.UID {
		t.Errorf("State.Lease at rv %s uid %s, want rv %s uid %s", st.Lease.ResourceVersion, st.Lease.UID, want.ResourceVersion, want.UID)
	}
	rec := lease.FromSpec(want.Spec)
	if !st.Lease.Record.Equal(rec) {
		t.Errorf("State.Lease.Record = %+v, want %+v", st.Lease.Record, rec)
	}
	if st.Holder() != rec.Holder {
		t.Errorf("State.Holder() = %q, want %q", st.Holder(), rec.Holder)
	}
	wantExp := time.Time{}
	if rec.Held() {
		wantExp = observedAt.Add(rec.LeaseDuration)
	}
	if !st.ExpiresAt().Equal(wantExp) {
		t.Errorf("State.ExpiresAt() = %v, want %v", st.ExpiresAt(), wantExp)
	}
}

func TestObserverInitialSync(t *testing.T) {
	t.Run("lease exists", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1), func(l *coordinationv1.Lease) {
				l.Annotations = map[string]string{lease.TokenAnnotation: "100/1/a"}
			})
			st, ch := e.obs.State()
			if st.Synced || st.Lease != nil || !st.ObservedAt.IsZero() || st.Err != nil {
				t.Errorf("State before Run = %+v, want the zero State", st)
			}
			if !st.ExpiresAt().IsZero() || st.Holder() != "" {
				t.Errorf("State before Run: ExpiresAt %v, Holder %q", st.ExpiresAt(), st.Holder())
			}
			start := time.Now()
			e.run(t)
			synctest.Wait()
			if !isClosed(ch) {
				t.Fatal("change channel still open after the initial sync")
			}
			st, ch = e.obs.State()
			checkState(t, st, stored, start)
			if st.Lease.Token != 100 {
				t.Errorf("State.Lease.Token = %d, want 100", st.Lease.Token)
			}
			if isClosed(ch) {
				t.Error("new change channel is already closed")
			}
			if got := e.proxy.watchedFrom(); len(got) != 1 || got[0] != stored.ResourceVersion {
				t.Errorf("watches opened from %q, want one from the version read, %q", got, stored.ResourceVersion)
			}
		})
	})

	t.Run("lease absent", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			_, ch := e.obs.State()
			start := time.Now()
			e.run(t)
			st, _ := e.state(t)
			if !isClosed(ch) {
				t.Error("change channel still open after the initial sync")
			}
			checkState(t, st, nil, start)
			if got := e.proxy.watchedFrom(); len(got) != 1 || got[0] != "" {
				t.Errorf("watches opened from %q, want one from \"\" (now)", got)
			}

			// A Lease created later arrives through that watch.
			time.Sleep(time.Second)
			stored := e.put(heldBy("a", 1))
			st, _ = e.state(t)
			checkState(t, st, stored, start.Add(time.Second))
		})
	})

	t.Run("lease released", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 4).Released(time.Now()), func(l *coordinationv1.Lease) {
				l.Annotations = map[string]string{lease.TokenAnnotation: "100/4/a"}
			})
			start := time.Now()
			e.run(t)
			st, _ := e.state(t)
			checkState(t, st, stored, start)
			if st.Lease.Token != 0 {
				t.Errorf("released lease reports token %d", st.Lease.Token)
			}
		})
	})
}

func TestObserverChangeSignal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newObserverEnv(t)
		e.put(heldBy("a", 1))
		e.run(t)
		_, before := e.state(t)

		// Nothing happens: no signal.
		time.Sleep(time.Minute)
		if _, ch := e.state(t); isClosed(ch) || ch != before {
			t.Fatal("change channel closed or replaced without a change")
		}

		const readers = 25
		var wg sync.WaitGroup
		holders := make([]string, readers)
		for i := range readers {
			wg.Go(func() {
				_, ch := e.obs.State()
				<-ch
				st, _ := e.obs.State()
				holders[i] = st.Holder()
			})
		}
		synctest.Wait() // every reader is waiting on the channel
		stored := e.put(heldBy("b", 2))
		wg.Wait()
		for i, h := range holders {
			if h != "b" {
				t.Errorf("reader %d saw holder %q after the signal, want \"b\"", i, h)
			}
		}
		st, after := e.state(t)
		checkState(t, st, stored, time.Now())
		if !isClosed(before) {
			t.Error("channel handed out before the change is still open")
		}
		if isClosed(after) {
			t.Error("channel handed out after the change is already closed")
		}

		// A reader that took the channel before the change and looks only
		// afterwards still sees it closed: the signal cannot be missed.
		e.put(heldBy("c", 3))
		synctest.Wait()
		select {
		case <-after:
		default:
			t.Error("late reader missed the change")
		}
	})
}

func TestObserverObservedAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newObserverEnv(t)
		rec := heldBy("a", 1)
		e.put(rec)
		e.run(t)
		synctest.Wait()

		time.Sleep(3 * time.Second)
		rec.RenewTime = rec.RenewTime.Add(3 * time.Second) // a renewal
		renewed := e.put(rec)
		changedAt := time.Now()
		st, ch := e.state(t)
		checkState(t, st, renewed, changedAt)

		// Writes that leave the record alone (labels, annotations, an
		// identical object) bring a new snapshot and a signal, but do not
		// restart the expiry timer.
		for i, mutate := range []func(*coordinationv1.Lease){
			func(l *coordinationv1.Lease) { l.Labels = map[string]string{"team": "x"} },
			func(l *coordinationv1.Lease) { l.Annotations = map[string]string{"note": "y"} },
			func(*coordinationv1.Lease) {},
			func(l *coordinationv1.Lease) { // sub-microsecond: not representable on the wire
				l.Spec.RenewTime = &metav1.MicroTime{Time: rec.RenewTime.Add(999 * time.Nanosecond)}
			},
		} {
			time.Sleep(2 * time.Second)
			stored := e.put(rec, mutate)
			var next <-chan struct{}
			st, next = e.state(t)
			if !isClosed(ch) {
				t.Errorf("write %d: no change signal for a new version", i)
			}
			ch = next
			checkState(t, st, stored, changedAt)
		}
	})

	fields := []struct {
		name   string
		change func(*lease.Record)
	}{
		{"Holder", func(r *lease.Record) { r.Holder = "b" }},
		{"LeaseDuration", func(r *lease.Record) { r.LeaseDuration = 30 * time.Second }},
		{"AcquireTime", func(r *lease.Record) { r.AcquireTime = r.AcquireTime.Add(time.Microsecond) }},
		{"RenewTime", func(r *lease.Record) { r.RenewTime = r.RenewTime.Add(time.Microsecond) }},
		{"Transitions", func(r *lease.Record) { r.Transitions++ }},
		{"PreferredHolder", func(r *lease.Record) { r.PreferredHolder = "b" }},
		{"Strategy", func(r *lease.Record) { r.Strategy = coordinationv1.OldestEmulationVersion }},
		{"released", func(r *lease.Record) { *r = r.Released(r.RenewTime) }},
	}
	for _, f := range fields {
		t.Run("change of "+f.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newObserverEnv(t)
				rec := heldBy("a", 1)
				e.put(rec)
				e.run(t)
				synctest.Wait()
				time.Sleep(5 * time.Second)
				f.change(&rec)
				stored := e.put(rec)
				st, _ := e.state(t)
				checkState(t, st, stored, time.Now())
			})
		})
	}
}

func TestObserverDeleteAndRecreate(t *testing.T) {
	t.Run("through the watch", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			rec := heldBy("a", 1)
			first := e.put(rec)
			e.run(t)
			_, ch := e.state(t)

			time.Sleep(2 * time.Second)
			e.srv.Delete("ns", "lock")
			st, ch2 := e.state(t)
			if !isClosed(ch) {
				t.Error("no change signal for the deletion")
			}
			checkState(t, st, nil, time.Now())

			// The same record again, in a new object: a new incarnation.
			time.Sleep(2 * time.Second)
			second := e.put(rec)
			if second.UID == first.UID {
				t.Fatalf("fake server reused UID %s", second.UID)
			}
			st, _ = e.state(t)
			if !isClosed(ch2) {
				t.Error("no change signal for the re-creation")
			}
			checkState(t, st, second, time.Now())
			if gets := e.srv.Count("get"); gets != 1 {
				t.Errorf("%d reads, want only the initial one", gets)
			}
		})
	})

	for _, compact := range []bool{false, true} {
		t.Run("while the watch is down, compacted "+strconv.FormatBool(compact), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newObserverEnv(t)
				rec := heldBy("a", 1)
				e.put(rec)
				e.run(t)
				synctest.Wait()

				e.proxy.holdWatches()
				e.srv.CloseWatches()
				synctest.Wait()
				time.Sleep(2 * time.Second)
				e.srv.Delete("ns", "lock")
				second := e.put(rec) // identical record, new UID
				if compact {
					e.srv.Compact()
				}
				e.proxy.releaseWatches()
				st, _ := e.state(t)
				checkState(t, st, second, time.Now())
				wantGets := 1
				if compact {
					wantGets = 2 // 410 Gone: read again
				}
				if gets := e.srv.Count("get"); gets != wantGets {
					t.Errorf("%d reads, want %d", gets, wantGets)
				}
			})
		})
	}
}

// TestObserverDeletedWhileWatchDownAndCompacted: the Lease is deleted while
// the watch is down, and the history holding the deletion is compacted
// away before the watch comes back (an apiserver outage longer than etcd's
// compaction interval, or a watch cache that has moved on).
func TestObserverDeletedWhileWatchDownAndCompacted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newObserverEnv(t)
		e.proxy.mu.Lock()
		e.proxy.getLimit = 50 // stop a runaway loop instead of hanging the test
		e.proxy.mu.Unlock()
		e.put(heldBy("a", 1))
		e.run(t)
		synctest.Wait()

		e.proxy.holdWatches()
		e.srv.CloseWatches()
		synctest.Wait()
		time.Sleep(2 * time.Second)
		e.srv.Delete("ns", "lock")
		e.srv.Compact()
		e.proxy.releaseWatches()
		st, _ := e.state(t)
		if e.proxy.ranAway() {
			t.Errorf("Observer spun through %d reads and %d watches without waiting", e.srv.Count("get"), e.srv.Count("watch"))
		}
		checkState(t, st, nil, time.Now())
	})
}

func TestObserverWatchReestablished(t *testing.T) {
	t.Run("after CloseWatches, without a new read", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1))
			e.run(t)
			_, ch := e.state(t)
			for range 3 {
				e.srv.CloseWatches()
				synctest.Wait()
			}
			st, ch2 := e.state(t)
			if isClosed(ch) {
				t.Error("reconnecting the watch signalled a change")
			}
			checkState(t, st, stored, time.Now())
			want := []string{stored.ResourceVersion, stored.ResourceVersion, stored.ResourceVersion, stored.ResourceVersion}
			if got := e.proxy.watchedFrom(); !slices.Equal(got, want) {
				t.Errorf("watches opened from %q, want %q", got, want)
			}
			if gets := e.srv.Count("get"); gets != 1 {
				t.Errorf("%d reads, want 1", gets)
			}

			time.Sleep(time.Second)
			changed := e.put(heldBy("b", 2))
			st, _ = e.state(t)
			if !isClosed(ch2) {
				t.Error("no signal for a change after reconnecting")
			}
			checkState(t, st, changed, time.Now())
		})
	})

	t.Run("changes while closed are replayed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1))
			e.run(t)
			synctest.Wait()

			e.proxy.holdWatches()
			e.srv.CloseWatches()
			synctest.Wait()
			time.Sleep(time.Second)
			e.put(heldBy("b", 2))
			last := e.put(heldBy("c", 3))
			e.proxy.releaseWatches()
			st, _ := e.state(t)
			checkState(t, st, last, time.Now())
			if got := e.proxy.watchedFrom(); len(got) != 2 || got[1] != stored.ResourceVersion {
				t.Errorf("watches opened from %q, want the second from %s", got, stored.ResourceVersion)
			}
			if gets := e.srv.Count("get"); gets != 1 {
				t.Errorf("%d reads, want 1", gets)
			}
		})
	})

	t.Run("after 410 Gone from the watch request", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1))
			e.run(t)
			synctest.Wait()

			e.proxy.holdWatches()
			e.srv.CloseWatches()
			synctest.Wait()
			time.Sleep(time.Second)
			changed := e.put(heldBy("b", 2))
			e.srv.Compact()
			e.proxy.releaseWatches()
			st, _ := e.state(t)
			checkState(t, st, changed, time.Now())
			want := []string{stored.ResourceVersion, stored.ResourceVersion, changed.ResourceVersion}
			if got := e.proxy.watchedFrom(); !slices.Equal(got, want) {
				t.Errorf("watches opened from %q, want %q (re-read after 410)", got, want)
			}
			if gets := e.srv.Count("get"); gets != 2 {
				t.Errorf("%d reads, want 2", gets)
			}

			// The new watch works.
			time.Sleep(time.Second)
			later := e.put(heldBy("c", 3))
			st, _ = e.state(t)
			checkState(t, st, later, time.Now())
		})
	})

	t.Run("after a 410 error event", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1))
			e.run(t)
			_, ch := e.state(t)

			gone := watch.NewFakeWithChanSize(1, false)
			gone.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired,
				Message: "too old resource version: 101 (150)"})
			e.proxy.prepareWatch(gone)
			e.srv.CloseWatches()
			st, _ := e.state(t)
			if isClosed(ch) {
				t.Errorf("410 was published as a change (Err %v)", st.Err)
			}
			checkState(t, st, stored, time.Now())
			if gets := e.srv.Count("get"); gets != 2 {
				t.Errorf("%d reads, want 2 (re-read after 410)", gets)
			}
			if !gone.IsStopped() {
				t.Error("the failed watch was not stopped")
			}
			time.Sleep(time.Second)
			later := e.put(heldBy("b", 2))
			st, _ = e.state(t)
			checkState(t, st, later, time.Now())
		})
	})
}

func TestObserverOffer(t *testing.T) {
	t.Run("older and equal snapshots ignored", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			old := lease.NewSnapshot(e.put(heldBy("a", 1)))
			e.run(t)
			synctest.Wait()
			time.Sleep(time.Second)
			current := e.put(heldBy("b", 2))
			observedAt := time.Now()
			_, ch := e.state(t)

			time.Sleep(time.Second)
			e.obs.Offer(old)
			e.obs.Offer(lease.NewSnapshot(current))
			st, ch2 := e.obs.State()
			if isClosed(ch) || ch2 != ch {
				t.Error("offering a known or older snapshot signalled a change")
			}
			checkState(t, st, current, observedAt)
		})
	})

	t.Run("newer snapshot applied at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			e.put(heldBy("a", 1))
			e.run(t)
			_, ch := e.state(t)

			time.Sleep(time.Second)
			cur := e.srv.Lease("ns", "lock")
			ahead := cur.DeepCopy()
			ahead.ResourceVersion = "100000" // newer than anything the server will write here
			ahead.Spec = heldBy("me", 2).ToSpec()
			e.obs.Offer(lease.NewSnapshot(ahead))
			st, _ := e.obs.State() // no Wait: Offer is synchronous
			if !isClosed(ch) {
				t.Error("no change signal for an offered newer snapshot")
			}
			checkState(t, st, ahead, time.Now())

			// The watch then delivers versions older than the offer:
			// ignored.
			time.Sleep(time.Second)
			e.put(heldBy("other", 3))
			st, _ = e.state(t)
			checkState(t, st, ahead, time.Now().Add(-time.Second))
		})
	})

	t.Run("older snapshot after deletion ignored", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			old := lease.NewSnapshot(e.put(heldBy("a", 1)))
			e.run(t)
			synctest.Wait()
			e.srv.Delete("ns", "lock")
			st, ch := e.state(t)
			deletedAt := st.ObservedAt
			time.Sleep(time.Second)
			e.obs.Offer(old)
			st, _ = e.obs.State()
			if isClosed(ch) {
				t.Error("offering a pre-deletion snapshot signalled a change")
			}
			checkState(t, st, nil, deletedAt)
		})
	})

	t.Run("snapshot older than a deletion ignored", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1))
			e.run(t)
			synctest.Wait()
			// The resourceVersion counter is global, as in etcd: a write
			// to another Lease moves it on. A snapshot of ns/lock at that
			// version is newer than anything the watch delivered, but older
			// than the deletion that follows.
			other := e.srv.Put(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other"}})
			late := stored.DeepCopy()
			late.ResourceVersion = other.ResourceVersion
			e.srv.Delete("ns", "lock")
			st, ch := e.state(t)
			checkState(t, st, nil, time.Now())
			e.obs.Offer(lease.NewSnapshot(late))
			st, _ = e.obs.State()
			if isClosed(ch) {
				t.Error("a snapshot older than the deletion signalled a change")
			}
			checkState(t, st, nil, time.Now())
		})
	})

	t.Run("before Run", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1))
			_, ch := e.obs.State()
			offeredAt := time.Now()
			e.obs.Offer(lease.NewSnapshot(stored))
			st, ch2 := e.obs.State()
			if !isClosed(ch) {
				t.Error("no change signal for the first snapshot")
			}
			checkState(t, st, stored, offeredAt)

			// Run reads the same version: nothing new.
			time.Sleep(time.Second)
			e.run(t)
			st, _ = e.state(t)
			if isClosed(ch2) {
				t.Error("the initial read of an already offered version signalled a change")
			}
			checkState(t, st, stored, offeredAt)
		})
	})
}

func TestObserverErrors(t *testing.T) {
	t.Run("initial read fails, then recovers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1))
			e.srv.Fail("get", func(string) error { return apierrors.NewServiceUnavailable("etcd is down") })
			_, ch := e.obs.State()
			e.run(t)
			st, ch := waitSignal(t, e, ch)
			if st.Synced || st.Lease != nil {
				t.Errorf("State after a failed first read: Synced %t, Lease %v", st.Synced, st.Lease)
			}
			if !errors.Is(st.Err, lease.ErrUnavailable) || lease.Permanent(st.Err) {
				t.Errorf("State.Err = %v, want ErrUnavailable, transient", st.Err)
			}

			// Retried every obsRetry, the error staying published.
			time.Sleep(obsRetry - time.Nanosecond)
			if n := afterWait(e.srv.Count, "get"); n != 1 {
				t.Errorf("%d reads before the retry interval passed, want 1", n)
			}
			time.Sleep(time.Nanosecond)
			if n := afterWait(e.srv.Count, "get"); n != 2 {
				t.Errorf("%d reads after one retry interval, want 2", n)
			}
			st, ch = e.obs.State()
			if st.Synced || !errors.Is(st.Err, lease.ErrUnavailable) {
				t.Errorf("State after a second failed read: Synced %t, Err %v", st.Synced, st.Err)
			}

			e.srv.Fail("get", nil)
			time.Sleep(obsRetry)
			st, _ = waitSignal(t, e, ch)
			checkState(t, st, stored, time.Now())
		})
	})

	for _, tc := range []struct {
		name string
		verb string
		err  error
		want error
	}{
		{"watch forbidden", "watch", apierrors.NewForbidden(leasesGR, "lock", errors.New(`User "sa" cannot watch resource "leases"`)), lease.ErrForbidden},
		{"get forbidden", "get", apierrors.NewForbidden(leasesGR, "lock", errors.New(`User "sa" cannot get resource "leases"`)), lease.ErrForbidden},
		{"get unauthorized", "get", apierrors.NewUnauthorized("token expired"), lease.ErrUnauthorized},
		{"watch invalid", "watch", apierrors.NewBadRequest("bad field selector"), lease.ErrInvalid},
	} {
		t.Run(tc.name+" ends Run", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newObserverEnv(t)
				stored := e.put(heldBy("a", 1))
				e.srv.Fail(tc.verb, func(string) error { return tc.err })
				_, ch := e.obs.State()
				start := time.Now()
				e.run(t)
				runErr := e.ended(t)
				if !errors.Is(runErr, tc.want) || !lease.Permanent(runErr) {
					t.Errorf("Run = %v, want %v (permanent)", runErr, tc.want)
				}
				if !time.Now().Equal(start) {
					t.Errorf("Run retried for %v before giving up", time.Since(start))
				}
				var apiErr *lease.APIError
				if !errors.As(runErr, &apiErr) || apiErr.Verb != tc.verb {
					t.Errorf("Run's error does not name the %s verb: %v", tc.verb, runErr)
				}
				st, _ := waitSignal(t, e, ch)
				if st.Err != runErr {
					t.Errorf("State.Err = %v, want Run's error published", st.Err)
				}
				if tc.verb == "watch" { // the read succeeded
					if !st.Synced || st.Lease == nil || st.Lease.ResourceVersion != stored.ResourceVersion {
						t.Errorf("State after a successful read: %+v", st)
					}
				} else if st.Synced || st.Lease != nil {
					t.Errorf("State after a failed first read: Synced %t, Lease %v", st.Synced, st.Lease)
				}
			})
		})
	}

	t.Run("forbidden error event ends Run", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			e.put(heldBy("a", 1))
			e.run(t)
			synctest.Wait()
			denied := watch.NewFakeWithChanSize(1, false)
			denied.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 403, Reason: metav1.StatusReasonForbidden, Message: "RBAC changed"})
			e.proxy.prepareWatch(denied)
			e.srv.CloseWatches()
			runErr := e.ended(t)
			var apiErr *lease.APIError
			if !errors.Is(runErr, lease.ErrForbidden) || !errors.As(runErr, &apiErr) || apiErr.Verb != "watch" {
				t.Errorf("Run = %v, want ErrForbidden naming the watch verb", runErr)
			}
			if st, _ := e.obs.State(); st.Err != runErr {
				t.Errorf("State.Err = %v, want Run's error", st.Err)
			}
		})
	})

	for _, tc := range []struct {
		name  string
		event *metav1.Status // nil: an error event without a Status
		want  error
	}{
		{"error event without status", nil, nil},
		{"error event 500", &metav1.Status{Status: metav1.StatusFailure, Code: 500, Reason: metav1.StatusReasonInternalError, Message: "boom"}, lease.ErrUnavailable},
		{"error event 429", &metav1.Status{Status: metav1.StatusFailure, Code: 429, Reason: metav1.StatusReasonTooManyRequests, Message: "slow down"}, lease.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newObserverEnv(t)
				stored := e.put(heldBy("a", 1))
				e.run(t)
				_, ch := e.state(t)

				broken := watch.NewFakeWithChanSize(1, false)
				if tc.event == nil {
					broken.Error(nil)
				} else {
					broken.Error(tc.event)
				}
				e.proxy.prepareWatch(broken)
				e.srv.CloseWatches()
				st, ch := waitSignal(t, e, ch)
				if st.Err == nil {
					t.Fatal("State.Err = nil after an error event")
				}
				if tc.want != nil && !errors.Is(st.Err, tc.want) {
					t.Errorf("State.Err = %v, want %v", st.Err, tc.want)
				}
				if st.Lease == nil || st.Lease.ResourceVersion != stored.ResourceVersion {
					t.Errorf("an error lost the last known lease: %+v", st.Lease)
				}
				time.Sleep(obsRetry)
				st, _ = waitSignal(t, e, ch)
				checkState(t, st, stored, st.ObservedAt)
			})
		})
	}

	t.Run("absent lease is not an error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			e.run(t)
			st, _ := e.state(t)
			checkState(t, st, nil, time.Now())
		})
	})
}

// waitSignal waits until the Observer is idle, requires ch to have been
// closed, and returns the new state and channel.
func waitSignal(t *testing.T, e *observerEnv, ch <-chan struct{}) (holder.State, <-chan struct{}) {
	t.Helper()
	synctest.Wait()
	if !isClosed(ch) {
		t.Fatal("no change signal")
	}
	return e.obs.State()
}

// afterWait waits until the bubble is idle and returns count(verb).
func afterWait(count func(string) int, verb string) int {
	synctest.Wait()
	return count(verb)
}

func TestObserverResync(t *testing.T) {
	t.Run("re-reads and re-watches", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1))
			e.run(t)
			st0, ch := e.state(t)
			e.obs.Resync()
			e.obs.Resync() // coalesced, never blocks
			st, _ := e.state(t)
			if isClosed(ch) {
				t.Error("a resync that found nothing new signalled a change")
			}
			checkState(t, st, stored, st0.ObservedAt)
			if gets := e.srv.Count("get"); gets != 2 && gets != 3 {
				t.Errorf("%d reads, want 2 or 3", gets)
			}
			if watches := e.srv.Count("watch"); watches < 2 {
				t.Errorf("%d watches, want a new one", watches)
			}
		})
	})

	t.Run("cuts the retry wait short", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newObserverEnv(t)
			stored := e.put(heldBy("a", 1))
			e.srv.Fail("get", func(string) error { return apierrors.NewTooManyRequests("slow down", 1) })
			e.run(t)
			st, ch := e.state(t)
			if !errors.Is(st.Err, lease.ErrUnavailable) {
				t.Fatalf("State.Err = %v, want ErrUnavailable", st.Err)
			}
			start := time.Now()
			e.srv.Fail("get", nil)
			e.obs.Resync()
			st, _ = waitSignal(t, e, ch)
			if !time.Now().Equal(start) {
				t.Errorf("recovered after %v, want at once", time.Since(start))
			}
			checkState(t, st, stored, start)
		})
	})
}

func TestObserverRunReturnsOnCancel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*observerEnv)
	}{
		{"while watching", func(*observerEnv) {}},
		{"while waiting to retry", func(e *observerEnv) {
			e.srv.Fail("get", func(string) error { return apierrors.NewServiceUnavailable("down") })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newObserverEnv(t)
				e.put(heldBy("a", 1))
				tc.setup(e)
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				go func() { done <- e.obs.Run(ctx) }()
				synctest.Wait()
				start := time.Now()
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Errorf("Run = %v, want context.Canceled", err)
				}
				if !time.Now().Equal(start) {
					t.Errorf("Run took %v to return after cancellation", time.Since(start))
				}
			})
		})
	}
}

func TestObserverUsesInjectedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fakelease.New()
		c, err := lease.NewClient(srv, "ns", "lock")
		if err != nil {
			t.Fatal(err)
		}
		fake := clocktesting.NewFakeClock(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
		obs := holder.NewObserver(c, fake, obsRetry)
		if obs.Client() != c {
			t.Error("Client() does not return the client given")
		}
		srv.Fail("get", func(string) error { return apierrors.NewServiceUnavailable("down") })
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- obs.Run(ctx) }()
		defer func() {
			cancel()
			<-done
		}()
		synctest.Wait()

		// The retry waits on the injected clock, not on the bubble's.
		srv.Fail("get", nil)
		time.Sleep(time.Hour)
		synctest.Wait()
		if st, _ := obs.State(); st.Synced {
			t.Fatal("retried on the real clock")
		}
		fake.Step(obsRetry)
		synctest.Wait()
		st, _ := obs.State()
		if !st.Synced || st.Err != nil {
			t.Fatalf("State after the fake clock stepped: %+v", st)
		}
		if want := fake.Now(); !st.ObservedAt.Equal(want) {
			t.Errorf("ObservedAt = %v, want the injected clock's %v", st.ObservedAt, want)
		}
	})
}
