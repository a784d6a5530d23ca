package shard_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/leasehold/leasehold/internal/fakelease"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/shard"
)

const ns, group = "default", "workers"

// stopDelay is how long shard work takes to return after its context ends.
const stopDelay = 100 * time.Millisecond

// runLog records every run of every shard, in (virtual) time.
type runLog struct {
	mu   sync.Mutex
	runs []runRec
}

type runRec struct {
	member     string
	shard      int
	token      lease.Token
	start, end time.Time
}

// fn returns the shard work of member: it logs the run and waits for ctx.
func (l *runLog) fn(member string) shard.Func {
	return func(ctx context.Context, s int, tok lease.Token) error {
		l.mu.Lock()
		l.runs = append(l.runs, runRec{member: member, shard: s, token: tok, start: time.Now()})
		i := len(l.runs) - 1
		l.mu.Unlock()
		<-ctx.Done()
		time.Sleep(stopDelay) // work takes a while to stop: its claim must outlive it
		l.mu.Lock()
		l.runs[i].end = time.Now()
		l.mu.Unlock()
		return nil
	}
}

// check fails the test if two runs of one shard overlap, or if a shard's
// tokens do not grow with its runs.
func (l *runLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	byShard := map[int][]runRec{}
	for _, r := range l.runs {
		byShard[r.shard] = append(byShard[r.shard], r)
	}
	now := time.Now()
	for s, rs := range byShard {
		slices.SortFunc(rs, func(a, b runRec) int { return a.start.Compare(b.start) })
		for i := range rs {
			endI := rs[i].end
			if endI.IsZero() {
				endI = now
			}
			if i+1 < len(rs) {
				next := rs[i+1]
				if next.start.Before(endI) {
					t.Errorf("shard %d owned twice: %s from %v to %v (token %v) and %s from %v (token %v)", s, rs[i].member, rs[i].start, endI, rs[i].token, next.member, next.start, next.token)
				}
				if next.token <= rs[i].token {
					t.Errorf("shard %d token did not grow: %v (%s) then %v (%s)", s, rs[i].token, rs[i].member, next.token, next.member)
				}
			}
		}
	}
}

// owners returns who runs each shard now ("" none, "!" more than one).
func (l *runLog) owners(k int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, k)
	for _, r := range l.runs {
		if r.end.IsZero() {
			if out[r.shard] != "" {
				out[r.shard] = "!"
			} else {
				out[r.shard] = r.member
			}
		}
	}
	return out
}

// fleet runs members of one group on a fake API.
type fleet struct {
	t      *testing.T
	srv    *fakelease.Server
	k      int
	log    *runLog
	mod    func(*shard.Config)
	wg     sync.WaitGroup
	mu     sync.Mutex
	cancel map[string]context.CancelFunc
	groups map[string]*shard.Group
	errs   map[string]error
}

func newFleet(t *testing.T, k int, mod func(*shard.Config)) *fleet {
	f := &fleet{t: t, srv: fakelease.New(), k: k, log: &runLog{}, mod: mod,
		cancel: map[string]context.CancelFunc{}, groups: map[string]*shard.Group{}, errs: map[string]error{}}
	t.Cleanup(f.stopAll)
	return f
}

func config(srv *fakelease.Server, k int, id string) shard.Config {
	return shard.Config{
		Leases: srv, Namespace: ns, Name: group, Shards: k, Identity: id,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
	}
}

// leasesFor makes member id reach the API through leases (a cut, a slow or
// a frozen one); the others keep the fleet's server.
func (f *fleet) leasesFor(id string, leases coordinationv1client.LeasesGetter) {
	f.mod = func(c *shard.Config) {
		if c.Identity == id {
			c.Leases = leases
		}
	}
}

// startSettled starts members m0..m(n-1) and lets them settle (5s, in the
// bubble's time).
func (f *fleet) startSettled(n int) {
	f.t.Helper()
	for _, id := range ids(n) {
		f.start(id)
	}
	time.Sleep(5 * time.Second)
	synctest.Wait()
}

func (f *fleet) start(id string) *shard.Group {
	f.t.Helper()
	cfg := config(f.srv, f.k, id)
	if f.mod != nil {
		f.mod(&cfg)
	}
	g, err := shard.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.mu.Lock()
	f.cancel[id], f.groups[id] = cancel, g
	f.mu.Unlock()
	f.wg.Go(func() {
		err := g.Run(ctx, f.log.fn(id))
		f.mu.Lock()
		f.errs[id] = err
		f.mu.Unlock()
	})
	return g
}

func (f *fleet) stop(id string) {
	f.mu.Lock()
	cancel := f.cancel[id]
	delete(f.cancel, id)
	f.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (f *fleet) stopAll() {
	f.mu.Lock()
	for _, c := range f.cancel {
		c()
	}
	f.cancel = map[string]context.CancelFunc{}
	f.mu.Unlock()
	f.wg.Wait()
}

// counts returns how many shards each member runs now, and fails on a shard
// run by nobody or twice.
func (f *fleet) counts(t *testing.T) map[string]int {
	t.Helper()
	c := map[string]int{}
	for s, o := range f.log.owners(f.k) {
		switch o {
		case "":
			t.Errorf("shard %d is run by nobody", s)
		case "!":
			t.Errorf("shard %d is run by two members", s)
		default:
			c[o]++
		}
	}
	return c
}

func imbalance(c map[string]int) int {
	lo, hi := -1, 0
	for _, n := range c {
		hi = max(hi, n)
		if lo < 0 || n < lo {
			lo = n
		}
	}
	return hi - lo
}

func ids(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("m%d", i))
	}
	return out
}

var errUnavailable = apierrors.NewServiceUnavailable("injected: the apiserver cannot be reached")

// cutLeases is one member's connection to the API, which a test can cut:
// then every request fails as if the apiserver were unreachable.
type cutLeases struct {
	srv coordinationv1client.LeasesGetter
	cut atomic.Bool
}

func (c *cutLeases) Leases(namespace string) coordinationv1client.LeaseInterface {
	return &cutLeaseAPI{LeaseInterface: c.srv.Leases(namespace), c: c}
}

type cutLeaseAPI struct {
	coordinationv1client.LeaseInterface
	c *cutLeases
}

func (a *cutLeaseAPI) Update(ctx context.Context, l *coordinationv1.Lease, o metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	if a.c.cut.Load() {
		return nil, errUnavailable
	}
	return a.LeaseInterface.Update(ctx, l, o)
}

func (a *cutLeaseAPI) Get(ctx context.Context, name string, o metav1.GetOptions) (*coordinationv1.Lease, error) {
	if a.c.cut.Load() {
		return nil, errUnavailable
	}
	return a.LeaseInterface.Get(ctx, name, o)
}

// frozenWatch holds back the events of a member's watch while frozen is
// set, as a slow or stuck watch would: the member's view goes stale while
// its writes still get through.
type frozenWatch struct {
	srv    coordinationv1client.LeasesGetter
	frozen atomic.Bool
}

func (f *frozenWatch) Leases(namespace string) coordinationv1client.LeaseInterface {
	return &frozenWatchAPI{LeaseInterface: f.srv.Leases(namespace), f: f}
}

type frozenWatchAPI struct {
	coordinationv1client.LeaseInterface
	f *frozenWatch
}

func (a *frozenWatchAPI) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := a.LeaseInterface.Watch(ctx, o)
	if err != nil {
		return nil, err
	}
	out := &heldWatch{inner: w, ch: make(chan watch.Event), stop: make(chan struct{})}
	out.wg.Go(func() { out.forward(a.f) })
	return out, nil
}

type heldWatch struct {
	inner watch.Interface
	ch    chan watch.Event
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func (h *heldWatch) forward(f *frozenWatch) {
	defer close(h.ch)
	var held []watch.Event
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	in := h.inner.ResultChan()
	for {
		var out chan watch.Event
		var next watch.Event
		if len(held) > 0 && !f.frozen.Load() {
			out, next = h.ch, held[0]
		}
		select {
		case <-h.stop:
			return
		case ev, ok := <-in:
			if !ok {
				return
			}
			held = append(held, ev)
		case out <- next:
			held = held[1:]
		case <-tick.C:
		}
	}
}

func (h *heldWatch) Stop() {
	h.once.Do(func() { close(h.stop) })
	h.inner.Stop()
}

func (h *heldWatch) ResultChan() <-chan watch.Event { return h.ch }

// slowLeases delays every update by delay, as a busy apiserver does: a
// write lands delay after it was sent.
type slowLeases struct {
	srv   coordinationv1client.LeasesGetter
	delay time.Duration
}

func (s *slowLeases) Leases(namespace string) coordinationv1client.LeaseInterface {
	return &slowLeaseAPI{LeaseInterface: s.srv.Leases(namespace), delay: s.delay}
}

type slowLeaseAPI struct {
	coordinationv1client.LeaseInterface
	delay time.Duration
}

func (a *slowLeaseAPI) Update(ctx context.Context, l *coordinationv1.Lease, o metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	time.Sleep(a.delay)
	return a.LeaseInterface.Update(ctx, l, o)
}
