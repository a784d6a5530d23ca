package lock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// ErrLocked is matched (errors.Is) by the *LockedError TryLock returns.
var ErrLocked = errors.New("lock: locked")

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
	cfg   Config
	obs   []*lease.Observer
	cands []*lease.Candidate
	stops []context.CancelFunc
	wgs   []*sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{}
}

func newWaiter(cfg Config, names []string) (*waiter, error) {
	w := &waiter{cfg: cfg, changed: make(chan struct{})}
	for _, name := range names {
		c, err := lease.NewClient(cfg.Leases, cfg.Namespace, name)
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		o := lease.NewObserver(c, cfg.Clock, cfg.RetryPeriod)
		cand, err := lease.NewCandidate(o, cfg.Identity, cfg.timing(), cfg.Clock, cfg.Hooks)
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		cand.DisablePreemption()
		w.obs = append(w.obs, o)
		w.cands = append(w.cands, cand)
	}
	return w, nil
}

// start runs an observer and a relay of its changes per lease.
//
// The relay must not lose a change: acquire takes the signal channel, then
// reads the states, so every change after that read must close that channel
// (or a later one). The relay therefore takes the observer's change channel
// before Run starts, and after each change takes the next one before it
// signals; a change in between closes that next channel at once.
func (w *waiter) start(ctx context.Context) {
	for _, o := range w.obs {
		octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		wg := &sync.WaitGroup{}
		_, ch := o.State()
		wg.Go(func() { _ = o.Run(octx) })
		wg.Go(func() {
			for {
				select {
				case <-octx.Done():
					return
				case <-ch:
					_, ch = o.State()
					w.mu.Lock()
					close(w.changed)
					w.changed = make(chan struct{})
					w.mu.Unlock()
				}
			}
		})
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

func (w *waiter) signal() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// acquire takes one of the leases: blocking until one is free in this
// process's view when try is false, else making one pass.
func (w *waiter) acquire(ctx context.Context, try bool) (*lease.Term, int, error) {
	clk := w.cfg.Clock
	start := clk.Now()
	raced := map[int]string{}
	claimed := -1
	defer func() {
		if claimed >= 0 {
			w.unclaim(claimed)
		}
	}()
	// lastMark holds, per lease, the holder's term and renewal at the
	// previous pass. A claim is made only on the pass that sees the holder
	// write (renew or take the lease): a claim changes the record, and every
	// observer restarts its expiry wait on a change, so a claim on the lease
	// of a holder that has crashed would block everyone for another lease
	// duration (and waiters that give up, withdraw their claim and claim
	// again would keep it blocked for ever). Right after a write the holder
	// is known to be alive, and the claim moves the expiry by no more than
	// the time it takes to write it.
	lastMark := map[int]holderMark{}
	offset := rand.IntN(len(w.obs))
	for {
		changed := w.signal()
		var (
			wait      time.Duration = -1
			synced                  = true
			locked                  = &LockedError{}
			retrySoon bool
			claimable = -1 // a held lease whose holder wrote since the last pass
		)
		for k := range w.obs {
			i := (offset + k) % len(w.obs)
			st, _ := w.obs[i].State()
			if st.Err != nil && lease.Permanent(st.Err) {
				// Also after the first read: an observer whose watch is
				// refused has stopped, and waiting on it would never see
				// the release.
				return nil, -1, st.Err
			}
			if !st.Synced {
				synced = false
				continue
			}
			mark := markOf(st)
			prev, seen := lastMark[i]
			lastMark[i] = mark
			holderWrote := seen && mark != prev
			if rv, ok := raced[i]; ok {
				if rv == versionOf(st) {
					retrySoon = true
					continue
				}
				delete(raced, i)
			}
			term, err := w.cands[i].TryAcquire(ctx)
			var held *lease.ErrHeld
			switch {
			case err == nil:
				if claimed == i {
					claimed = -1 // our acquire cleared the claim
				}
				return term, i, nil
			case errors.As(err, &held):
				c := w.obs[i].Client()
				locked.Holders = append(locked.Holders, Holder{
					Lease: c.Namespace() + "/" + c.Name(), Identity: held.Holder,
					PreferredFor: held.PreferredFor, ExpiresAt: held.ExpiresAt,
				})
				if d := held.ExpiresAt.Sub(clk.Now()); wait < 0 || d < wait {
					wait = max(d, 0)
				}
				if holderWrote && st.Lease != nil && st.Lease.Record.Held() && st.Lease.Record.PreferredHolder == "" {
					claimable = i
				}
			case errors.Is(err, lease.ErrConflict), errors.Is(err, lease.ErrAlreadyExists):
				if w.cfg.Hooks.Conflict != nil {
					w.cfg.Hooks.Conflict()
				}
				raced[i] = versionOf(st)
				retrySoon = true
			case ctx.Err() != nil:
				return nil, -1, ctx.Err()
			case lease.Permanent(err):
				return nil, -1, err
			default:
				if w.cfg.Hooks.AttemptFailed != nil {
					w.cfg.Hooks.AttemptFailed(err)
				}
				w.cfg.Logger.V(2).Info("lock attempt failed, will retry", "err", err)
				retrySoon = true
			}
		}
		if try && synced && !retrySoon {
			return nil, -1, locked
		}
		if !try && claimed < 0 && claimable >= 0 && w.cfg.ClaimAfter > 0 && clk.Since(start) >= w.cfg.ClaimAfter {
			if w.claim(ctx, claimable) {
				claimed = claimable
			}
		}
		if retrySoon && (wait < 0 || wait > w.cfg.RetryPeriod) {
			wait = w.cfg.RetryPeriod
		}
		timedOut, err := lease.Wait(ctx, clk, changed, wait)
		if err != nil {
			return nil, -1, err
		}
		if timedOut {
			for i := range raced {
				if st, _ := w.obs[i].State(); versionOf(st) == raced[i] {
					w.obs[i].Resync() // the winner's write did not arrive; re-read
				}
				delete(raced, i)
			}
		}
	}
}

// claim reserves the next turn on lease i by setting spec.preferredHolder.
func (w *waiter) claim(ctx context.Context, i int) bool {
	st, _ := w.obs[i].State()
	if st.Lease == nil || st.Lease.Record.PreferredHolder != "" {
		return false
	}
	rec := st.Lease.Record
	rec.PreferredHolder = w.cfg.Identity
	s, err := w.obs[i].Client().Update(ctx, st.Lease, rec, 0)
	if err != nil {
		w.cfg.Logger.V(2).Info("claiming the next turn failed", "err", err)
		return false
	}
	w.obs[i].Offer(s)
	return true
}

// unclaim withdraws a claim when the waiter gives up.
func (w *waiter) unclaim(i int) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.RenewDeadline)
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

func markOf(st lease.State) holderMark {
	if st.Lease == nil {
		return holderMark{}
	}
	r := st.Lease.Record
	return holderMark{uid: string(st.Lease.UID), holder: r.Holder, transitions: r.Transitions, renew: r.RenewTime.UnixMicro()}
}

func versionOf(st lease.State) string {
	if st.Lease == nil {
		return ""
	}
	return st.Lease.ResourceVersion
}
