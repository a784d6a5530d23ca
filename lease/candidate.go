package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Timing is the timing of a holder, with the meaning client-go gives the same
// names.
type Timing struct {
	// LeaseDuration is written to the Lease: how long others wait after
	// seeing the last change before they may take it. Whole seconds.
	LeaseDuration time.Duration
	// RenewDeadline is how long a holder keeps its term without a successful
	// renewal, counted from when that renewal was sent. Must be less than
	// LeaseDuration; the margin is what absorbs clock-rate differences.
	RenewDeadline time.Duration
	// RetryPeriod is the interval between renewals, and between attempts
	// after a transient API error.
	RetryPeriod time.Duration
}

// Hooks are optional callbacks for metrics and logs. They are called
// synchronously and must not block.
type Hooks struct {
	// Renewed is called after every renewal attempt with its latency.
	Renewed func(latency time.Duration, err error)
	// AttemptFailed is called when an acquisition attempt fails for a reason
	// other than losing a race (conflict).
	AttemptFailed func(err error)
	// Conflict is called when an acquisition attempt loses a race.
	Conflict func()
}

// Candidate acquires one Lease for one identity, driven by an Observer: it
// waits on the watch for the lease to be released or to expire in its own
// view and then tries one conditional update. It never polls while the lease
// is validly held by someone else.
//
// A Candidate is safe for concurrent use, but holds at most one term at a
// time by design of its callers (election, lock).
type Candidate struct {
	obs      *Observer
	identity string
	timing   Timing
	clock    clock.Clock
	hooks    Hooks

	mu           sync.Mutex
	ownRV        string // version we last wrote as holder: we may take it back at once
	noPreemption bool
}

// DisablePreemption makes this candidate's terms ignore spec.preferredHolder
// naming someone else: a lock holder keeps its lock until it releases it; the
// preferred candidate then gets it first. Call it before Acquire.
func (c *Candidate) DisablePreemption() {
	c.mu.Lock()
	c.noPreemption = true
	c.mu.Unlock()
}

func (c *Candidate) preemptible() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.noPreemption
}

// NewCandidate returns a Candidate for identity on the Lease watched by obs.
// The caller runs obs.Run for as long as it uses the Candidate.
func NewCandidate(obs *Observer, identity string, timing Timing, clk clock.Clock, hooks Hooks) (*Candidate, error) {
	var errs []error
	if obs == nil {
		errs = append(errs, errors.New("observer is nil"))
	}
	if identity == "" {
		errs = append(errs, errors.New("identity is empty"))
	}
	errs = append(errs, timing.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("lease: NewCandidate: %w", err)
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Candidate{obs: obs, identity: identity, timing: timing, clock: clk, hooks: hooks}, nil
}

// Validate checks the timing and names every bad field.
func (t Timing) Validate() error {
	var errs []error
	if t.LeaseDuration < time.Second || t.LeaseDuration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("LeaseDuration %v must be a whole number of seconds, at least 1s (the Lease stores seconds)", t.LeaseDuration))
	}
	if t.RenewDeadline <= 0 {
		errs = append(errs, fmt.Errorf("RenewDeadline %v must be positive", t.RenewDeadline))
	} else if t.RenewDeadline >= t.LeaseDuration {
		errs = append(errs, fmt.Errorf("RenewDeadline %v must be less than LeaseDuration %v", t.RenewDeadline, t.LeaseDuration))
	}
	if t.RetryPeriod <= 0 {
		errs = append(errs, fmt.Errorf("RetryPeriod %v must be positive", t.RetryPeriod))
	} else if t.RetryPeriod >= t.RenewDeadline && t.RenewDeadline > 0 {
		errs = append(errs, fmt.Errorf("RetryPeriod %v must be less than RenewDeadline %v, or a single failed renewal ends the term", t.RetryPeriod, t.RenewDeadline))
	}
	return errors.Join(errs...)
}

// Identity returns the candidate's identity.
func (c *Candidate) Identity() string { return c.identity }

// Observer returns the Observer the candidate follows.
func (c *Candidate) Observer() *Observer { return c.obs }

// ErrHeld is returned by TryAcquire when someone else validly holds the lease.
type ErrHeld struct {
	// Holder is the current holder.
	Holder string
	// ExpiresAt is when the lease expires in this process's view, if its
	// holder stops renewing.
	ExpiresAt time.Time
	// PreferredFor is set when the lease is released but reserved for a
	// planned handoff to another identity.
	PreferredFor string
}

func (e *ErrHeld) Error() string {
	if e.PreferredFor != "" {
		return fmt.Sprintf("lease: reserved for %q (planned handoff) until %s", e.PreferredFor, e.ExpiresAt.Format(time.RFC3339Nano))
	}
	return fmt.Sprintf("lease: held by %q, expires at %s unless renewed", e.Holder, e.ExpiresAt.Format(time.RFC3339Nano))
}

// Acquire blocks until this candidate holds the lease and returns the new
// Term, or returns when ctx ends (ctx.Err()) or on a permanent API error
// (forbidden, unauthorized, invalid). Transient errors are retried every
// RetryPeriod and reported through Hooks.AttemptFailed.
func (c *Candidate) Acquire(ctx context.Context) (*Term, error) {
	raced, racedRV := false, ""
	for {
		st, changed := c.obs.State()
		if st.Err != nil && Permanent(st.Err) {
			return nil, st.Err
		}
		wait := time.Duration(-1) // -1: until the state changes
		if st.Synced {
			if raced && versionOf(st) == racedRV {
				// We lost a race on this version; the winner's write is on
				// its way through the watch. Re-read if it does not arrive.
				wait = c.timing.RetryPeriod
			} else if d := c.waitFor(st, c.clock.Now()); d > 0 {
				raced = false
				wait = d
			} else {
				raced = false
				term, err := c.attempt(ctx, st)
				switch {
				case err == nil:
					return term, nil
				case errors.Is(err, ErrConflict), errors.Is(err, ErrAlreadyExists):
					if c.hooks.Conflict != nil {
						c.hooks.Conflict()
					}
					raced, racedRV = true, versionOf(st)
					continue
				case ctx.Err() != nil:
					return nil, ctx.Err()
				case Permanent(err):
					return nil, err
				default:
					if c.hooks.AttemptFailed != nil {
						c.hooks.AttemptFailed(err)
					}
					wait = c.timing.RetryPeriod
				}
			}
		}
		timedOut, err := c.sleep(ctx, changed, wait)
		if err != nil {
			return nil, err
		}
		if timedOut && raced {
			c.obs.Resync()
			raced = false
		}
	}
}

func versionOf(st State) string {
	if st.Lease == nil {
		return ""
	}
	return st.Lease.ResourceVersion
}

// TryAcquire makes at most one attempt. When the lease is validly held by
// someone else it returns *ErrHeld without writing anything.
func (c *Candidate) TryAcquire(ctx context.Context) (*Term, error) {
	st, changed := c.obs.State()
	if !st.Synced {
		// The first read is in flight; wait for it.
		for !st.Synced {
			if st.Err != nil {
				return nil, st.Err
			}
			if _, err := c.sleep(ctx, changed, -1); err != nil {
				return nil, err
			}
			st, changed = c.obs.State()
		}
	}
	if d := c.waitFor(st, c.clock.Now()); d > 0 {
		held := &ErrHeld{Holder: st.Holder(), ExpiresAt: c.clock.Now().Add(d)}
		if st.Lease != nil && !st.Lease.Record.Held() {
			held.PreferredFor = st.Lease.Record.PreferredHolder
		}
		return nil, held
	}
	return c.attempt(ctx, st)
}

// waitFor returns how long to wait before the lease may be taken in this
// process's view, 0 if it may be taken now.
func (c *Candidate) waitFor(st State, now time.Time) time.Duration {
	if st.Lease == nil {
		return 0
	}
	rec := st.Lease.Record
	if !rec.Held() {
		if rec.PreferredHolder != "" && rec.PreferredHolder != c.identity {
			// Planned handoff: leave the preferred candidate one lease
			// duration to take over before competing.
			return st.ObservedAt.Add(c.timing.LeaseDuration).Sub(now)
		}
		return 0
	}
	if rec.Holder == c.identity {
		c.mu.Lock()
		own := c.ownRV == st.Lease.ResourceVersion
		c.mu.Unlock()
		if own {
			return 0 // our own last write: our previous term has ended here
		}
	}
	d := rec.LeaseDuration
	if d <= 0 {
		d = c.timing.LeaseDuration
	}
	return st.ObservedAt.Add(d).Sub(now)
}

// sleep waits for a change of state, d (unless negative) or the end of ctx,
// and reports whether d elapsed.
func (c *Candidate) sleep(ctx context.Context, changed <-chan struct{}, d time.Duration) (bool, error) {
	return Wait(ctx, c.clock, changed, d)
}

// Wait blocks until changed is closed, d has passed on clk (unless d is
// negative: no timeout) or ctx ends, and reports whether d elapsed. It
// returns ctx.Err() when ctx ends first.
func Wait(ctx context.Context, clk clock.Clock, changed <-chan struct{}, d time.Duration) (bool, error) {
	var timeout <-chan time.Time
	if d >= 0 {
		t := clk.NewTimer(d)
		defer t.Stop()
		timeout = t.C()
	}
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-changed:
		return false, nil
	case <-timeout:
		return true, nil
	}
}

// attempt tries to take the lease from the observed state with one
// conditional write (two when the Lease does not exist yet: it is created
// released, so that every term's token is the version its acquisition
// replaced).
func (c *Candidate) attempt(ctx context.Context, st State) (*Term, error) {
	client := c.obs.Client()
	base := st.Lease
	if base == nil {
		now := c.clock.Now()
		created, err := client.Create(ctx, Record{}.Released(now))
		if err != nil {
			return nil, err
		}
		c.obs.Offer(created)
		base = created
	}
	tok, err := tokenFromResourceVersion(base.ResourceVersion)
	if err != nil {
		return nil, err
	}
	sent := c.clock.Now()
	rec := Record{
		Holder:        c.identity,
		LeaseDuration: c.timing.LeaseDuration,
		AcquireTime:   sent,
		RenewTime:     sent,
		Transitions:   base.Record.Transitions + 1,
		Strategy:      base.Record.Strategy,
	}
	reqCtx, cancel := context.WithTimeout(ctx, c.timing.RenewDeadline)
	defer cancel()
	snap, err := client.Update(reqCtx, base, rec, tok)
	if err != nil {
		return nil, err
	}
	c.setOwn(snap.ResourceVersion)
	c.obs.Offer(snap)
	return c.startTerm(ctx, snap, tok, sent), nil
}

func (c *Candidate) setOwn(rv string) {
	c.mu.Lock()
	c.ownRV = rv
	c.mu.Unlock()
}
