// Package candidate is one leader-election candidate process used by the
// demo, the benchmarks, the interop tests and the fault harness: a Leasehold
// elector, a Leasehold lock holder taking turns, or a client-go
// leaderelection elector on one Lease. It reports every leadership term on
// its standard output as JSON lines, stamped with CLOCK_MONOTONIC (shared by
// all processes on a machine), counts the API requests it makes, and while
// it leads can write to a fenced resource (--write-url) with its token.
//
// A process becomes a candidate by calling Main; binaries that embed it
// re-execute themselves with the argument "candidate" (see Command).
package candidate

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/leasehold/leasehold/election"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lock"
	"github.com/leasehold/leasehold/shard"
)

// Arg is the first argument that makes a binary embedding this package run
// as a candidate.
const Arg = "candidate"

// Event is one line of a candidate's output.
type Event struct {
	// Ev is "ready", "start" (work began leading), "stop" (work returned),
	// "requests" (counts, on SIGUSR1 and at exit) or "exit".
	Ev   string `json:"ev"`
	ID   string `json:"id"`
	Impl string `json:"impl"`
	// Mono is CLOCK_MONOTONIC in nanoseconds when the event happened.
	Mono int64 `json:"mono"`
	// Token is the fencing token of a Leasehold term; for client-go, which
	// has none, the lease's transition count.
	Token string `json:"token,omitempty"`
	// Cause says why a term ended.
	Cause string `json:"cause,omitempty"`
	// Requests counts API requests by kind: get, create, update, watch, other.
	Requests map[string]int64 `json:"requests,omitempty"`
	// Err is set on an "exit" caused by an error.
	Err string `json:"err,omitempty"`
	// Shard is the shard of a "start" or "stop" of a shards member (--impl
	// shards): each shard's runs are terms of their own.
	Shard *int `json:"shard,omitempty"`
}

// Mono returns CLOCK_MONOTONIC in nanoseconds, comparable across processes.
func Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now().UnixNano()
	}
	return ts.Nano()
}

type options struct {
	impl, kubeconfig, namespace, name, id string
	ld, rd, rp                            time.Duration
	releaseOnCancel                       bool
	clockRate                             float64
	writeURL                              string
	writeEvery                            time.Duration
	unsafeNoDeadline                      bool
	hold                                  time.Duration
	shards                                int
}

// Main runs a candidate with args (without the leading Arg) until SIGTERM or
// SIGINT, then releases (if leading) and exits. It returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("candidate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.impl, "impl", "leasehold", "leasehold (elector), lock (Leasehold mutex), shards (a member of a shard.Group named --lease) or client-go")
	fs.IntVar(&o.shards, "shards", 8, "--impl shards: the number of shards")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig path (empty: the pod's in-cluster configuration)")
	fs.StringVar(&o.namespace, "namespace", "default", "namespace of the Lease")
	fs.StringVar(&o.name, "lease", "", "name of the Lease")
	fs.StringVar(&o.id, "id", "", "identity")
	fs.DurationVar(&o.ld, "lease-duration", 15*time.Second, "LeaseDuration")
	fs.DurationVar(&o.rd, "renew-deadline", 10*time.Second, "RenewDeadline")
	fs.DurationVar(&o.rp, "retry-period", 2*time.Second, "RetryPeriod")
	fs.BoolVar(&o.releaseOnCancel, "release-on-cancel", true, "release the lease on SIGTERM")
	fs.Float64Var(&o.clockRate, "clock-rate", 1, "rate of the Leasehold elector's clock relative to real time (0.9: 10% slow); client-go's elector has no injectable clock")
	fs.StringVar(&o.writeURL, "write-url", "", "while leading, POST writes to this fenced resource (see WriteQuery)")
	fs.DurationVar(&o.writeEvery, "write-every", 50*time.Millisecond, "interval between writes while leading")
	fs.DurationVar(&o.hold, "hold", time.Second, "--impl lock: how long each acquisition holds the lock before releasing it")
	fs.BoolVar(&o.unsafeNoDeadline, "unsafe-no-deadline", false, "control runs only, --impl leasehold: keep working after the term's context ends, until a GET shows another holder (a leader without a hard deadline)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.name == "" || o.id == "" {
		fmt.Fprintln(stderr, "candidate: --lease and --id are required")
		return 2
	}
	if o.clockRate <= 0 {
		fmt.Fprintf(stderr, "candidate: --clock-rate must be positive, got %v\n", o.clockRate)
		return 2
	}
	if o.unsafeNoDeadline && o.impl != "leasehold" {
		fmt.Fprintf(stderr, "candidate: --unsafe-no-deadline applies only to --impl leasehold\n")
		return 2
	}
	if o.clockRate != 1 && o.impl == "client-go" {
		fmt.Fprintf(stderr, "candidate: --clock-rate does not apply to --impl client-go (its elector uses the real clock)\n")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	out := &emitter{w: stdout, id: o.id, impl: o.impl}
	counts := &counter{}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, cancelStats := context.WithCancel(ctx)
	defer cancelStats()
	wg.Go(func() {
		for {
			select {
			case <-sctx.Done():
				return
			case <-usr1:
				out.emit(Event{Ev: "requests", Requests: counts.snapshot()})
			}
		}
	})

	err := run(ctx, o, out, counts)
	cancelStats()
	out.emit(Event{Ev: "requests", Requests: counts.snapshot()})
	if err != nil && !errors.Is(err, context.Canceled) {
		out.emit(Event{Ev: "exit", Err: err.Error()})
		return 1
	}
	out.emit(Event{Ev: "exit"})
	return 0
}

func run(ctx context.Context, o options, out *emitter, counts *counter) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return counts.wrap(rt) })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	out.emit(Event{Ev: "ready"})
	w := newWorker(o, cs, out)
	switch o.impl {
	case "leasehold":
		return runLeasehold(ctx, o, cs, w)
	case "lock":
		return runLock(ctx, o, cs, w)
	case "client-go":
		return runClientGo(ctx, o, cs, w)
	case "shards":
		return runShards(ctx, o, cs, w)
	}
	return fmt.Errorf("candidate: unknown --impl %q (want leasehold, lock, shards or client-go)", o.impl)
}

func runLeasehold(ctx context.Context, o options, cs kubernetes.Interface, w *worker) error {
	cfg := election.Config{
		Leases: cs.CoordinationV1(), Namespace: o.namespace, Name: o.name, Identity: o.id,
		LeaseDuration: o.ld, RenewDeadline: o.rd, RetryPeriod: o.rp, KeepLeaseOnCancel: !o.releaseOnCancel,
	}
	if o.clockRate != 1 {
		cfg.Clock = NewRateClock(o.clockRate)
	}
	e, err := election.New(cfg)
	if err != nil {
		return err
	}
	return e.Run(ctx, func(tctx context.Context) error {
		tok, _ := election.TokenFrom(tctx)
		w.term(ctx, tctx, tok.String())
		return nil
	})
}

// runShards is a member of the shard group --lease: every shard it runs is
// a term of its own, with its own writes to the fenced resource.
func runShards(ctx context.Context, o options, cs kubernetes.Interface, w *worker) error {
	cfg := shard.Config{
		Leases: cs.CoordinationV1(), Namespace: o.namespace, Name: o.name, Shards: o.shards, Identity: o.id,
		LeaseDuration: o.ld, RenewDeadline: o.rd, RetryPeriod: o.rp,
	}
	if o.clockRate != 1 {
		cfg.Clock = NewRateClock(o.clockRate)
	}
	g, err := shard.New(cfg)
	if err != nil {
		return err
	}
	return g.Run(ctx, func(sctx context.Context, s int, tok lease.Token) error {
		w.shardTerm(ctx, sctx, s, tok.String())
		return nil
	})
}

// runLock takes a Leasehold Mutex on the Lease again and again, holds it for
// --hold (or until it is lost), releases it and waits a retry period.
func runLock(ctx context.Context, o options, cs kubernetes.Interface, w *worker) error {
	cfg := lock.Config{
		Leases: cs.CoordinationV1(), Namespace: o.namespace, Name: o.name, Identity: o.id,
		LeaseDuration: o.ld, RenewDeadline: o.rd, RetryPeriod: o.rp,
	}
	if o.clockRate != 1 {
		cfg.Clock = NewRateClock(o.clockRate)
	}
	m, err := lock.NewMutex(cfg)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		held, err := m.Lock(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// Transient (e.g. the apiserver is down): try again.
			if !wait(ctx, o.rp) {
				break
			}
			continue
		}
		hctx, cancel := context.WithTimeoutCause(held.Context(), o.hold, errors.New("hold time over"))
		w.term(ctx, hctx, held.Token().String())
		cancel()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), o.rd)
		_ = held.Release(rctx) // fails when the lock was lost
		rcancel()
		if !wait(ctx, o.rp) {
			break
		}
	}
	return ctx.Err()
}

// runClientGo campaigns with client-go's elector, again after every loss,
// the way applications that do not exit on loss use it.
func runClientGo(ctx context.Context, o options, cs kubernetes.Interface, w *worker) error {
	for ctx.Err() == nil {
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: o.namespace, Name: o.name},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: o.id},
		}
		// client-go starts the work in a goroutine it does not wait for; this
		// waits for it, and a work goroutine scheduled only after Run
		// returned does not start at all.
		var (
			mu     sync.Mutex
			closed bool
			work   sync.WaitGroup
		)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: o.ld, RenewDeadline: o.rd, RetryPeriod: o.rp, ReleaseOnCancel: o.releaseOnCancel,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(tctx context.Context) {
					mu.Lock()
					if closed || tctx.Err() != nil {
						mu.Unlock()
						return
					}
					work.Add(1)
					mu.Unlock()
					defer work.Done()
					// client-go has no fencing token; the transition count
					// read here only labels the term in the log.
					label := ""
					if l, err := cs.CoordinationV1().Leases(o.namespace).Get(tctx, o.name, metav1.GetOptions{}); err == nil && l.Spec.LeaseTransitions != nil {
						label = fmt.Sprint(*l.Spec.LeaseTransitions)
					}
					w.term(ctx, tctx, label)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx)
		mu.Lock()
		closed = true
		mu.Unlock()
		work.Wait()
	}
	return ctx.Err()
}

type emitter struct {
	mu       sync.Mutex
	w        io.Writer
	id, impl string
}

func (e *emitter) emit(ev Event) {
	ev.ID, ev.Impl, ev.Mono = e.id, e.impl, Mono()
	b, _ := json.Marshal(ev)
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(append(b, '\n'))
}

// counter counts API requests by kind.
type counter struct {
	get, create, update, watch, other atomic.Int64
}

func (c *counter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		switch {
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			c.watch.Add(1)
		case r.Method == http.MethodGet:
			c.get.Add(1)
		case r.Method == http.MethodPost:
			c.create.Add(1)
		case r.Method == http.MethodPut:
			c.update.Add(1)
		default:
			c.other.Add(1)
		}
		return rt.RoundTrip(r)
	})
}

func (c *counter) snapshot() map[string]int64 {
	return map[string]int64{"get": c.get.Load(), "create": c.create.Load(), "update": c.update.Load(), "watch": c.watch.Load(), "other": c.other.Load()}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
