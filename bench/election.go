package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
)

// handoffResult is the JSON line of the handoff benchmark.
type handoffResult struct {
	Bench string `json:"bench"`
	Impl  string `json:"impl"`
	latency
}

// failoverResult is the JSON line of the failover benchmark: the kill ->
// next leader latency, and its excess over the earliest moment the lease
// could be taken.
type failoverResult struct {
	Bench string `json:"bench"`
	Impl  string `json:"impl"`
	latency
	ExcessP50MS float64 `json:"excess_p50_ms"`
	ExcessP99MS float64 `json:"excess_p99_ms"`
	ExcessMaxMS float64 `json:"excess_max_ms"`
	LeaseDurMS  float64 `json:"lease_duration_ms"`
}

// handoff measures graceful hand-overs: three candidates; n times the leader
// gets SIGTERM (it releases the lease on the way out) and the time from the
// signal to another candidate's "start" is taken. The stopped candidate is
// restarted under the same identity and the group settles for a RetryPeriod
// before the next round.
func (b *bench) handoff(ctx context.Context, impl string) (any, error) {
	name := "bench-handoff-" + impl
	b.logf("handoff %s: 3 candidates on lease %s/%s, %d hand-overs", impl, namespace, name, b.o.n)
	g := b.newGroup()
	defer g.close()
	members := ids(impl, 3)
	for _, id := range members {
		if err := g.start(id, b.candidate(impl, name)); err != nil {
			return nil, err
		}
	}
	var samples []time.Duration
	for i := range b.o.n {
		leader, err := g.awaitLeader(ctx, members)
		if err != nil {
			return nil, err
		}
		if i == 0 { // let the first leader's peers settle too
			if err := g.settle(ctx, members, b.o.timing.RetryPeriod); err != nil {
				return nil, err
			}
		}
		signalled := candidate.Mono()
		if err := g.stop(leader, syscall.SIGTERM); err != nil {
			return nil, err
		}
		next, err := g.awaitSuccessor(ctx, members, leader, signalled)
		if err != nil {
			return nil, err
		}
		d := time.Duration(g.startMono[next] - signalled)
		samples = append(samples, d)
		b.logf("handoff %s %d/%d: %s -> %s in %v", impl, i+1, b.o.n, leader, next, d.Round(time.Microsecond))
		if err := g.replace(ctx, leader, b.o.timing.RetryPeriod); err != nil {
			return nil, err
		}
	}
	return handoffResult{Bench: "handoff", Impl: impl, latency: summarize(samples).latency()}, nil
}

// failover measures crash failover: three candidates; the leader gets
// SIGKILL, at a random phase of its renewals, so the lease must expire. Besides kill -> next "start", the excess
// is taken over the earliest moment a follower could take the lease: when
// this process's own watch last saw the dead leader's record change, plus
// LeaseDuration.
func (b *bench) failover(ctx context.Context, impl string) (any, error) {
	name := "bench-failover-" + impl
	ld := b.o.timing.LeaseDuration
	b.logf("failover %s: 3 candidates on lease %s/%s, %d kills (each about %v)", impl, namespace, name, b.o.failovers, ld)
	w := newLeaseWatch(b.cs, namespace, name)
	wctx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.run(wctx) })
	defer func() {
		stopWatch()
		wg.Wait()
	}()

	g := b.newGroup()
	defer g.close()
	members := ids(impl, 3)
	for _, id := range members {
		if err := g.start(id, b.candidate(impl, name)); err != nil {
			return nil, err
		}
	}
	var samples, excess []time.Duration
	for i := range b.o.failovers {
		leader, err := g.awaitLeader(ctx, members)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			if err := g.settle(ctx, members, b.o.timing.RetryPeriod+rand.N(b.o.timing.RetryPeriod)); err != nil {
				return nil, err
			}
		}
		killed := candidate.Mono()
		if err := g.stop(leader, syscall.SIGKILL); err != nil {
			return nil, err
		}
		next, err := g.awaitSuccessor(ctx, members, leader, killed)
		if err != nil {
			return nil, err
		}
		took := g.startMono[next]
		// Once the watch shows the successor, it has seen every write of the
		// dead leader (a watch delivers changes in order).
		if err := w.awaitHolder(ctx, next, killed, g.timeout); err != nil {
			return nil, err
		}
		last, ok := w.lastChange(leader)
		if !ok {
			return nil, fmt.Errorf("the bench's watch never saw %s hold lease %s/%s", leader, namespace, name)
		}
		d, ex := time.Duration(took-killed), time.Duration(took-(last+int64(ld)))
		samples, excess = append(samples, d), append(excess, ex)
		b.logf("failover %s %d/%d: %s killed, %s leads %v later, %v after the lease could first be taken (dead leader's last change seen at kill%s)",
			impl, i+1, b.o.failovers, leader, next, d.Round(time.Microsecond), ex.Round(time.Microsecond), signed(time.Duration(last-killed)))
		// Settle for one to two RetryPeriods, so that the next kill falls at a
		// random phase of the leader's renewals.
		settle := b.o.timing.RetryPeriod + rand.N(b.o.timing.RetryPeriod)
		if err := g.replace(ctx, leader, settle); err != nil {
			return nil, err
		}
	}
	ex := summarize(excess)
	return failoverResult{
		Bench: "failover", Impl: impl, LeaseDurMS: ms(ld),
		ExcessP50MS: ex.P50, ExcessP99MS: ex.P99, ExcessMaxMS: ex.Max,
		latency: summarize(samples).latency(),
	}, nil
}

// signed formats d with an explicit sign, to the microsecond.
func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + d.Round(time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
