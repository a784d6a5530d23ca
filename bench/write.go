package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// leaseWriteResult is the JSON line of lease-write and handover-floor.
//
// lease-write: what one write of a Lease costs on this control plane with
// nothing else running. A lock hand-over is one such write and the watch
// event that delivers it, so this is the floor under lock-handover's
// latency, and the CPU a write takes says how soon a closed loop of writes
// saturates the machine.
//
// handover-floor: the same write (the grant), made every -lock-hold after
// the previous one's event, with the two other writes a hand-over cycle of
// lock-handover cannot do without beside it: one Lease created (the
// rejoining waiter's queue entry) and one deleted (the served waiter's),
// sent as the event arrives. No lists, no watches opened and one watcher:
// the least any queue of Lease entries costs per hand-over, so its latency
// is what lock-handover's would be with every other request gone
// (requests "writes"). A second run (requests "mix") adds, per cycle, the
// reads lock-handover's cycle makes at 50 waiters: two lists (one of the
// lock by name, one of the head of the entries by label, limit 16) and four
// watches opened (two of entries by name, one of the entries and one of
// the lock by label, each stopped two cycles later), and keeps three pairs
// of label-selected watches open throughout, as the holder and the two
// near waiters do. Its latency is lock-handover's request mix without the
// lock package's own work and timing.
type leaseWriteResult struct {
	Bench string `json:"bench"`
	N     int    `json:"n"`
	// HoldMs: handover-floor's pause between an event and the next write.
	HoldMs float64 `json:"hold_ms,omitempty"`
	// Requests: handover-floor's requests per cycle, "writes" or "mix".
	Requests string `json:"requests,omitempty"`
	// Write: the conditional update's round trip. Event: from sending it to
	// its watch event arriving on a watch by name.
	WriteP50 float64 `json:"write_p50_ms"`
	WriteP99 float64 `json:"write_p99_ms"`
	EventP50 float64 `json:"event_p50_ms"`
	EventP99 float64 `json:"event_p99_ms"`
	// CPU time kube-apiserver and etcd used per write (their idle work
	// included, which is small next to it); in handover-floor per cycle of
	// three writes.
	APIServerCPU float64 `json:"apiserver_cpu_ms_per_write"`
	EtcdCPU      float64 `json:"etcd_cpu_ms_per_write"`
}

// floorMode is what leaseWrite does beside the measured write.
type floorMode int

const (
	writeOnly  floorMode = iota // lease-write
	cycleWrite                  // handover-floor, requests "writes"
	cycleMix                    // handover-floor, requests "mix"
)

// leaseWrite writes one Lease -write-n times in a row, each write after the
// previous one's event arrived, after 20 unmeasured writes. In the
// handover-floor modes, each event also starts one create and one delete of
// other Leases (and in cycleMix the reads), and the next write waits
// -lock-hold.
func (b *bench) leaseWrite(ctx context.Context, mode floorMode) (any, error) {
	leases := b.cs.CoordinationV1().Leases(namespace)
	holder := "bench"
	name := "bench-lease-write"
	cycle := mode != writeOnly
	switch mode {
	case cycleWrite:
		name = "bench-handover-floor"
	case cycleMix:
		name = "bench-handover-floor-mix"
	}
	obj, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{floorLabel: name}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	entries := &entryChurn{leases: leases, lock: name, prefix: name + "-q-", mix: mode == cycleMix}
	defer entries.stop() // on an early return; its error was returned or is moot
	if entries.mix {
		for range 3 {
			entries.watch(ctx, metav1.ListOptions{LabelSelector: floorLabel + "=" + name}, false)
			entries.watch(ctx, metav1.ListOptions{LabelSelector: floorEntryLabel + "=" + name}, false)
		}
	}
	w, err := leases.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + obj.Name, ResourceVersion: obj.ResourceVersion})
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	bench := "lease-write"
	if cycle {
		bench = "handover-floor"
		if err := entries.create(ctx); err != nil { // the first one to delete
			return nil, err
		}
		b.logf("%s: requests %q", bench, map[bool]string{false: "writes", true: "mix"}[entries.mix])
	}
	b.logf("%s: %d writes of lease %s/%s, one at a time", bench, b.o.writeN, namespace, obj.Name)
	const warmup = 20
	var writes, events []time.Duration
	var api0, etcd0 time.Duration
	for i := -warmup; i < b.o.writeN; i++ {
		if i == 0 {
			if api0, etcd0, err = b.cp.CPUTime(); err != nil {
				return nil, err
			}
		}
		transitions := int32(i + warmup)
		obj.Spec.LeaseTransitions = &transitions
		start := time.Now()
		if obj, err = leases.Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("update: %w", err)
		}
		wrote := time.Since(start)
		if err := awaitVersion(ctx, w, obj.ResourceVersion); err != nil {
			return nil, err
		}
		if i >= 0 {
			writes, events = append(writes, wrote), append(events, time.Since(start))
		}
		if cycle {
			if err := entries.cycle(ctx); err != nil {
				return nil, err
			}
			time.Sleep(b.o.hold)
		}
	}
	if err := entries.wait(); err != nil {
		return nil, err
	}
	api1, etcd1, err := b.cp.CPUTime()
	entries.stop()
	if err != nil {
		return nil, err
	}
	ws, es := summarize(writes), summarize(events)
	n := float64(b.o.writeN)
	r := leaseWriteResult{
		Bench: bench, N: b.o.writeN,
		WriteP50: ws.P50, WriteP99: ws.P99, EventP50: es.P50, EventP99: es.P99,
		APIServerCPU: round3(ms(api1-api0) / n), EtcdCPU: round3(ms(etcd1-etcd0) / n),
	}
	if cycle {
		r.HoldMs = ms(b.o.hold)
		r.Requests = map[bool]string{false: "writes", true: "mix"}[entries.mix]
	}
	b.logf("%s: write p50 %.3fms p99 %.3fms; its event p50 %.3fms p99 %.3fms; CPU per write: kube-apiserver %.2fms, etcd %.2fms",
		bench, r.WriteP50, r.WriteP99, r.EventP50, r.EventP99, r.APIServerCPU, r.EtcdCPU)
	return r, nil
}

// awaitVersion reads w until it delivers the object at version rv.
func awaitVersion(ctx context.Context, w watch.Interface, rv string) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("the watch ended before version %s", rv)
			}
			if ev.Type == watch.Error {
				return fmt.Errorf("watch: %v", ev.Object)
			}
			if l, ok := ev.Object.(*coordinationv1.Lease); ok && l.ResourceVersion == rv {
				return nil
			}
		}
	}
}

// Labels of handover-floor's Leases: the lock, and the entries of its queue.
const (
	floorLabel      = "bench.leasehold.io/floor"
	floorEntryLabel = "bench.leasehold.io/floor-entry"
)

// entryChurn creates and deletes Leases named prefix<n> in the background,
// as waiters' queue entries come and go: each cycle deletes the oldest one
// and creates the next, the two at once. With mix it also makes the reads
// described at leaseWriteResult.
type entryChurn struct {
	leases coordinationv1client.LeaseInterface
	lock   string // the measured Lease
	prefix string
	mix    bool

	wg      sync.WaitGroup // the current cycle's requests
	drains  sync.WaitGroup // the goroutines reading open watches
	mu      sync.Mutex
	next    int      // the number of the next Lease to create
	created []string // created and not yet deleted, oldest first
	errs    []error
	// Watches opened by cycles, oldest first, and the standing ones.
	cycled, standing []watch.Interface
}

func (e *entryChurn) create(ctx context.Context) error {
	e.mu.Lock()
	name := e.prefix + strconv.Itoa(e.next)
	e.next++
	e.mu.Unlock()
	holder := "waiter"
	_, err := e.leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{floorEntryLabel: e.lock}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	e.mu.Lock()
	e.created = append(e.created, name)
	e.mu.Unlock()
	return nil
}

// cycle waits for the previous cycle's requests, then starts this one's.
func (e *entryChurn) cycle(ctx context.Context) error {
	if err := e.wait(); err != nil {
		return err
	}
	e.mu.Lock()
	oldest, newest := e.created[0], e.created[len(e.created)-1]
	e.created = e.created[1:]
	e.mu.Unlock()
	e.wg.Go(func() {
		if err := e.leases.Delete(ctx, oldest, metav1.DeleteOptions{}); err != nil {
			e.fail(fmt.Errorf("delete %s: %w", oldest, err))
		}
	})
	e.wg.Go(func() {
		if err := e.create(ctx); err != nil {
			e.fail(err)
		}
	})
	if !e.mix {
		return nil
	}
	e.wg.Go(func() {
		for _, o := range []metav1.ListOptions{
			{FieldSelector: "metadata.name=" + e.lock},
			{LabelSelector: floorEntryLabel + "=" + e.lock, Limit: 16},
		} {
			if _, err := e.leases.List(ctx, o); err != nil {
				e.fail(fmt.Errorf("list: %w", err))
			}
		}
	})
	e.wg.Go(func() {
		for _, o := range []metav1.ListOptions{
			{FieldSelector: "metadata.name=" + oldest},
			{FieldSelector: "metadata.name=" + newest},
			{LabelSelector: floorEntryLabel + "=" + e.lock},
			{LabelSelector: floorLabel + "=" + e.lock},
		} {
			e.watch(ctx, o, true)
		}
	})
	return nil
}

// watch opens a watch and reads it until it is stopped. A cycled one is
// stopped once eight newer ones are open (two cycles' worth); a standing
// one at the end.
func (e *entryChurn) watch(ctx context.Context, o metav1.ListOptions, cycled bool) {
	w, err := e.leases.Watch(ctx, o)
	if err != nil {
		e.fail(fmt.Errorf("watch: %w", err))
		return
	}
	e.drains.Go(func() {
		for range w.ResultChan() {
		}
	})
	var old watch.Interface
	e.mu.Lock()
	if !cycled {
		e.standing = append(e.standing, w)
	} else if e.cycled = append(e.cycled, w); len(e.cycled) > 8 {
		old, e.cycled = e.cycled[0], e.cycled[1:]
	}
	e.mu.Unlock()
	if old != nil {
		old.Stop()
	}
}

func (e *entryChurn) fail(err error) {
	e.mu.Lock()
	e.errs = append(e.errs, err)
	e.mu.Unlock()
}

// wait waits for the requests started and returns their errors.
func (e *entryChurn) wait() error {
	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	return errors.Join(e.errs...)
}

// stop waits for the requests, stops every watch and waits for their
// readers. Safe to call more than once.
func (e *entryChurn) stop() {
	e.wg.Wait()
	e.mu.Lock()
	ws := append(e.cycled, e.standing...)
	e.cycled, e.standing = nil, nil
	e.mu.Unlock()
	for _, w := range ws {
		w.Stop()
	}
	e.drains.Wait()
}
