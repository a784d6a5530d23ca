package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	// The same writes by purpose. LockWritesPerHandover: updates of the
	// lock's own Lease (grant and adoption; a holder's renewal if a hold
	// outlasts RetryPeriod). EntryCreates and EntryDeletes: joining and
	// leaving the queue (one each per Lock call served). EntryRenewalsPerS:
	// the waiters' renewals of their entries, a background cost that grows
	// with the number of waiters and not with the hand-over rate, so given
	// per second.
	LockWritesPerHandover   float64 `json:"lock_writes_per_handover"`
	EntryCreatesPerHandover float64 `json:"entry_creates_per_handover"`
	EntryDeletesPerHandover float64 `json:"entry_deletes_per_handover"`
	EntryRenewalsPerS       float64 `json:"entry_renewals_per_s"`
	// WatchesPerHandover counts watches opened (reads of the queue
	// included); WatchEventsPerHandover the events they delivered (JSON
	// frames, initial events and bookmarks included): the wake-ups.
	WatchesPerHandover     float64 `json:"watches_per_handover"`
	WatchEventsPerHandover float64 `json:"watch_events_per_handover"`
	ReadsPerHandover       float64 `json:"reads_per_handover"`
	AttemptFailures        int64   `json:"attempt_failures,omitempty"`
	// Overtakes counts acquisitions made while another waiter still waited
	// whose queue entry had certainly been created first (its create had
	// returned before this waiter's Lock call began).
	Overtakes int `json:"overtakes"`
	// ApiserverRPS is the API requests per second of all waiters and
	// holders together while hand-overs were measured.
	ApiserverRPS float64 `json:"apiserver_rps"`
	// LockWriteP50 and LockWriteP99 are how long the apiserver took to
	// answer a write of the lock's Lease (a grant is one, and a hand-over
	// waits for it): the floor under the hand-over's own latency.
	LockWriteP50 float64 `json:"lock_write_p50_ms"`
	LockWriteP99 float64 `json:"lock_write_p99_ms"`
	// CPU time kube-apiserver and etcd used per hand-over (everything
	// they did meanwhile, the waiters' renewals and idle work included).
	APIServerCPU float64 `json:"apiserver_cpu_ms_per_handover"`
	EtcdCPU      float64 `json:"etcd_cpu_ms_per_handover"`
	// BenchCPU: this process's, where the waiters (the lock package and
	// client-go) run.
	BenchCPU float64 `json:"bench_cpu_ms_per_handover"`
}

// queueOrder tracks which Lock calls are waiting and where they queued, to
// count overtakes: a waiter acquiring while another still waits whose
// queue entry was certainly there first — its create had returned before
// this waiter's Lock call began. (The queue orders waiters by a version
// each reads as its Lock call begins, before it creates its entry: a call
// that began before another's entry existed may be served first, and
// calls in flight together are ordered by the apiserver alone, invisibly
// to the bench.)
type queueOrder struct {
	mu      sync.Mutex
	waiting map[int]waitStart // waiter index -> its current Lock call
	n       int
}

type waitStart struct {
	at   int64 // candidate.Mono at the Lock call
	done int64 // when its last entry create returned (0: none yet)
}

// waiterKey carries a waiter's index in its Lock call's context, so that
// the request counter can tell whose entry a create is.
type waiterKey struct{}

func (q *queueOrder) begin(i int) { q.beginAt(i, candidate.Mono()) }

// beginAt records that waiter i's Lock call began at at.
func (q *queueOrder) beginAt(i int, at int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.waiting == nil {
		q.waiting = map[int]waitStart{}
	}
	q.waiting[i] = waitStart{at: at}
}

// created records that waiter i's create of a queue entry returned
// successfully at done.
func (q *queueOrder) created(i int, done int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w, ok := q.waiting[i]; ok {
		w.done = done
		q.waiting[i] = w
	}
}

// acquired ends waiter i's wait and counts it as an overtake when another
// waiter still waits whose entry was created before i queued.
func (q *queueOrder) acquired(i int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	me := q.waiting[i]
	delete(q.waiting, i)
	for _, o := range q.waiting {
		if o.done != 0 && o.done < me.at {
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

// reqCounter counts the API requests of a clientset (rest.Config.Wrap),
// and the events its watches deliver.
type reqCounter struct {
	total, watch, update, write       atomic.Int64
	lockUpdate, entryUpdate           atomic.Int64 // PUT of the lock's Lease, of a queue entry
	create, delete, read, watchEvents atomic.Int64
	// created, if set, is told of every successful create made under a
	// context that carries a waiterKey: the waiter, and when it returned.
	created atomic.Pointer[func(i int, done int64)]

	mu         sync.Mutex
	lockWrites []timedWrite // every write of the lock's Lease: when it returned, how long it took
}

type timedWrite struct {
	at   time.Time
	took time.Duration
}

// lockWritesIn returns how long the writes of the lock's Lease that
// returned within [from, to] took.
func (c *reqCounter) lockWritesIn(from, to time.Time) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, w := range c.lockWrites {
		if !w.at.Before(from) && !w.at.After(to) {
			out = append(out, w.took)
		}
	}
	return out
}

func (c *reqCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		c.total.Add(1)
		isWatch := false
		switch w := r.URL.Query().Get("watch"); {
		case w == "true" || w == "1":
			c.watch.Add(1)
			isWatch = true
		case r.Method == http.MethodPut:
			c.update.Add(1)
			c.write.Add(1)
			if strings.Contains(path.Base(r.URL.Path), "-q-") {
				c.entryUpdate.Add(1)
				break
			}
			c.lockUpdate.Add(1)
			sent := time.Now()
			resp, err := rt.RoundTrip(r)
			c.mu.Lock()
			c.lockWrites = append(c.lockWrites, timedWrite{at: time.Now(), took: time.Since(sent)})
			c.mu.Unlock()
			return resp, err
		case r.Method == http.MethodPost:
			c.write.Add(1)
			c.create.Add(1)
			if i, ok := r.Context().Value(waiterKey{}).(int); ok {
				if f := c.created.Load(); f != nil {
					resp, err := rt.RoundTrip(r)
					if err == nil && resp.StatusCode == http.StatusCreated {
						(*f)(i, candidate.Mono())
					}
					return resp, err
				}
			}
		case r.Method == http.MethodDelete:
			c.write.Add(1)
			c.delete.Add(1)
		case r.Method == http.MethodGet:
			c.read.Add(1)
		}
		resp, err := rt.RoundTrip(r)
		if isWatch && err == nil {
			proto := strings.Contains(resp.Header.Get("Content-Type"), "protobuf")
			resp.Body = &frameCounter{ReadCloser: resp.Body, n: &c.watchEvents, proto: proto}
		}
		return resp, err
	})
}

// frameCounter counts the events of a watch response: newline-terminated
// JSON frames, or length-prefixed protobuf frames (4-byte big-endian
// length, then the event), as the response's content type says.
type frameCounter struct {
	io.ReadCloser
	n     *atomic.Int64
	proto bool
	head  []byte // protobuf: the length bytes read so far
	left  int    // protobuf: bytes of the current frame still to come
}

func (f *frameCounter) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if !f.proto {
		if k := bytes.Count(p[:n], []byte{'\n'}); k > 0 {
			f.n.Add(int64(k))
		}
		return n, err
	}
	for b := p[:n]; len(b) > 0; {
		if f.left > 0 {
			k := min(f.left, len(b))
			f.left, b = f.left-k, b[k:]
			continue
		}
		f.head = append(f.head, b[0])
		b = b[1:]
		if len(f.head) == 4 {
			f.left = int(binary.BigEndian.Uint32(f.head))
			f.head = f.head[:0]
			f.n.Add(1)
		}
	}
	return n, err
}

// lockCounts is a snapshot of the counters of a lockEnv.
type lockCounts struct {
	total, update, write, lockUpdate, entryUpdate, create, delete, watch, watchEvents, read int64
	conflicts, failures                                                                     int64
	apiserverCPU, etcdCPU, selfCPU                                                          time.Duration
	at                                                                                      time.Time
}

func (env *lockEnv) counts() lockCounts {
	c := &env.reqs
	api, etcd, _ := env.cpu() // zero if the control plane cannot be read: the CPU fields then say 0
	return lockCounts{
		total: c.total.Load(), update: c.update.Load(), write: c.write.Load(), lockUpdate: c.lockUpdate.Load(),
		entryUpdate: c.entryUpdate.Load(), create: c.create.Load(), delete: c.delete.Load(), watch: c.watch.Load(),
		watchEvents: c.watchEvents.Load(), read: c.read.Load(),
		conflicts: env.conflicts.Load(), failures: env.failures.Load(), at: time.Now(),
		apiserverCPU: api, etcdCPU: etcd, selfCPU: selfCPU(),
	}
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
	// cpu reads the control plane's CPU time (testenv.ControlPlane.CPUTime).
	cpu func() (apiserver, etcd time.Duration, err error)
}

func (b *bench) newLockEnv() (*lockEnv, error) {
	env := &lockEnv{cpu: b.cp.CPUTime}
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
	h := &handover{b: b, target: target, cancel: cancel, snap: env.counts}
	created := h.q.created
	env.reqs.created.Store(&created)
	var wg sync.WaitGroup
	for i := range waiters {
		m, err := b.mutex(env, name, fmt.Sprintf("waiter-%d-of-%d", i+1, waiters))
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		h.q.begin(i)
		wg.Go(func() { h.loop(rctx, i, m) })
	}
	b.settle(rctx, env, name, waiters)
	c0 := env.counts()
	start := c0.at
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
	// Counted up to the last hand-over measured: what the waiters do
	// when the run ends (leave the queue) is not a hand-over's cost.
	c1 := h.end
	span := c1.at.Sub(start).Seconds()
	per := func(n int64) float64 { return round3(float64(n) / float64(len(samples))) }
	s := summarize(samples)
	reqs := c1.total - c0.total
	r := lockHandoverResult{
		Bench: "lock-handover", Impl: "leasehold", Waiters: waiters, latency: s.latency(),
		RequestsPerHandover:  per(reqs),
		UpdatesPerHandover:   per(c1.update - c0.update),
		WritesPerHandover:    per(c1.write - c0.write),
		ConflictsPerHandover: per(c1.conflicts - c0.conflicts),
		AttemptFailures:      c1.failures - c0.failures,
		Overtakes:            h.q.overtakes(),
		ApiserverRPS:         round3(float64(reqs) / span),

		LockWritesPerHandover:   per(c1.lockUpdate - c0.lockUpdate),
		EntryCreatesPerHandover: per(c1.create - c0.create),
		EntryDeletesPerHandover: per(c1.delete - c0.delete),
		EntryRenewalsPerS:       round3(float64(c1.entryUpdate-c0.entryUpdate) / span),
		WatchesPerHandover:      per(c1.watch - c0.watch),
		WatchEventsPerHandover:  per(c1.watchEvents - c0.watchEvents),
		ReadsPerHandover:        per(c1.read - c0.read),
	}
	writes := summarize(env.reqs.lockWritesIn(start, c1.at))
	r.LockWriteP50, r.LockWriteP99 = writes.P50, writes.P99
	cpu := func(d time.Duration) float64 { return round3(ms(d) / float64(len(samples))) }
	r.APIServerCPU, r.EtcdCPU, r.BenchCPU = cpu(c1.apiserverCPU-c0.apiserverCPU), cpu(c1.etcdCPU-c0.etcdCPU), cpu(c1.selfCPU-c0.selfCPU)
	b.logf("lock-handover %d waiters: %d hand-overs in %v: p50 %.3fms p99 %.3fms max %.3fms; %.1f requests, %.1f conflicts per hand-over, %d overtakes",
		waiters, s.N, elapsed.Round(time.Millisecond), s.P50, s.P99, s.Max, r.RequestsPerHandover, r.ConflictsPerHandover, r.Overtakes)
	b.logf("lock-handover %d waiters: per hand-over %.2f lock-Lease writes, %.2f entry creates, %.2f entry deletes, %.1f watches opened, %.1f watch events; entry renewals %.1f/s",
		waiters, r.LockWritesPerHandover, r.EntryCreatesPerHandover, r.EntryDeletesPerHandover, r.WatchesPerHandover, r.WatchEventsPerHandover, r.EntryRenewalsPerS)
	return r, nil
}

// settle waits until every waiter waits: the lock's queue is as long as the
// waiter count (checked through queueLen) and their requests have quieted,
// then one more second. A lock without a queue (an earlier version) gets a fixed
// time instead.
func (b *bench) settle(ctx context.Context, env *lockEnv, name string, waiters int) {
	start := time.Now()
	deadline := start.Add(90 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n, ok := queueLen(ctx, b, name)
		if !ok || (n == 0 && time.Since(start) > 5*time.Second) {
			// No queue to read: give every Lock call time to start.
			time.Sleep(time.Second + time.Duration(waiters)*4*time.Millisecond)
			return
		}
		if n >= waiters {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The joins' reads (a waiter that cannot place itself reads the whole
	// queue) are over when the waiters' requests have quieted: fewer than
	// one per ten waiters in half a second.
	for last := env.reqs.total.Load(); time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(500 * time.Millisecond)
		now := env.reqs.total.Load()
		if now-last < int64(waiters/10+1) {
			break
		}
		last = now
	}
	b.logf("lock-handover: %d waiters queued and quiet after %v", waiters, time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second)
}

// handover is the shared state of one lock-handover run.
type handover struct {
	b           *bench
	target      int
	cancel      context.CancelFunc
	lastRelease atomic.Int64 // Mono at the start of the latest Release call
	q           queueOrder
	snap        func() lockCounts // read when the last hand-over is measured
	end         lockCounts

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
		if len(h.samples) == h.target {
			h.end = h.snap()
		}
	}
	return len(h.samples) >= h.target
}

// loop is waiter i: Lock (its first call already counted as begun), hold,
// release, again.
func (h *handover) loop(ctx context.Context, i int, m *lock.Mutex) {
	for {
		held, err := m.Lock(context.WithValue(ctx, waiterKey{}, i))
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
		h.q.begin(i)
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

// selfCPU returns the CPU time (user and system) this process has used, or
// zero if it cannot be read.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
