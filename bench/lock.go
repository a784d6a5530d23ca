package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

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
	RequestsPerHandover  float64 `json:"requests_per_handover"`
	UpdatesPerHandover   float64 `json:"updates_per_handover"`
	ConflictsPerHandover float64 `json:"conflicts_per_handover"`
	AttemptFailures      int64   `json:"attempt_failures,omitempty"`
}

// reqCounter counts the API requests of a clientset (rest.Config.Wrap).
type reqCounter struct {
	total, watch, update atomic.Int64
}

func (c *reqCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		c.total.Add(1)
		switch w := r.URL.Query().Get("watch"); {
		case w == "true" || w == "1":
			c.watch.Add(1)
		case r.Method == http.MethodPut:
			c.update.Add(1)
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
// start of the holder's Release call to the return of the next Lock.
func (b *bench) lockHandover(ctx context.Context, waiters int) (any, error) {
	env, err := b.newLockEnv()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("bench-lock-handover-%d", waiters)
	target := b.o.handovers
	b.logf("lock-handover: %d waiters on lease %s/%s, %d hand-overs", waiters, namespace, name, target)
	// Create the Lease first, so that creation races are not counted.
	m, err := b.mutex(env, name, "bench-setup")
	if err != nil {
		return nil, err
	}
	h, err := m.Lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("setup lock: %w", err)
	}
	if err := b.release(ctx, h); err != nil {
		return nil, fmt.Errorf("setup release: %w", err)
	}

	timeout := 2*time.Minute + 2*b.o.timing.LeaseDuration
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		lastRelease atomic.Int64 // Mono at the start of the latest Release call
		mu          sync.Mutex
		samples     []time.Duration
		errs        []error
		wg          sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	// record notes one acquisition and reports whether the target is reached.
	record := func(acquired int64) bool {
		mu.Lock()
		defer mu.Unlock()
		if lr := lastRelease.Load(); lr != 0 && len(samples) < target {
			samples = append(samples, time.Duration(acquired-lr))
		}
		return len(samples) >= target
	}
	reqs0, upd0 := env.reqs.total.Load(), env.reqs.update.Load()
	conf0, fail0 := env.conflicts.Load(), env.failures.Load()
	start := time.Now()
	for i := range waiters {
		m, err := b.mutex(env, name, fmt.Sprintf("waiter-%d-of-%d", i+1, waiters))
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		wg.Go(func() {
			for {
				h, err := m.Lock(rctx)
				if err != nil {
					if rctx.Err() == nil {
						fail(fmt.Errorf("%s: lock: %w", m.Identity(), err))
					}
					return
				}
				done := record(candidate.Mono())
				if !done && b.o.hold > 0 {
					time.Sleep(b.o.hold)
				}
				lastRelease.Store(candidate.Mono())
				if err := b.release(rctx, h); err != nil {
					fail(fmt.Errorf("%s: release: %w", m.Identity(), err))
					return
				}
				if done {
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	if len(samples) < target {
		errs = append(errs, fmt.Errorf("only %d of %d hand-overs in %v", len(samples), target, elapsed.Round(time.Millisecond)))
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	per := func(n int64) float64 { return round3(float64(n) / float64(len(samples))) }
	s := summarize(samples)
	r := lockHandoverResult{
		Bench: "lock-handover", Impl: "leasehold", Waiters: waiters, latency: s.latency(),
		RequestsPerHandover:  per(env.reqs.total.Load() - reqs0),
		UpdatesPerHandover:   per(env.reqs.update.Load() - upd0),
		ConflictsPerHandover: per(env.conflicts.Load() - conf0),
		AttemptFailures:      env.failures.Load() - fail0,
	}
	b.logf("lock-handover %d waiters: %d hand-overs in %v: p50 %.3fms p99 %.3fms max %.3fms; %.1f requests, %.1f conflicts per hand-over",
		waiters, s.N, elapsed.Round(time.Millisecond), s.P50, s.P99, s.Max, r.RequestsPerHandover, r.ConflictsPerHandover)
	return r, nil
}
