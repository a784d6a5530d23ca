package lock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// ErrLocked is matched (errors.Is) by the *LockedError TryLock returns.
var ErrLocked = errors.New("lock: locked")

// ErrKindMismatch is matched (errors.Is) by the error a lock returns when
// its Lease is recorded as another kind of lock: a Mutex on a Semaphore's
// name, or a Semaphore with another permit count. The message names the
// Lease and both kinds.
var ErrKindMismatch = holder.ErrKindMismatch

// LockedError says who holds a lock that could not be taken at once.
type LockedError struct {
	// Holders lists every permit's lease and holder.
	Holders []Holder
}

// Holder describes one held permit.
type Holder struct {
	// Lease is "namespace/name".
	Lease string
	// Identity holds it; "" if released but reserved for PreferredFor.
	Identity string
	// PreferredFor is set when the lease is reserved for a waiter that
	// claimed the next turn.
	PreferredFor string
	// ExpiresAt is when it expires in this process's view unless renewed.
	ExpiresAt time.Time
}

func (e *LockedError) Error() string {
	parts := make([]string, 0, len(e.Holders))
	for _, h := range e.Holders {
		who := fmt.Sprintf("held by %q", h.Identity)
		if h.Identity == "" {
			who = fmt.Sprintf("reserved for %q", h.PreferredFor)
		}
		parts = append(parts, fmt.Sprintf("%s %s until at least %s", h.Lease, who, h.ExpiresAt.Format(time.RFC3339)))
	}
	return "lock: locked: " + strings.Join(parts, "; ")
}

// Is matches ErrLocked.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// waiter follows the leases of a lock while it waits for one of them.
type waiter struct {
	cfg     settings
	obs     []*holder.Observer
	cands   []*holder.Candidate
	changed holder.Signal // any lease changed
	stops   []context.CancelFunc
	wgs     []*sync.WaitGroup
}

func newWaiter(cfg settings, names []string, kind string) (*waiter, error) {
	w := &waiter{cfg: cfg}
	for _, name := range names {
		c, err := lease.NewClient(cfg.Leases, cfg.Namespace, name)
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		o := holder.NewObserver(c, cfg.Clock, cfg.Timing.RetryPeriod)
		cand, err := holder.NewCandidate(o, holder.CandidateConfig{
			Identity: cfg.Identity, Timing: cfg.Timing, Clock: cfg.Clock, Hooks: cfg.hooks,
			KeepOnPreference: true, // a lock is held until released
			Kind:             kind,
		})
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		w.obs = append(w.obs, o)
		w.cands = append(w.cands, cand)
	}
	return w, nil
}

// start runs an observer and a relay of its changes per lease.
func (w *waiter) start(ctx context.Context) {
	for _, o := range w.obs {
		octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		wg := &sync.WaitGroup{}
		relay := w.changed.Relay(o) // invariant 1: before the observer runs
		wg.Go(func() { _ = o.Run(octx) })
		wg.Go(func() { relay(octx) })
		w.stops = append(w.stops, cancel)
		w.wgs = append(w.wgs, wg)
	}
}

// stop ends the observers of every lease except keep (-1: all) and waits.
func (w *waiter) stop(keep int) {
	for i := range w.stops {
		if i != keep {
			w.stops[i]()
			w.wgs[i].Wait()
		}
	}
}

// progress is what acquire carries from one pass to the next.
type progress struct {
	start    time.Time
	raced    map[int]string     // lease -> version we lost a race on
	lastMark map[int]holderMark // lease -> holder's write at the previous pass
	claimed  int                // lease we hold a claim on, -1 none
}

// found is what one pass over the leases saw.
type found struct {
	term      *holder.Term
	index     int
	locked    LockedError
	wait      time.Duration // until the earliest expiry; -1: until a change
	synced    bool          // every lease has been read
	retrySoon bool          // a race or a transient error: look again soon
	claimable int           // a held lease whose holder wrote since the last pass, -1 none
}

// acquire takes one of the leases: blocking until one is free in this
// process's view when try is false, else making one pass.
func (w *waiter) acquire(ctx context.Context, try bool) (*holder.Term, int, error) {
	p := &progress{start: w.cfg.Clock.Now(), raced: map[int]string{}, lastMark: map[int]holderMark{}, claimed: -1}
	defer func() {
		if p.claimed >= 0 {
			w.unclaim(p.claimed)
		}
	}()
	for {
		changed := w.changed.C() // invariant 1: the channel before the states
		f, err := w.pass(ctx, p)
		switch {
		case err != nil:
			return nil, -1, err
		case f.term != nil:
			if p.claimed == f.index {
				p.claimed = -1 // our acquisition cleared the claim
			}
			return f.term, f.index, nil
		case try && f.synced && !f.retrySoon:
			return nil, -1, &f.locked
		}
		if !try {
			w.maybeClaim(ctx, p, f)
		}
		if err := w.wait(ctx, p, f, changed); err != nil {
			return nil, -1, err
		}
	}
}

// pass tries each lease once, starting at a random one so that waiters
// spread over a semaphore's permits.
func (w *waiter) pass(ctx context.Context, p *progress) (found, error) {
	f := found{wait: -1, synced: true, claimable: -1}
	for i, o := range w.obs {
		// Every permit's Lease is read before any is taken: one recorded
		// as another kind refuses the whole lock.
		st, _ := o.State()
		if !st.Synced && (st.Err == nil || !lease.Permanent(st.Err)) {
			f.synced = false
			return f, nil
		}
		if err := w.cands[i].CheckKind(st); err != nil {
			return f, fmt.Errorf("lock: %w", err)
		}
	}
	offset := rand.IntN(len(w.obs))
	for k := range w.obs {
		i := (offset + k) % len(w.obs)
		if err := w.tryOne(ctx, p, &f, i); err != nil || f.term != nil {
			return f, err
		}
	}
	return f, nil
}

// tryOne looks at lease i and, when it may be taken, tries to take it. It
// records what it saw in f and returns only errors that end the wait.
func (w *waiter) tryOne(ctx context.Context, p *progress, f *found, i int) error {
	st, _ := w.obs[i].State()
	switch {
	case st.Err != nil && lease.Permanent(st.Err):
		// Also after the first read: an observer whose watch is refused
		// has stopped, and waiting on it would never see the release.
		return st.Err
	case !st.Synced:
		f.synced = false
		return nil
	}
	mark := markOf(st)
	prev, seen := p.lastMark[i]
	p.lastMark[i] = mark
	if rv, ok := p.raced[i]; ok {
		if rv == versionOf(st) {
			f.retrySoon = true // the winner's write is on its way
			return nil
		}
		delete(p.raced, i)
	}
	term, err := w.cands[i].TryAcquire(ctx)
	var held *holder.HeldError
	switch {
	case err == nil:
		f.term, f.index = term, i
	case errors.As(err, &held):
		w.noteHeld(f, i, held)
		if seen && mark != prev && st.Lease.Record.Held() && st.Lease.Record.PreferredHolder == "" {
			f.claimable = i // invariant 9: the holder just wrote
		}
	case errors.Is(err, lease.ErrConflict), errors.Is(err, lease.ErrAlreadyExists):
		if w.cfg.hooks.Conflict != nil {
			w.cfg.hooks.Conflict()
		}
		p.raced[i] = versionOf(st)
		f.retrySoon = true
	case ctx.Err() != nil:
		return ctx.Err()
	case lease.Permanent(err), errors.Is(err, holder.ErrKindMismatch):
		return err
	default:
		if w.cfg.hooks.AttemptFailed != nil {
			w.cfg.hooks.AttemptFailed(err)
		}
		w.cfg.Logger.V(2).Info("lock attempt failed, will retry", "err", err)
		f.retrySoon = true
	}
	return nil
}

func (w *waiter) noteHeld(f *found, i int, held *holder.HeldError) {
	c := w.obs[i].Client()
	f.locked.Holders = append(f.locked.Holders, Holder{
		Lease: c.Namespace() + "/" + c.Name(), Identity: held.Holder,
		PreferredFor: held.PreferredFor, ExpiresAt: held.ExpiresAt,
	})
	if d := held.ExpiresAt.Sub(w.cfg.Clock.Now()); f.wait < 0 || d < f.wait {
		f.wait = max(d, 0)
	}
}

// maybeClaim is the claim policy: a waiter that has waited ClaimAfter and
// holds no claim reserves the next turn on a lease whose holder just wrote.
func (w *waiter) maybeClaim(ctx context.Context, p *progress, f found) {
	if p.claimed >= 0 || f.claimable < 0 || w.cfg.claimAfter <= 0 || w.cfg.Clock.Since(p.start) < w.cfg.claimAfter {
		return
	}
	if w.claim(ctx, f.claimable) {
		p.claimed = f.claimable
	}
}

// wait blocks until a lease changes, the earliest expiry, or (after a race
// or an error) RetryPeriod. A race whose winner never showed up through the
// watch makes that lease's observer re-read.
func (w *waiter) wait(ctx context.Context, p *progress, f found, changed <-chan struct{}) error {
	wait := f.wait
	if f.retrySoon && (wait < 0 || wait > w.cfg.Timing.RetryPeriod) {
		wait = w.cfg.Timing.RetryPeriod
	}
	timedOut, err := holder.Wait(ctx, w.cfg.Clock, changed, wait)
	if err != nil || !timedOut {
		return err
	}
	for i, rv := range p.raced {
		if st, _ := w.obs[i].State(); versionOf(st) == rv {
			w.obs[i].Resync()
		}
		delete(p.raced, i)
	}
	return nil
}

// claim reserves the next turn on lease i by setting spec.preferredHolder.
func (w *waiter) claim(ctx context.Context, i int) bool {
	st, _ := w.obs[i].State()
	if st.Lease == nil || st.Lease.Record.PreferredHolder != "" {
		return false
	}
	rec := st.Lease.Record
	rec.PreferredHolder = w.cfg.Identity
	s, err := w.obs[i].Client().Update(ctx, st.Lease, rec, 0) // invariant 4
	if err != nil {
		w.cfg.Logger.V(2).Info("claiming the next turn failed", "err", err)
		return false
	}
	w.obs[i].Offer(s)
	return true
}

// unclaim withdraws a claim when the waiter gives up.
func (w *waiter) unclaim(i int) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timing.RenewDeadline)
	defer cancel()
	c := w.obs[i].Client()
	for attempt := 0; attempt < 3; attempt++ {
		s, err := c.Get(ctx)
		if err != nil || s.Record.PreferredHolder != w.cfg.Identity {
			return
		}
		rec := s.Record
		rec.PreferredHolder = ""
		if _, err := c.Update(ctx, s, rec, 0); !errors.Is(err, lease.ErrConflict) {
			return
		}
	}
}

// holderMark is what a holder changes when it takes or renews a lease; a
// claim or its withdrawal leaves it alone.
type holderMark struct {
	uid         string
	holder      string
	transitions int32
	renew       int64 // RenewTime in Unix microseconds (its precision on the wire)
}

func markOf(st holder.State) holderMark {
	if st.Lease == nil {
		return holderMark{}
	}
	r := st.Lease.Record
	return holderMark{uid: string(st.Lease.UID), holder: r.Holder, transitions: r.Transitions, renew: r.RenewTime.UnixMicro()}
}

func versionOf(st holder.State) string {
	if st.Lease == nil {
		return ""
	}
	return st.Lease.ResourceVersion
}
