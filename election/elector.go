package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/leasehold/leasehold/lease"
)

// ErrResigned is the cause of the leadership context when Resign ends the term.
var ErrResigned = errors.New("election: resigned")

// ErrNotRunning is returned by calls that need Run to be active.
var ErrNotRunning = errors.New("election: Run is not active")

// Elector campaigns for one Lease and runs work only while it leads. It is
// safe for concurrent use; Run may be active at most once at a time.
type Elector struct {
	cfg    Config
	client *lease.Client
	obs    *lease.Observer
	cand   *lease.Candidate
	m      *metrics
	log    logr.Logger

	running atomic.Bool

	mu        sync.Mutex
	term      *lease.Term             // set while fn runs
	stopLead  context.CancelCauseFunc // cancels fn's context
	resigning chan struct{}           // closed when a requested resignation is done
	changed   chan struct{}
}

// New validates cfg and returns an Elector. It makes no API calls.
func New(cfg Config) (*Elector, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	client, err := lease.NewClient(cfg.Leases, cfg.Namespace, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	m, err := newMetrics(cfg.Registerer, cfg.Namespace, cfg.Name)
	if err != nil {
		return nil, err
	}
	e := &Elector{
		cfg: cfg, client: client, m: m, changed: make(chan struct{}),
		log: cfg.Logger.WithValues("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity),
	}
	e.obs = lease.NewObserver(client, cfg.Clock, cfg.RetryPeriod)
	e.cand, err = lease.NewCandidate(e.obs, cfg.Identity, cfg.timing(), cfg.Clock, lease.Hooks{
		Renewed: func(d time.Duration, err error) {
			m.renewed(d, err)
			if err != nil {
				e.log.V(2).Info("renewal failed", "latency", d, "err", err)
			}
		},
		AttemptFailed: func(err error) {
			m.attemptFailed(err)
			e.log.V(2).Info("acquisition attempt failed, will retry", "err", err)
		},
		Conflict: m.conflict,
	})
	if err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	return e, nil
}

// Identity returns this candidate's identity.
func (e *Elector) Identity() string { return e.cfg.Identity }

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
// releases the lease if it is still ours and campaigns again. When ctx ends,
// Run waits for fn, releases the lease (unless ReleaseOnCancel is false) and
// returns ctx.Err(); a permanent error of its watch (forbidden, unauthorized)
// ends Run the same way with that error. If fn returns while still leading, Run releases the lease
// and returns fn's error (nil for work that completed). A permanent API error
// (forbidden, unauthorized, invalid) ends Run with that error.
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
	_, changed := e.obs.State()
	wg.Go(func() { e.relay(bg, changed) })
	wg.Go(func() {
		if err := e.obs.Run(bg); err != nil && bg.Err() == nil {
			fail(fmt.Errorf("election: watch lease %s/%s: %w", e.cfg.Namespace, e.cfg.Name, err))
		}
	})
	defer func() {
		stopBG()
		wg.Wait()
	}()

	for {
		start := e.cfg.Clock.Now()
		term, err := e.cand.Acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("election: campaign for lease %s/%s: %w", e.cfg.Namespace, e.cfg.Name, err)
		}
		e.m.acquired(e.cfg.Clock.Since(start))
		done, err := e.lead(ctx, term, fn)
		if done {
			return err
		}
	}
}

// lead runs fn for one term and settles the lease afterwards. It reports
// whether Run is over, and with which result.
func (e *Elector) lead(ctx context.Context, term *lease.Term, fn func(context.Context) error) (bool, error) {
	fnCtx, cancel := context.WithCancelCause(term.Context())
	defer cancel(nil)
	stopRelay := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	defer stopRelay()
	fnCtx = context.WithValue(fnCtx, tokenKey{}, term.Token())

	e.setLeading(term, cancel)
	e.log.Info("became leader", "token", term.Token(), "transitions", term.Transitions())
	e.event(term, corev1.EventTypeNormal, "%s became leader", e.cfg.Identity)

	fnErr := fn(fnCtx)

	resigning := e.clearLeading()
	cause := term.Err()
	e.log.Info("stopped leading", "token", term.Token(), "cause", causeString(cause, ctx), "workErr", fnErr)
	e.event(term, corev1.EventTypeNormal, "%s stopped leading", e.cfg.Identity)

	settle := func() error {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.RenewDeadline)
		defer rcancel()
		return term.Release(rctx)
	}
	switch {
	case ctx.Err() != nil:
		var err error
		if *e.cfg.ReleaseOnCancel {
			err = settle()
		} else {
			term.Abandon()
		}
		if resigning != nil {
			close(resigning)
		}
		return true, errors.Join(context.Cause(ctx), err)
	case cause == nil && resigning == nil:
		// The work returned on its own while leading.
		if err := settle(); err != nil {
			return true, errors.Join(fnErr, err)
		}
		return true, fnErr
	}
	if err := settle(); err != nil {
		e.log.Info("release after losing leadership failed", "err", err)
	}
	if resigning != nil {
		close(resigning)
		e.standBack(ctx)
	}
	return false, nil
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
	t := e.cfg.Clock.NewTimer(e.cfg.LeaseDuration)
	defer t.Stop()
	for {
		st, changed := e.obs.State()
		if h := st.Holder(); h != "" && h != e.cfg.Identity {
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

func (e *Elector) setLeading(term *lease.Term, cancel context.CancelCauseFunc) {
	e.mu.Lock()
	e.term, e.stopLead = term, cancel
	e.notifyLocked()
	e.mu.Unlock()
	e.m.leading(true)
}

func (e *Elector) clearLeading() (resigning chan struct{}) {
	e.mu.Lock()
	resigning = e.resigning
	e.term, e.stopLead, e.resigning = nil, nil, nil
	e.notifyLocked()
	e.mu.Unlock()
	e.m.leading(false)
	return resigning
}

func (e *Elector) event(term *lease.Term, kind, format string, args ...any) {
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

// Handoff asks the current leader to hand the lease to the candidate with
// identity to, by naming it the preferred holder (see package doc; `leasehold
// handoff` can do too). The leader stops its work, releases, and the
// preferred candidate takes over at once; other candidates hold back for one
// lease duration. While Run is active, Handoff waits until to leads and
// returns an error if a different candidate takes over instead; otherwise it
// returns once the request is written.
func (e *Elector) Handoff(ctx context.Context, to string) error {
	if to == "" {
		return errors.New("election: Handoff: target identity is empty")
	}
	from, err := RequestHandoff(ctx, e.client, to)
	if err != nil {
		return err
	}
	if from == nil {
		return nil // already held by to
	}
	e.obs.Offer(from)
	if !e.running.Load() {
		return nil
	}
	prev := from.Record.Holder
	for {
		st, changed := e.obs.State()
		switch h := st.Holder(); {
		case h == to:
			return nil
		case h != "" && h != prev:
			return fmt.Errorf("election: handoff of lease %s/%s to %q: %q took over instead", e.cfg.Namespace, e.cfg.Name, to, h)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// RequestHandoff names to the preferred holder of the lease, retrying on
// conflicts. It returns the written snapshot, or nil if to already holds it.
func RequestHandoff(ctx context.Context, c *lease.Client, to string) (*lease.Snapshot, error) {
	for attempt := 0; ; attempt++ {
		s, err := c.Get(ctx)
		if err != nil {
			return nil, fmt.Errorf("election: handoff: %w", err)
		}
		if s.Record.Holder == to {
			return nil, nil
		}
		rec := s.Record
		rec.PreferredHolder = to
		out, err := c.Update(ctx, s, rec, 0)
		if errors.Is(err, lease.ErrConflict) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("election: handoff: %w", err)
		}
		return out, nil
	}
}
