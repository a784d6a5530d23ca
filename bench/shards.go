package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/shard"
)

// shardsResult is the JSON line of the shards benchmark, one per
// implementation, shard count K and member count N.
type shardsResult struct {
	Bench   string `json:"bench"`
	Impl    string `json:"impl"`
	Shards  int    `json:"shards"`
	Members int    `json:"members"`
	// Imbalance is max − min shards owned over the N members once settled.
	Imbalance int `json:"imbalance"`
	// JoinMoved: shards that changed owner when an (N+1)th member joined;
	// JoinServeP99MS: p99 over those shards of join -> the new owner runs it.
	JoinMoved      int     `json:"join_moved"`
	JoinServeP99MS float64 `json:"join_serve_p99_ms"`
	// LeaveMoved, LeaveServeP99MS: the same when that member left gracefully.
	LeaveMoved      int     `json:"leave_moved"`
	LeaveServeP99MS float64 `json:"leave_serve_p99_ms"`
	// CrashServeExcessP99MS: a member is cut off from the API and stops (a
	// crash); p99 over its shards of (another member runs the shard) −
	// (the bench's own watch last saw the record that shard's ownership
	// depends on change + LeaseDuration). Absent when N = 1.
	CrashServeExcessP99MS *float64 `json:"crash_serve_excess_p99_ms,omitempty"`
	// WritesPerS and FollowerReadsPerS: API writes (create, update) of all
	// members, and reads (get, list) per member, per second in steady state.
	WritesPerS        float64 `json:"writes_per_s"`
	FollowerReadsPerS float64 `json:"follower_reads_per_s"`
	LeaseDurationMS   float64 `json:"lease_duration_ms"`
	// Unsettled counts steps after which some shard ran nowhere by the
	// deadline (the baseline under the load of its electors); omitted at 0.
	Unsettled     int     `json:"unsettled,omitempty"`
	RetryPeriodMS float64 `json:"retry_period_ms"`
}

// shardRuns records who runs each shard, in this process.
type shardRuns struct {
	mu      sync.Mutex
	owner   []string
	started []time.Time
	double  int // a shard started while another member still ran it
	changed chan struct{}
}

func newShardRuns(k int) *shardRuns {
	return &shardRuns{owner: make([]string, k), started: make([]time.Time, k), changed: make(chan struct{})}
}

func (r *shardRuns) start(s int, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner[s] != "" {
		r.double++
	}
	r.owner[s], r.started[s] = id, time.Now()
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *shardRuns) stop(s int, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner[s] == id {
		r.owner[s] = ""
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *shardRuns) doubles() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.double
}

func (r *shardRuns) snapshot() ([]string, []time.Time, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.owner), slices.Clone(r.started), r.changed
}

// settled reports whether every shard runs on one of members and the
// counts differ by at most maxImbalance.
func settled(owners []string, members []string, maxImbalance int) bool {
	c := map[string]int{}
	for _, o := range owners {
		if o == "" || !slices.Contains(members, o) {
			return false
		}
		c[o]++
	}
	return imbalanceOf(c, members) <= maxImbalance
}

func imbalanceOf(c map[string]int, members []string) int {
	lo, hi := -1, 0
	for _, m := range members {
		hi = max(hi, c[m])
		if lo < 0 || c[m] < lo {
			lo = c[m]
		}
	}
	return hi - lo
}

// apiCounter counts one member's requests and can cut it off from the API.
type apiCounter struct {
	reads, writes, watches atomic.Int64
	cut                    atomic.Bool
	next                   http.RoundTripper
}

func (c *apiCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("bench: member cut off from the API (crash)")
	}
	switch {
	case req.Method == http.MethodGet && req.URL.Query().Get("watch") == "true":
		c.watches.Add(1)
	case req.Method == http.MethodGet:
		c.reads.Add(1)
	default:
		c.writes.Add(1)
	}
	return c.next.RoundTrip(req)
}

// shardMember is one member of either implementation.
type shardMember struct {
	id     string
	api    *apiCounter
	cancel context.CancelFunc
	done   chan struct{}
}

// shardFleet runs members of one implementation in this process.
type shardFleet struct {
	b       *bench
	impl    string
	ns      string
	k       int
	runs    *shardRuns
	members map[string]*shardMember
	changes *lastChanges
	unwatch context.CancelFunc
	wg      sync.WaitGroup
}

func (b *bench) newShardFleet(ctx context.Context, impl string, k, n int) (*shardFleet, error) {
	ns := fmt.Sprintf("shards-%s-%d-%d", impl, k, n)
	if _, err := b.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", ns, err)
	}
	wctx, unwatch := context.WithCancel(ctx)
	f := &shardFleet{b: b, impl: impl, ns: ns, k: k, runs: newShardRuns(k), members: map[string]*shardMember{}, changes: newLastChanges(), unwatch: unwatch}
	f.wg.Go(func() { f.changes.run(wctx, b.cs, ns) })
	return f, nil
}

func (f *shardFleet) close() {
	for _, m := range f.members {
		m.cancel()
	}
	f.unwatch()
	f.wg.Wait()
}

func (f *shardFleet) start(id string) error {
	cfg := f.b.cp.Config()
	api := &apiCounter{}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { api.next = rt; return api }
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &shardMember{id: id, api: api, cancel: cancel, done: make(chan struct{})}
	f.members[id] = m
	t := f.b.o.timing
	switch f.impl {
	case "leasehold":
		g, err := shard.New(shard.Config{
			Leases: cs.CoordinationV1(), Namespace: f.ns, Name: "bench", Shards: f.k, Identity: id,
			LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
		})
		if err != nil {
			cancel()
			return err
		}
		f.wg.Go(func() {
			defer close(m.done)
			err := g.Run(ctx, func(ctx context.Context, s int, _ lease.Token) error {
				f.runs.start(s, id)
				<-ctx.Done()
				f.runs.stop(s, id)
				return nil
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				f.b.logf("shards %s: member %s: %v", f.impl, id, err)
			}
		})
	case "knative":
		var electors sync.WaitGroup
		for s := range f.k {
			le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
				Lock: &resourcelock.LeaseLock{
					LeaseMeta:  metav1.ObjectMeta{Namespace: f.ns, Name: fmt.Sprintf("bench-bucket-%d", s)},
					Client:     cs.CoordinationV1(),
					LockConfig: resourcelock.ResourceLockConfig{Identity: id},
				},
				LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
				ReleaseOnCancel: true,
				Callbacks: leaderelection.LeaderCallbacks{
					OnStartedLeading: func(context.Context) { f.runs.start(s, id) },
					OnStoppedLeading: func() { f.runs.stop(s, id) },
				},
			})
			if err != nil {
				cancel()
				return err
			}
			electors.Go(func() { le.Run(ctx) })
		}
		f.wg.Go(func() {
			electors.Wait()
			close(m.done)
		})
	}
	return nil
}

// stop ends a member gracefully (it releases) and waits for it.
func (f *shardFleet) stop(id string) {
	m := f.members[id]
	m.cancel()
	<-m.done
	delete(f.members, id)
}

// crash cuts a member off from the API, then stops it: nothing it writes
// after the cut lands, so the others must wait for its records to expire.
func (f *shardFleet) crash(id string) {
	m := f.members[id]
	m.api.cut.Store(true)
	m.cancel()
	<-m.done
	delete(f.members, id)
}

func (f *shardFleet) ids() []string {
	var out []string
	for id := range f.members {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// await waits until cond holds on the owners, or the timeout.
func (f *shardFleet) await(ctx context.Context, what string, timeout time.Duration, cond func([]string) bool) ([]string, []time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		owners, started, changed := f.runs.snapshot()
		if cond(owners) {
			return owners, started, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-deadline.C:
			return owners, started, fmt.Errorf("%s: not reached within %v", what, timeout)
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// lastChanges stamps, per Lease of a namespace and holder, the local time
// this process last saw its record change while it named that holder: for
// a holder that crashed, the moment from which a follower judges expiry.
type lastChanges struct {
	mu   sync.Mutex
	last map[string]time.Time
	rec  map[string]lease.Record
}

func newLastChanges() *lastChanges {
	return &lastChanges{last: map[string]time.Time{}, rec: map[string]lease.Record{}}
}

func (c *lastChanges) run(ctx context.Context, cs kubernetes.Interface, ns string) {
	for ctx.Err() == nil {
		w, err := cs.CoordinationV1().Leases(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			l, ok := ev.Object.(*coordinationv1.Lease)
			if !ok {
				continue
			}
			rec := lease.FromSpec(l.Spec)
			c.mu.Lock()
			if prev, ok := c.rec[l.Name]; !ok || !prev.Equal(rec) {
				c.rec[l.Name], c.last[l.Name+"/"+rec.Holder] = rec, time.Now()
			}
			c.mu.Unlock()
		}
		w.Stop()
	}
}

// at returns when the record of Lease name was last seen to change while it
// named holder.
func (c *lastChanges) at(name, holder string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.last[name+"/"+holder]
	return t, ok
}

// shards measures one (impl, K, N): balance, a join, a leave, a crash, and
// the steady-state API cost.
func (b *bench) shards(ctx context.Context, impl string, k, n int) (any, error) {
	f, err := b.newShardFleet(ctx, impl, k, n)
	if err != nil {
		return nil, err
	}
	defer f.close()
	t := b.o.timing
	r := shardsResult{Bench: "shards", Impl: impl, Shards: k, Members: n, LeaseDurationMS: ms(t.LeaseDuration), RetryPeriodMS: ms(t.RetryPeriod)}
	var members []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", impl, i)
		members = append(members, id)
		if err := f.start(id); err != nil {
			return nil, err
		}
	}
	// Knative-style buckets never rebalance: wait only until every shard runs.
	maxImb := 1
	if impl == "knative" {
		maxImb = k
	}
	owners, _, err := f.await(ctx, "every shard running, balanced", 3*t.LeaseDuration+30*time.Second, func(o []string) bool { return settled(o, members, maxImb) })
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, 2*t.RetryPeriod); err != nil { // let renewals and polling reach their steady rhythm
		return nil, err
	}
	owners, _, _ = f.runs.snapshot()
	counts := map[string]int{}
	for _, o := range owners {
		counts[o]++
	}
	r.Imbalance = imbalanceOf(counts, members)

	// Steady-state cost.
	window := 5 * t.RetryPeriod
	before := f.apiTotals()
	if err := sleepCtx(ctx, window); err != nil {
		return nil, err
	}
	after := f.apiTotals()
	r.WritesPerS = round3(float64(after.writes-before.writes) / window.Seconds())
	r.FollowerReadsPerS = round3(float64(after.reads-before.reads) / window.Seconds() / float64(n))
	b.logf("shards %s K=%d N=%d: imbalance %d (%v); %.1f writes/s, %.2f reads/s per member", impl, k, n, r.Imbalance, counts, r.WritesPerS, r.FollowerReadsPerS)

	// Join.
	joiner := fmt.Sprintf("%s-%d", impl, n)
	all := append(slices.Clone(members), joiner)
	joinAt := time.Now()
	if err := f.start(joiner); err != nil {
		return nil, err
	}
	var joined []string
	var started []time.Time
	if impl == "knative" {
		// Nothing moves to a new Knative member: wait a few retry periods to see.
		if err := sleepCtx(ctx, 3*t.RetryPeriod); err != nil {
			return nil, err
		}
		joined, started, _ = f.runs.snapshot()
	} else if joined, started, err = f.await(ctx, "join settled", 3*t.LeaseDuration, func(o []string) bool { return settled(o, all, 1) }); err != nil {
		return nil, err
	}
	var serve []time.Duration
	for s := range k {
		if joined[s] != owners[s] {
			r.JoinMoved++
			serve = append(serve, started[s].Sub(joinAt))
		}
	}
	r.JoinServeP99MS = summarize(serve).P99

	// Leave: the joiner leaves gracefully.
	leaveAt := time.Now()
	f.stop(joiner)
	left, started, err := f.await(ctx, "leave settled", 3*t.LeaseDuration, func(o []string) bool { return settled(o, members, maxImb) })
	if err != nil && impl == "knative" {
		// Buckets lost under the load of K electors per member: report it
		// and go on with what runs.
		b.logf("shards %s K=%d N=%d: WARNING: %v (owners %v)", impl, k, n, err, left)
		r.Unsettled++
	} else if err != nil {
		return nil, err
	}
	serve = nil
	for s := range k {
		if left[s] != joined[s] {
			r.LeaveMoved++
			serve = append(serve, started[s].Sub(leaveAt))
		}
	}
	r.LeaveServeP99MS = summarize(serve).P99
	b.logf("shards %s K=%d N=%d: join moved %d (p99 %.1f ms), leave moved %d (p99 %.1f ms)", impl, k, n, r.JoinMoved, r.JoinServeP99MS, r.LeaveMoved, r.LeaveServeP99MS)

	// Crash of the member owning most shards.
	if n >= 2 {
		victim := members[0]
		for _, m := range members {
			if countOf(left, m) > countOf(left, victim) {
				victim = m
			}
		}
		rest := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == victim })
		if err := sleepCtx(ctx, t.RetryPeriod/2); err != nil {
			return nil, err
		}
		f.crash(victim)
		after, started, err := f.await(ctx, "crash recovered", 3*t.LeaseDuration+10*time.Second, func(o []string) bool { return settled(o, rest, maxImb) })
		if err != nil && impl == "knative" {
			b.logf("shards %s K=%d N=%d: WARNING: %v", impl, k, n, err)
			r.Unsettled++
		} else if err != nil {
			return nil, err
		}
		var excess []time.Duration
		for s := range k {
			if left[s] != victim || after[s] == victim || after[s] == "" {
				continue
			}
			lname := fmt.Sprintf("bench-bucket-%d", s)
			if impl == "leasehold" {
				lname = "bench-" + victim
			}
			last, ok := f.changes.at(lname, victim)
			if !ok {
				return nil, fmt.Errorf("the bench's watch never saw Lease %s/%s", f.ns, lname)
			}
			excess = append(excess, started[s].Sub(last.Add(t.LeaseDuration)))
		}
		p99 := summarize(excess).P99
		r.CrashServeExcessP99MS = &p99
		b.logf("shards %s K=%d N=%d: crash of %s: %d shards served again, excess over LeaseDuration p99 %.1f ms", impl, k, n, victim, len(excess), p99)
	}
	if d := f.runs.doubles(); d > 0 {
		return nil, fmt.Errorf("%d shard starts while another member still ran the shard", d)
	}
	return r, nil
}

func countOf(owners []string, id string) int {
	n := 0
	for _, o := range owners {
		if o == id {
			n++
		}
	}
	return n
}

type apiTotals struct{ reads, writes int64 }

func (f *shardFleet) apiTotals() apiTotals {
	var t apiTotals
	for _, m := range f.members {
		t.reads += m.api.reads.Load()
		t.writes += m.api.writes.Load()
	}
	return t
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// shardConfigs parses "-shard-configs": "impl:K:N" items.
func parseShardConfigs(s string) ([]shardConfig, error) {
	var out []shardConfig
	for item := range strings.SplitSeq(s, ",") {
		var c shardConfig
		if _, err := fmt.Sscanf(strings.ReplaceAll(strings.TrimSpace(item), ":", " "), "%s %d %d", &c.impl, &c.k, &c.n); err != nil || (c.impl != "leasehold" && c.impl != "knative") || c.k < 1 || c.n < 1 {
			return nil, fmt.Errorf("-shard-configs: %q is not impl:K:N with impl leasehold or knative", item)
		}
		out = append(out, c)
	}
	return out, nil
}

type shardConfig struct {
	impl string
	k, n int
}

// defaultShardConfigs: Leasehold at every K and N of the targets, and the
// Knative-style baseline at K = 16 and 256 with the same member counts.
const defaultShardConfigs = "leasehold:16:1,leasehold:16:3,leasehold:16:10,leasehold:256:1,leasehold:256:3,leasehold:256:10,leasehold:1024:1,leasehold:1024:3,leasehold:1024:10," +
	"knative:16:1,knative:16:3,knative:16:10,knative:256:1,knative:256:3,knative:256:10"
