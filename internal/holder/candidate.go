package holder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/lease"
)

// Hooks are optional callbacks for metrics and logs. They run on the
// goroutine that renews (Renewed) or acquires (the others), never on the one
// that enforces the hard deadline (invariant 6), so a hook that blocks delays
// renewals, and may cost the term, but never makes a term outlive its
// deadline. They should return quickly.
type Hooks struct {
	// Renewed is called after every renewal attempt with its latency.
	Renewed func(latency time.Duration, err error)
	// AttemptFailed is called when an acquisition attempt fails for a reason
	// other than losing a race (conflict).
	AttemptFailed func(err error)
	// Conflict is called when an acquisition attempt loses a race.
	Conflict func()
}

// CandidateConfig configures a Candidate.
type CandidateConfig struct {
	Identity string
	Timing   Timing
	Clock    clock.Clock // nil: the real clock
	Hooks    Hooks
	// KeepOnPreference makes terms ignore a preferred holder naming someone
	// else: a lock holder keeps its lock until it releases it, and the
	// preferred candidate gets it first then. Electors leave it false: a
	// preferred holder preempts them (ErrPreempted).
	KeepOnPreference bool
	// Kind, if set, is recorded on the Lease at every acquisition
	// (lease.KindAnnotation); a Lease recorded as another kind is refused
	// with a *KindError and never written.
	Kind string
	// Labels are set on the Lease by every acquiring write and when the
	// Lease is created.
	Labels map[string]string
	// Decorate, if set, changes the object of every acquiring write (an
	// acquisition or an adoption) just before it is sent, for annotations
	// of the caller's own (a lock's queue entry).
	Decorate func(*lease.Snapshot) *lease.Snapshot
	// Instance, if set, is the container instance this process runs in,
	// recorded on the Lease at every acquisition (lease.InstanceAnnotation)
	// so that followers with a Witness can take over as soon as the kubelet
	// reports it stopped.
	Instance *lease.Instance
	// Witness, if set, lets the candidate take a lease before it expires
	// when the holder's published instance is confirmed stopped
	// (invariant 14). Whoever feeds it must call the Observer's Poke after
	// new evidence, so that a waiting Acquire looks again.
	Witness Witness
}

// Witness reports positive evidence that a container instance has stopped
// for good: it may answer true only when no process of that instance can
// run any more, and must never answer true from the absence of news.
type Witness interface {
	Stopped(inst lease.Instance) bool
}

// KindError is returned when a Lease is recorded as another kind of lock.
type KindError struct {
	Namespace, Name string
	// Want is the kind of the caller, Found the kind on the Lease.
	Want, Found string
}

// ErrKindMismatch is matched (errors.Is) by every *KindError.
var ErrKindMismatch = errors.New("lease used as another kind of lock")

// Is matches ErrKindMismatch.
func (e *KindError) Is(target error) bool { return target == ErrKindMismatch }

func (e *KindError) Error() string {
	return fmt.Sprintf("lease %s/%s is used as %s, not as %s: use the same kind and permit count everywhere, or another name", e.Namespace, e.Name, describeKind(e.Found), describeKind(e.Want))
}

func describeKind(k string) string {
	if n, ok := strings.CutPrefix(k, "semaphore/"); ok {
		return "a semaphore with " + n + " permits"
	}
	if k == "mutex" {
		return "a mutex (a lock with one holder)"
	}
	return fmt.Sprintf("%q", k)
}

// Candidate acquires one Lease for one identity, driven by an Observer: it
// waits on the watch for the lease to be released or to expire in its own
// view and then tries one conditional update. It never polls while the lease
// is validly held by someone else.
//
// A Candidate is safe for concurrent use, but holds at most one term at a
// time by design of its callers (election, lock).
type Candidate struct {
	obs *Observer
	cfg CandidateConfig

	mu       sync.Mutex
	ownRV    string          // version we last wrote as holder: we may take it back at once (invariant 5)
	instance *lease.Instance // published with each acquisition; starts as cfg.Instance
}

// NewCandidate returns a Candidate on the Lease watched by obs. The caller
// runs obs.Run for as long as it uses the Candidate.
func NewCandidate(obs *Observer, cfg CandidateConfig) (*Candidate, error) {
	var errs []error
	if obs == nil {
		errs = append(errs, errors.New("observer is nil"))
	}
	if cfg.Identity == "" {
		errs = append(errs, errors.New("identity is empty"))
	}
	errs = append(errs, cfg.Timing.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("holder: new candidate: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &Candidate{obs: obs, cfg: cfg, instance: cfg.Instance}, nil
}

// SetInstance sets the container instance published with the next
// acquisitions (nil: none).
func (c *Candidate) SetInstance(inst *lease.Instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.instance = inst
}

// Identity returns the candidate's identity.
func (c *Candidate) Identity() string { return c.cfg.Identity }

// Observer returns the Observer the candidate follows.
func (c *Candidate) Observer() *Observer { return c.obs }

// HeldError is returned by TryAcquire when someone else validly holds the
// lease, or it is reserved for another candidate.
type HeldError struct {
	// Holder is the current holder, "" when the lease is reserved.
	Holder string
	// ExpiresAt is when the lease (or the reservation) expires in this
	// process's view, if its holder stops renewing.
	ExpiresAt time.Time
	// PreferredFor is set when the lease is released but reserved for a
	// planned handoff to another identity.
	PreferredFor string
}

func (e *HeldError) Error() string {
	if e.PreferredFor != "" {
		return fmt.Sprintf("reserved for %q (planned handoff) until %s", e.PreferredFor, e.ExpiresAt.Format(time.RFC3339Nano))
	}
	return fmt.Sprintf("held by %q, expires at %s unless renewed", e.Holder, e.ExpiresAt.Format(time.RFC3339Nano))
}

// Acquire blocks until this candidate holds the lease and returns the new
// Term, or returns when ctx ends (ctx.Err()) or on a permanent API error
// (forbidden, unauthorized, invalid). Transient errors are retried every
// RetryPeriod and reported through Hooks.AttemptFailed.
func (c *Candidate) Acquire(ctx context.Context) (*Term, error) {
	var raced string // the version we lost a race on; "" when none
	for {
		st, changed := c.obs.State()
		wait, term, err := c.step(ctx, st, &raced)
		if term != nil || err != nil {
			return term, err
		}
		timedOut, err := Wait(ctx, c.cfg.Clock, changed, wait)
		if err != nil {
			return nil, err
		}
		if timedOut && raced != "" {
			// The winner's write never arrived through the watch: it
			// may be behind. Re-read, and decide on what the read found.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-c.obs.Resync():
			}
			raced = ""
		}
	}
}

// step decides what to do with one observed state: attempt, or wait (for a
// change, or at most the returned duration; -1: no limit). raced carries the
// version of a lost race across steps.
func (c *Candidate) step(ctx context.Context, st State, raced *string) (time.Duration, *Term, error) {
	switch {
	case st.Err != nil && lease.Permanent(st.Err):
		return 0, nil, st.Err
	case !st.Synced:
		return -1, nil, nil
	case c.kindErr(st) != nil:
		return 0, nil, c.kindErr(st)
	case *raced != "" && versionOf(st) == *raced:
		// We lost a race on this version; the winner's write is on its way
		// through the watch. Re-read if it does not arrive.
		return c.cfg.Timing.RetryPeriod, nil, nil
	}
	*raced = ""
	if d := c.waitFor(st, c.cfg.Clock.Now()); d > 0 {
		return d, nil, nil
	}
	term, base, err := c.attempt(ctx, st)
	switch {
	case err == nil:
		return 0, term, nil
	case errors.Is(err, lease.ErrConflict), errors.Is(err, lease.ErrAlreadyExists):
		if c.cfg.Hooks.Conflict != nil {
			c.cfg.Hooks.Conflict()
		}
		*raced = base
		return c.cfg.Timing.RetryPeriod, nil, nil
	case ctx.Err() != nil:
		return 0, nil, ctx.Err()
	case lease.Permanent(err):
		return 0, nil, err
	}
	if c.cfg.Hooks.AttemptFailed != nil {
		c.cfg.Hooks.AttemptFailed(err)
	}
	return c.cfg.Timing.RetryPeriod, nil, nil
}

// CheckKind returns a *KindError when st shows a Lease recorded as another
// kind of lock than this candidate's, else nil.
func (c *Candidate) CheckKind(st State) error { return c.kindErr(st) }

// kindErr refuses a Lease that a lock of another kind has recorded.
func (c *Candidate) kindErr(st State) error {
	if c.cfg.Kind == "" || st.Lease == nil || st.Lease.Kind == "" || st.Lease.Kind == c.cfg.Kind {
		return nil
	}
	return &KindError{Namespace: st.Lease.Namespace, Name: st.Lease.Name, Want: c.cfg.Kind, Found: st.Lease.Kind}
}

func versionOf(st State) string {
	if st.Lease == nil {
		return ""
	}
	return st.Lease.ResourceVersion
}

// TryAcquire makes at most one attempt once the lease has been read. When
// the lease is validly held (or reserved) by someone else it returns
// *HeldError without writing anything.
func (c *Candidate) TryAcquire(ctx context.Context) (*Term, error) {
	st, changed := c.obs.State()
	for !st.Synced {
		// The first read is in flight; wait for it.
		if st.Err != nil {
			return nil, st.Err
		}
		if _, err := Wait(ctx, c.cfg.Clock, changed, -1); err != nil {
			return nil, err
		}
		st, changed = c.obs.State()
	}
	if err := c.kindErr(st); err != nil {
		return nil, err
	}
	if d := c.waitFor(st, c.cfg.Clock.Now()); d > 0 {
		held := &HeldError{Holder: st.Holder(), ExpiresAt: c.cfg.Clock.Now().Add(d)}
		if st.Lease != nil && !st.Lease.Record.Held() {
			held.PreferredFor = st.Lease.Record.PreferredHolder
		}
		return nil, held
	}
	term, _, err := c.attempt(ctx, st)
	return term, err
}

// waitFor returns how long to wait before the lease may be taken in this
// process's view, 0 if it may be taken now.
func (c *Candidate) waitFor(st State, now time.Time) time.Duration {
	if st.Lease == nil {
		return 0
	}
	rec := st.Lease.Record
	if !rec.Held() {
		if rec.PreferredHolder != "" && rec.PreferredHolder != c.cfg.Identity {
			// Planned handoff: leave the preferred candidate a head start
			// before competing for the released lease.
			return st.ObservedAt.Add(c.reservation()).Sub(now)
		}
		return 0
	}
	if rec.Holder != c.cfg.Identity && st.Lease.OfferedTo == c.cfg.Identity {
		// Invariant 12: the holder offers us the lease; its work has
		// stopped, and it resumes only after replacing this version.
		return 0
	}
	if inst := st.Lease.Instance; inst != nil && c.cfg.Witness != nil && c.cfg.Witness.Stopped(*inst) {
		// Invariant 14: the instance that took this term has stopped, as
		// the kubelet confirmed; nothing of it can renew or act any more,
		// and its writes in flight are conditional (4) and fenced (8).
		return 0
	}
	if rec.Holder == c.cfg.Identity && c.isOwn(st.Lease.ResourceVersion) {
		// Invariant 5: our own last write; our previous term has ended
		// here. A record naming us at a version we did not write (an
		// earlier process with our identity) waits like any other.
		return 0
	}
	// Invariant 2: the local time the record was seen, plus its own
	// duration.
	d := rec.LeaseDuration
	if d <= 0 {
		d = c.cfg.Timing.LeaseDuration
	}
	return st.ObservedAt.Add(d).Sub(now)
}

// decorate adds the kind, the labels, the instance (for the term's
// transition count) and the caller's annotations to the object of an
// acquiring write.
func (c *Candidate) decorate(base *lease.Snapshot, transitions int32) *lease.Snapshot {
	if c.cfg.Kind != "" {
		base = lease.WithAnnotation(base, lease.KindAnnotation, c.cfg.Kind)
	}
	c.mu.Lock()
	inst := c.instance
	c.mu.Unlock()
	if inst != nil {
		base = lease.WithAnnotation(base, lease.InstanceAnnotation, lease.InstanceValue(*inst, transitions))
	}
	for k, v := range c.cfg.Labels {
		base = lease.WithLabel(base, k, v)
	}
	if c.cfg.Decorate != nil {
		base = c.cfg.Decorate(base)
	}
	return base
}

// Free reports whether the lease in st may be taken now in this
// candidate's view: released (and not reserved for another), expired, or
// offered to it (the rules of TryAcquire, without writing).
func (c *Candidate) Free(st State) bool {
	return st.Synced && c.waitFor(st, c.cfg.Clock.Now()) <= 0
}

// Take makes one acquiring attempt on st without judging whether the lease
// may be taken: for a lock whose queue decides who takes a lease that is
// free, expired, or granted to a waiter that left (lock's package doc). The
// write is conditional on st's version (invariant 4).
func (c *Candidate) Take(ctx context.Context, st State) (*Term, error) {
	term, _, err := c.attempt(ctx, st)
	return term, err
}

// Adopt starts a term on a lease that another process granted to this
// candidate: a record that already names this identity, written by the
// previous holder as it released (a lock's hand-over). Invariant 13: the
// term begins with a conditional write of its own, and its hard deadline is
// counted from when that write was sent, never from the grant, whose send
// time this process does not know. The token is the grant's (the version
// the grant replaced, recorded in TokenAnnotation); a grant without one is
// refused.
func (c *Candidate) Adopt(ctx context.Context, granted *lease.Snapshot) (*Term, error) {
	if granted == nil || granted.Record.Holder != c.cfg.Identity || granted.Token.IsZero() {
		return nil, fmt.Errorf("holder: adopt: the lease is not granted to %q with a token", c.cfg.Identity)
	}
	base := c.decorate(granted, granted.Record.Transitions)
	sent := c.cfg.Clock.Now()
	rec := base.Record
	rec.LeaseDuration = c.cfg.Timing.LeaseDuration
	rec.RenewTime = sent
	reqCtx, cancel := context.WithTimeout(ctx, c.cfg.Timing.RenewDeadline)
	defer cancel()
	snap, err := c.obs.Client().Update(reqCtx, base, rec, granted.Token) // invariant 4
	if err != nil {
		return nil, err
	}
	c.setOwn(snap.ResourceVersion)
	c.obs.Offer(snap)
	return c.startTerm(ctx, snap, granted.Token, sent), nil
}

// AdoptFrom starts a term at once on a lease granted to this candidate,
// without waiting for a write: the grant was written after the granter
// read a write of this process that was sent at since (a lock waiter's
// queue entry, whose version the grant names), so every other process
// sees the grant no earlier than since and waits a LeaseDuration from
// then (invariant 13). The hard deadline is RenewDeadline after since; the
// adopting write (decorated, conditional on the grant's version) is the
// term's first renewal, due RetryPeriod after since but no sooner than
// half the time left to the deadline (capped at a RetryPeriod), so that a
// term released soon after the grant never writes; it moves the deadline
// like any renewal. The grant must name this identity with a token and a
// lease duration no shorter than this candidate's.
func (c *Candidate) AdoptFrom(ctx context.Context, granted *lease.Snapshot, since time.Time) (*Term, error) {
	if granted == nil || granted.Record.Holder != c.cfg.Identity || granted.Token.IsZero() {
		return nil, fmt.Errorf("holder: adopt: the lease is not granted to %q with a token", c.cfg.Identity)
	}
	if granted.Record.LeaseDuration < c.cfg.Timing.LeaseDuration {
		return nil, fmt.Errorf("holder: adopt: the grant's lease duration %v is shorter than %v", granted.Record.LeaseDuration, c.cfg.Timing.LeaseDuration)
	}
	t := c.newTerm(ctx, granted, granted.Token, since)
	t.adopting = true
	t.begin()
	return t, nil
}

// reservation is how long a released lease stays reserved for its preferred
// holder in this candidate's view: two retry periods, at most the lease
// duration. The lease is free, so a short reservation is safe; it is only
// the preferred candidate's head start, and a preferred candidate that is
// not there (a typo, a crash) blocks the others no longer than that.
func (c *Candidate) reservation() time.Duration {
	return min(2*c.cfg.Timing.RetryPeriod, c.cfg.Timing.LeaseDuration)
}

func (c *Candidate) isOwn(rv string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ownRV == rv
}

func (c *Candidate) setOwn(rv string) {
	c.mu.Lock()
	c.ownRV = rv
	c.mu.Unlock()
}

// attempt tries to take the lease from the observed state with one
// conditional write (two when the Lease does not exist yet: it is created
// released, so that every term's token is the version its acquisition
// replaced). It returns the version it wrote on, "" when it did not get
// that far.
func (c *Candidate) attempt(ctx context.Context, st State) (*Term, string, error) {
	client := c.obs.Client()
	base := st.Lease
	if base == nil {
		created, err := client.CreateLabelled(ctx, lease.Record{}.Released(c.cfg.Clock.Now()), c.cfg.Labels, nil)
		if err != nil {
			return nil, "", err
		}
		c.obs.Offer(created)
		base = created
	}
	// Invariant 8: the token is the version this write replaces.
	tok, err := lease.TokenOf(base.ResourceVersion)
	if err != nil {
		return nil, base.ResourceVersion, err
	}
	base = c.decorate(base, base.Record.Transitions+1)
	sent := c.cfg.Clock.Now()
	rec := lease.Record{
		Holder:        c.cfg.Identity,
		LeaseDuration: c.cfg.Timing.LeaseDuration,
		AcquireTime:   sent,
		RenewTime:     sent,
		Transitions:   base.Record.Transitions + 1,
		Strategy:      base.Record.Strategy,
	}
	reqCtx, cancel := context.WithTimeout(ctx, c.cfg.Timing.RenewDeadline)
	defer cancel()
	// Invariant 4: conditional on the version we saw.
	snap, err := client.Update(reqCtx, base, rec, tok)
	if err != nil {
		return nil, base.ResourceVersion, err
	}
	c.setOwn(snap.ResourceVersion)
	c.obs.Offer(snap)
	return c.startTerm(ctx, snap, tok, sent), base.ResourceVersion, nil
}
