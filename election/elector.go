package election

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/internal/podwitness"
	"github.com/leasehold/leasehold/lease"
)

// Why a leadership context ended: the cause (context.Cause) of the context
// Run passes to the work function is one of these, or the cause of Run's own
// context when that ended first.
var (
	// ErrLost: another candidate holds the lease, or it was deleted.
	ErrLost = holder.ErrLost
	// ErrDeadline: no renewal succeeded within RenewDeadline of the last
	// one sent; the context ended before anyone else could take over.
	ErrDeadline = holder.ErrDeadline
	// ErrPreempted: a planned handoff names another candidate.
	ErrPreempted = holder.ErrPreempted
	// ErrResigned: Resign ended the term.
	ErrResigned = errors.New("election: resigned")
)

// Elector campaigns for one Lease and runs work only while it leads. It is
// safe for concurrent use; Run may be active at most once at a time.
type Elector struct {
	cfg    Config        // as given, for the fields the core does not carry
	core   holder.Config // completed: identity, timing, clock
	client *lease.Client
	obs    *holder.Observer
	cand   *holder.Candidate
	m      *metrics
	log    logr.Logger
	// handoffTimeout bounds how long a preempted leader offers the lease
	// before it resumes.
	handoffTimeout time.Duration
	changed        holder.Signal
	witness        *podwitness.Witness // nil unless Config.Pods is set

	running  atomic.Bool
	detected bool // pod-aware: own instance looked for (by Run only)
	// succ is the current term's successor choice (Run's goroutine only).
	succ *successorChoice

	mu        sync.Mutex
	term      *holder.Term            // set while fn runs
	stopLead  context.CancelCauseFunc // cancels fn's context
	resigning chan struct{}           // closed when a requested resignation is done
}

// New validates cfg and returns an Elector. It makes no API calls.
func New(cfg Config) (*Elector, error) {
	core, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	client, err := lease.NewClient(core.Leases, core.Namespace, core.Name)
	if err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	m, err := newMetrics(cfg.Registerer, core.Namespace, core.Name)
	if err != nil {
		return nil, err
	}
	e := &Elector{
		cfg: cfg, core: core, client: client, m: m, handoffTimeout: cfg.handoffTimeout(core.Timing),
		log: core.Logger.WithValues("lease", core.Namespace+"/"+core.Name, "identity", core.Identity),
	}
	e.obs = holder.NewObserver(client, core.Clock, core.Timing.RetryPeriod)
	cc := holder.CandidateConfig{Identity: core.Identity, Timing: core.Timing, Clock: core.Clock, Hooks: e.hooks()}
	if cfg.Pods != nil {
		e.witness = podwitness.New(cfg.Pods, e.obs, core.Clock, core.Timing.RetryPeriod)
		cc.Witness = e.witness
	}
	e.cand, err = holder.NewCandidate(e.obs, cc)
	if err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	return e, nil
}

// hooks feed metrics and the log from the renewing and acquiring goroutines;
// never from the one that ends a term at its deadline.
func (e *Elector) hooks() holder.Hooks {
	return holder.Hooks{
		Renewed: func(d time.Duration, err error) {
			e.m.renewed(d, err)
			if err != nil {
				e.log.V(2).Info("renewal failed", "latency", d, "err", err)
			}
		},
		AttemptFailed: func(err error) {
			e.m.attemptFailed(err)
			e.log.V(2).Info("acquisition attempt failed, will retry", "err", err)
		},
		Conflict: e.m.conflict,
	}
}

// Identity returns this candidate's identity.
func (e *Elector) Identity() string { return e.core.Identity }

type tokenKey struct{}

// TokenFrom returns the fencing token of the term whose leadership context is
// ctx (the context Run passes to its work function).
func TokenFrom(ctx context.Context) (lease.Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(lease.Token)
	return t, ok
}

// Run campaigns for the lease and, each time it wins, calls fn with a
// leadership context that carries the term's fencing token (TokenFrom) and
// ends when leadership ends — at the latest at the hard deadline, strictly
// before any follower can take over — or when ctx ends. fn runs on the calling
// goroutine; Run always waits for it to return.
//
// After losing leadership (lost, renew deadline, planned handoff, Resign) Run
// releases the lease if it is still ours and campaigns again. If fn returns
// while still leading, Run releases the lease and returns fn's error (nil for
// work that completed). When ctx ends, Run waits for fn, releases the lease
// (unless KeepLeaseOnCancel) and returns ctx's cause. A permanent API error
// (forbidden, unauthorized, invalid) of the campaign or of the watch ends
// Run with that error.
//
// If fn panics, Run stops renewing and releases the lease before the panic
// continues, so a caller that recovers leaves no term behind.
func (e *Elector) Run(ctx context.Context, fn func(ctx context.Context) error) error {
	if fn == nil {
		return errors.New("election: Run: fn is nil")
	}
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("election: Run is already active on this Elector")
	}
	defer e.running.Store(false)

	// A permanent watch error (RBAC, credentials) ends the campaign and any
	// term with that error as the cause.
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	relay := e.changed.Relay(e.obs) // invariant 1: before the observer runs
	wg.Go(func() { relay(bg) })
	wg.Go(func() {
		if err := e.obs.Run(bg); err != nil && bg.Err() == nil {
			fail(fmt.Errorf("election: watch lease %s/%s: %w", e.core.Namespace, e.core.Name, err))
		}
	})
	defer func() {
		stopBG()
		wg.Wait()
	}()
	if e.witness != nil {
		e.detectInstance(ctx)
		e.m.podAwarePart("witness", true)
		wg.Go(func() {
			if err := e.witness.Run(bg); err != nil {
				e.m.podAwarePart("witness", false)
				e.log.Info("pod-aware takeover off: followers wait the lease duration after a leader's container stops", "err", err)
				e.reportPodAware("witness", false, err.Error())
			}
		})
	}

	for {
		start := e.core.Clock.Now()
		term, err := e.cand.Acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("election: campaign for lease %s/%s: %w", e.core.Namespace, e.core.Name, err)
		}
		e.m.acquired(e.core.Clock.Since(start))
		if done, err := e.lead(ctx, term, fn); done {
			return err
		}
	}
}

// detectInstance looks once for the container instance this process runs
// in, so that its terms publish it; it waits at most a lease duration for
// the kubelet to report it.
func (e *Elector) detectInstance(ctx context.Context) {
	if e.detected {
		return
	}
	e.detected = true
	dctx, cancel := context.WithTimeout(ctx, e.core.Timing.LeaseDuration)
	defer cancel()
	var inst lease.Instance
	var err error
	if e.cfg.Instance != nil {
		inst, err = *e.cfg.Instance, e.cfg.Instance.Validate()
	} else {
		inst, err = podwitness.Detect(dctx, e.cfg.Pods, os.Getenv, nil)
	}
	if err != nil {
		e.log.Info("pod-aware takeover: this process's terms publish no container instance; followers wait the lease duration after it stops", "err", err)
		e.reportPodAware("publish", false, err.Error())
		return
	}
	e.cand.SetInstance(&inst)
	e.witness.SetSelf(&inst)
	e.m.podAwarePart("publish", true)
	e.log.Info("pod-aware takeover: terms publish this container instance", "instance", inst.String())
	e.reportPodAware("publish", true, inst.String())
}

func (e *Elector) reportPodAware(part string, on bool, detail string) {
	if e.cfg.PodAwareReport != nil {
		e.cfg.PodAwareReport(part, on, detail)
	}
}

// lead runs fn for one term and settles the lease afterwards. It reports
// whether Run is over, and with which result.
func (e *Elector) lead(ctx context.Context, term *holder.Term, fn func(context.Context) error) (bool, error) {
	fnCtx, cancel := context.WithCancelCause(term.Context())
	defer cancel(nil)
	// A shutdown chooses the successor first, while the work still runs
	// under its term, and only then stops the work: the lookup is not part
	// of the time without a leader.
	succ := &successorChoice{done: make(chan struct{})}
	stopRelay := context.AfterFunc(ctx, func() {
		defer close(succ.done)
		if e.cfg.Successor != nil {
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), e.core.Timing.RetryPeriod)
			succ.name, succ.asked = e.cfg.Successor(sctx), true
			scancel()
		}
		cancel(context.Cause(ctx))
	})
	defer func() {
		if !stopRelay() {
			<-succ.done // the relay started: wait for it
		}
	}()
	e.succ = succ
	fnCtx = context.WithValue(fnCtx, tokenKey{}, term.Token())

	e.setLeading(term, cancel)
	settled := false
	defer func() {
		if !settled {
			// Invariant 10: fn, or the logger or recorder around it,
			// panicked. It has unwound, so the lease may be released;
			// then the panic continues.
			_, _ = e.settle(ctx, term)
		}
	}()
	e.log.Info("became leader", "token", term.Token(), "transitions", term.Transitions())
	e.event(term, corev1.EventTypeNormal, "%s became leader", e.core.Identity)

	fnErr := fn(fnCtx)

	cause := term.Err()
	if errors.Is(cause, ErrPreempted) && ctx.Err() == nil {
		settled = true
		return false, e.handOver(ctx, term, fnErr)
	}
	resigned, settleErr := e.settle(ctx, term)
	settled = true
	e.log.Info("stopped leading", "token", term.Token(), "cause", causeString(cause, ctx), "workErr", fnErr)
	e.event(term, corev1.EventTypeNormal, "%s stopped leading", e.core.Identity)
	switch {
	case ctx.Err() != nil:
		return true, errors.Join(context.Cause(ctx), settleErr)
	case cause == nil && !resigned:
		// The work returned on its own while leading.
		return true, errors.Join(fnErr, settleErr)
	}
	if settleErr != nil {
		e.log.Info("release after losing leadership failed", "err", settleErr)
	}
	if resigned {
		e.standBack(ctx)
	}
	return false, nil
}

// handOver runs after the work of a preempted term has returned: it offers
// the lease to the preferred candidate and keeps it meanwhile (invariant
// 12). If the target has not taken it within HandoffTimeout, Run's next
// campaign retakes the lease at once (it is still ours) and the work
// resumes under a new term. It never returns an error that ends Run.
func (e *Elector) handOver(ctx context.Context, term *holder.Term, fnErr error) error {
	resigning := e.clearLeading()
	to := term.Snapshot().Record.PreferredHolder
	e.log.Info("stopped leading for a planned handoff", "to", to, "token", term.Token(), "workErr", fnErr)
	e.event(term, corev1.EventTypeNormal, "%s stopped leading to hand over to %s", e.core.Identity, to)
	if taken := term.Offer(ctx, to, e.handoffTimeout); !taken {
		e.log.Info("handoff not taken, resuming", "to", to, "waited", e.handoffTimeout)
		e.event(term, corev1.EventTypeWarning, "%s was offered the lease but did not take it within %v; %s resumes", to, e.handoffTimeout, e.core.Identity)
	}
	term.Abandon()
	if resigning != nil {
		close(resigning)
	}
	return nil
}

// successorChoice is the successor a shutdown chose for the current term;
// done is closed once the choice is made (name and asked are then set).
type successorChoice struct {
	done  chan struct{}
	name  string
	asked bool
}

// settle ends a term whose work has returned: it stops renewing, releases
// the lease (or leaves it to expire on shutdown with KeepLeaseOnCancel) and
// completes a pending Resign. It reports whether a Resign was pending.
func (e *Elector) settle(ctx context.Context, term *holder.Term) (bool, error) {
	resigning := e.clearLeading()
	release := ctx.Err() == nil || !e.cfg.KeepLeaseOnCancel
	if release && ctx.Err() != nil && e.succ != nil {
		<-e.succ.done // the relay of the shutdown has run (ctx is done)
		if to := e.succ.name; e.succ.asked && to != "" && to != e.core.Identity {
			term.SetSuccessor(to)
			e.log.Info("releasing the lease to a successor", "successor", to)
		}
	}
	err := term.Settle(ctx, release, e.core.Timing.RenewDeadline)
	if resigning != nil {
		close(resigning)
	}
	return resigning != nil, err
}

func causeString(cause error, ctx context.Context) string {
	switch {
	case ctx.Err() != nil:
		return "shutdown"
	case cause == nil:
		return "work returned"
	default:
		return cause.Error()
	}
}

// standBack waits, after a resignation, until another candidate leads or one
// lease duration has passed, so that this candidate does not take the lease
// straight back.
func (e *Elector) standBack(ctx context.Context) {
	t := e.core.Clock.NewTimer(e.core.Timing.LeaseDuration)
	defer t.Stop()
	for {
		st, changed := e.obs.State()
		if h := st.Holder(); h != "" && h != e.core.Identity {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			return
		case <-changed:
		}
	}
}

func (e *Elector) setLeading(term *holder.Term, cancel context.CancelCauseFunc) {
	e.mu.Lock()
	e.term, e.stopLead = term, cancel
	e.mu.Unlock()
	e.changed.Notify()
	e.m.leading(true)
}

func (e *Elector) clearLeading() (resigning chan struct{}) {
	e.mu.Lock()
	resigning = e.resigning
	e.term, e.stopLead, e.resigning = nil, nil, nil
	e.mu.Unlock()
	e.changed.Notify()
	e.m.leading(false)
	return resigning
}

func (e *Elector) event(term *holder.Term, kind, format string, args ...any) {
	if e.cfg.Recorder == nil {
		return
	}
	e.cfg.Recorder.Eventf(term.Snapshot().Object(), kind, "LeaderElection", format, args...)
}

// Resign ends this candidate's leadership: the work's context is cancelled
// (cause ErrResigned), and once the work has returned the lease is released.
// The candidate then stands back for one lease duration, or until another
// leads, before it campaigns again. Resign returns when the release is done,
// nil at once if not leading, or ctx.Err().
func (e *Elector) Resign(ctx context.Context) error {
	e.mu.Lock()
	if e.term == nil {
		e.mu.Unlock()
		return nil
	}
	if e.resigning == nil {
		e.resigning = make(chan struct{})
	}
	done := e.resigning
	e.stopLead(ErrResigned)
	e.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
