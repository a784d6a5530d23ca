package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/lock"
)

// lockUncontendedResult is the JSON line of lock-uncontended.
type lockUncontendedResult struct {
	Bench string `json:"bench"`
	Impl  string `json:"impl"`
	latency
	RequestsPerOp float64 `json:"requests_per_op"`
}

// lockHandoverResult is the JSON line of lock-handover for one waiter count.
type lockHandoverResult struct {
	Bench   string `json:"bench"`
	Impl    string `json:"impl"`
	Waiters int    `json:"waiters"`
	latency
	RequestsPerHandover float64 `json:"requests_per_handover"`
	UpdatesPerHandover  float64 `json:"updates_per_handover"`
	// WritesPerHandover counts every write: updates (PUT) plus creates and
	// deletes (a waiter's queue entry).
	WritesPerHandover    float64 `json:"writes_per_handover"`
	ConflictsPerHandover float64 `json:"conflicts_per_handover"`
	AttemptFailures      int64   `json:"attempt_failures,omitempty"`
	// Overtakes counts acquisitions made while another waiter that had
	// started waiting earlier was still waiting (waiters that start
	// together, before the first hand-over, are not ordered).
	Overtakes int `json:"overtakes"`
	// ApiserverRPS is the API requests per second of all waiters and
	// holders together while hand-overs were measured.
	ApiserverRPS float64 `json:"apiserver_rps"`
}

// queueOrder tracks which Lock calls are waiting and since when, to count
// overtakes: an acquisition while an earlier waiter still waits.
type queueOrder struct {
	mu      sync.Mutex
	waiting map[int]waitStart // waiter index -> its current Lock call
	n       int
}

type waitStart struct {
	at      int64 // candidate.Mono at the Lock call
	initial bool  // started before the first hand-over
}

func (q *queueOrder) begin(i int, initial bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.waiting == nil {
		q.waiting = map[int]waitStart{}
	}
	q.waiting[i] = waitStart{at: candidate.Mono(), initial: initial}
}

// acquired ends waiter i's wait and counts it as an overtake when another
// waiter started earlier and still waits.
func (q *queueOrder) acquired(i int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	me := q.waiting[i]
	delete(q.waiting, i)
	for _, o := range q.waiting {
		if o.at < me.at && !(o.initial && me.initial) {
			q.n++
			return
		}
	}
}

func (q *queueOrder) overtakes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// reqCounter counts the API requests of a clientset (rest.Config.Wrap).
type reqCounter struct {
	total, watch, update, write atomic.Int64
}

func (c *reqCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		c.total.Add(1)
		switch w := r.URL.Query().Get("watch"); {
		case w == "true" || w == "1":
			c.watch.Add(1)
		case r.Method == http.MethodPut:
			c.update.Add(1)
			c.write.Add(1)
		case r.Method == http.MethodPost, r.Method == http.MethodDelete:
			c.write.Add(1)
		}
		return rt.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// lockEnv is a clientset whose requests are counted, and the hook counters
// shared by every Mutex of one benchmark.
type lockEnv struct {
	cs        kubernetes.Interface
	reqs      reqCounter
	conflicts atomic.Int64
	failures  atomic.Int64
}

func (b *bench) newLockEnv() (*lockEnv, error) {
	env := &lockEnv{}
	cfg := b.cp.Config()
	cfg.Wrap(env.reqs.wrap)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	env.cs = cs
	return env, nil
}

// mutex returns a Mutex with its own identity on the Lease name.
func (b *bench) mutex(env *lockEnv, name, identity string) (*lock.Mutex, error) {
	t := b.o.timing
	return lock.NewMutex(lock.Config{
		Leases: env.cs.CoordinationV1(), Namespace: namespace, Name: name, Identity: identity,
		LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
		Hooks: lock.Hooks{
			Conflict:      func() { env.conflicts.Add(1) },
			AttemptFailed: func(error) { env.failures.Add(1) },
		},
	})
}

// release releases h with a RenewDeadline to finish, also after ctx ended.
func (b *bench) release(ctx context.Context, h *lock.Held) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.o.timing.RenewDeadline)
	defer cancel()
	return h.Release(rctx)
}

// lockUncontended measures Lock + Release of a free Mutex, -lock-n times,
// after one unmeasured cycle that creates the Lease.
func (b *bench) lockUncontended(ctx context.Context) (any, error) {
	env, err := b.newLockEnv()
	if err != nil {
		return nil, err
	}
	m, err := b.mutex(env, "bench-lock-uncontended", "bench-uncontended")
	if err != nil {
		return nil, err
	}
	b.logf("lock-uncontended: %d Lock+Release cycles of a free Mutex", b.o.lockN)
	var samples []time.Duration
	var before int64
	for i := -1; i < b.o.lockN; i++ {
		if i == 0 {
			before = env.reqs.total.Load()
		}
		start := time.Now()
		h, err := m.Lock(ctx)
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		if err := b.release(ctx, h); err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		if i >= 0 {
			samples = append(samples, time.Since(start))
		}
	}
	s := summarize(samples)
	b.logf("lock-uncontended: p50 %.3fms p99 %.3fms max %.3fms", s.P50, s.P99, s.Max)
	return lockUncontendedResult{
		Bench: "lock-uncontended", Impl: "leasehold", latency: s.latency(),
		RequestsPerOp: round3(float64(env.reqs.total.Load()-before) / float64(b.o.lockN)),
	}, nil
}

// lockHandover runs waiters goroutines, each with its own Mutex on one
// Lease, that Lock, hold for -lock-hold, release and Lock again, until
// -lock-handovers hand-overs have happened. A hand-over is timed from the
// start of the holder's Release call to the return of the next Lock. A setup
// holder keeps the lock until every waiter waits (and a settling time has
// passed), so that the first waiters queue before the first hand-over.
func (b *bench) lockHandover(ctx context.Context, waiters int) (any, error) {
	env, err := b.newLockEnv()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("bench-lock-handover-%d", waiters)
	target := b.o.handovers
	b.logf("lock-handover: %d waiters on lease %s/%s, %d hand-overs", waiters, namespace, name, target)
	m, err := b.mutex(env, name, "bench-setup")
	if err != nil {
		return nil, err
	}
	setup, err := m.Lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("setup lock: %w", err)
	}
	timeout := 2*time.Minute + 2*b.o.timing.LeaseDuration + time.Duration(target)*50*time.Millisecond
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := &handover{b: b, target: target, cancel: cancel}
	var wg sync.WaitGroup
	for i := range waiters {
		m, err := b.mutex(env, name, fmt.Sprintf("waiter-%d-of-%d", i+1, waiters))
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		h.q.begin(i, true)
		wg.Go(func() { h.loop(rctx, i, m) })
	}
	b.settle(rctx, env, name, waiters)
	reqs0, upd0, wr0 := env.reqs.total.Load(), env.reqs.update.Load(), env.reqs.write.Load()
	conf0, fail0 := env.conflicts.Load(), env.failures.Load()
	start := time.Now()
	h.lastRelease.Store(candidate.Mono())
	if err := b.release(rctx, setup); err != nil {
		h.fail(fmt.Errorf("setup release: %w", err))
	}
	wg.Wait()
	elapsed := time.Since(start)
	samples, err := h.result(ctx, elapsed)
	if err != nil {
		return nil, err
	}
	per := func(n int64) float64 { return round3(float64(n) / float64(len(samples))) }
	s := summarize(samples)
	reqs := env.reqs.total.Load() - reqs0
	r := lockHandoverResult{
		Bench: "lock-handover", Impl: "leasehold", Waiters: waiters, latency: s.latency(),
		RequestsPerHandover:  per(reqs),
		UpdatesPerHandover:   per(env.reqs.update.Load() - upd0),
		WritesPerHandover:    per(env.reqs.write.Load() - wr0),
		ConflictsPerHandover: per(env.conflicts.Load() - conf0),
		AttemptFailures:      env.failures.Load() - fail0,
		Overtakes:            h.q.overtakes(),
		ApiserverRPS:         round3(float64(reqs) / elapsed.Seconds()),
	}
	b.logf("lock-handover %d waiters: %d hand-overs in %v: p50 %.3fms p99 %.3fms max %.3fms; %.1f requests, %.1f conflicts per hand-over, %d overtakes",
		waiters, s.N, elapsed.Round(time.Millisecond), s.P50, s.P99, s.Max, r.RequestsPerHandover, r.ConflictsPerHandover, r.Overtakes)
	return r, nil
}

// settle waits until every waiter waits: the lock's queue is as long as the
// waiter count (checked through queueLen), then one more second. A lock
// without a queue (an earlier version) gets a fixed time instead.
func (b *bench) settle(ctx context.Context, env *lockEnv, name string, waiters int) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n, ok := queueLen(ctx, b, name)
		if !ok || (n == 0 && time.Until(deadline) < 25*time.Second) {
			// No queue to read: give every Lock call time to start.
			time.Sleep(time.Second + time.Duration(waiters)*4*time.Millisecond)
			return
		}
		if n >= waiters {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
}

// handover is the shared state of one lock-handover run.
type handover struct {
	b           *bench
	target      int
	cancel      context.CancelFunc
	lastRelease atomic.Int64 // Mono at the start of the latest Release call
	q           queueOrder

	mu      sync.Mutex
	samples []time.Duration
	errs    []error
}

func (h *handover) fail(err error) {
	h.mu.Lock()
	h.errs = append(h.errs, err)
	h.mu.Unlock()
	h.cancel()
}

// record notes one acquisition and reports whether the target is reached.
func (h *handover) record(acquired int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if lr := h.lastRelease.Load(); lr != 0 && len(h.samples) < h.target {
		h.samples = append(h.samples, time.Duration(acquired-lr))
	}
	return len(h.samples) >= h.target
}

// loop is waiter i: Lock (its first call already counted as begun), hold,
// release, again.
func (h *handover) loop(ctx context.Context, i int, m *lock.Mutex) {
	for {
		held, err := m.Lock(ctx)
		if err != nil {
			if ctx.Err() == nil {
				h.fail(fmt.Errorf("%s: lock: %w", m.Identity(), err))
			}
			return
		}
		now := candidate.Mono()
		h.q.acquired(i)
		done := h.record(now)
		if !done && h.b.o.hold > 0 {
			time.Sleep(h.b.o.hold)
		}
		h.lastRelease.Store(candidate.Mono())
		if err := h.b.release(ctx, held); err != nil {
			h.fail(fmt.Errorf("%s: release: %w", m.Identity(), err))
			return
		}
		if done {
			h.cancel()
			return
		}
		h.q.begin(i, false)
	}
}

// result returns the samples, or every error of the run.
func (h *handover) result(ctx context.Context, elapsed time.Duration) ([]time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	errs := h.errs
	if len(h.samples) < h.target {
		errs = append(errs, fmt.Errorf("only %d of %d hand-overs in %v", len(h.samples), h.target, elapsed.Round(time.Millisecond)))
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return h.samples, errors.Join(errs...)
}

// queueLen returns the length of the lock's waiting queue (its entries:
// every Lease of the lock but the lock's own); ok is false when it cannot be
// read.
func queueLen(ctx context.Context, b *bench, name string) (int, bool) {
	l, err := b.cs.CoordinationV1().Leases(namespace).List(ctx, metav1.ListOptions{LabelSelector: lock.QueueSelector(name, 1)})
	if err != nil {
		return 0, false
	}
	n := 0
	for _, item := range l.Items {
		if item.Name != name {
			n++
		}
	}
	return n, true
}
