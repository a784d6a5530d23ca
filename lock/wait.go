package lock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// turn is what one look at the view decided.
type turn struct {
	term      *holder.Term
	index     int
	wake      time.Time // look again at the latest then (zero: on a change only)
	retrySoon bool
}

// acquire waits for a permit (try: looks once, never queues). The returned
// term is on permit index; on error the call has left the queue. A waiter
// far back in the queue first waits, at O(1) cost, until it is near the
// head (waitNear); then it follows the permits and the queue, and a holder
// keeps both watches running for its release, so the queue it hands over
// to is already read.
func (w *waiter) acquire(ctx context.Context, try bool) (term *holder.Term, index int, err error) {
	near := false // the permits and the whole queue are followed already
	if !try {
		read, err := w.lookTail(ctx)
		if err != nil {
			return nil, -1, err
		}
		if read.free {
			term, i, watching, err := w.takeFree(ctx, read)
			if term != nil || err != nil {
				return term, i, err
			}
			near = watching
		}
		if err := w.joinAt(ctx, read.rv, read.tail); err != nil {
			return nil, -1, err
		}
	}
	defer func() {
		switch {
		case err == nil && !try:
			w.dropEntry() // served: the entry has done its work
		case err != nil && !try:
			w.leave(ctx)
		}
	}()
	far := farState{renewAt: w.cfg.Clock.Now().Add(w.firstRenewal()), ahead: -1}
	if !try && !near {
		if err := w.waitNear(ctx, &far); err != nil {
			return nil, -1, err
		}
	}
	w.watchPermits()
	if far.read.entries != nil {
		w.queue.seed(far.read)
	}
	w.watchQueue()
	renewAt, seen, ahead := far.renewAt, "", far.ahead
	if reg := w.entry(); reg != nil && !try {
		// Near the head: an entry whose last write leaves less than two
		// RetryPeriods to the deadline a grant would count from it is
		// renewed now, so that the term of a grant soon to come starts at
		// once (adopt) with time for its adopting write and its retries.
		// A younger one is not: at most one write per waiter that turns
		// near, and mostly none.
		if last, ok := reg.lastSent(); ok && w.cfg.Clock.Since(last) > w.staleAfter() {
			renewAt = w.cfg.Clock.Now()
		}
	}
	for {
		changed := w.changed.C() // invariant 1: the channel before the states
		_, synced, verr, _ := w.view.snapshot()
		switch {
		case verr != nil && lease.Permanent(verr):
			return nil, -1, fmt.Errorf("lock: %w", verr)
		case !synced:
			if _, err := holder.Wait(ctx, w.cfg.Clock, changed, -1); err != nil {
				return nil, -1, err
			}
			continue
		}
		states := w.states()
		for i, st := range states {
			if err := w.cands[i].CheckKind(st); err != nil {
				return nil, -1, fmt.Errorf("lock: %w", err)
			}
		}
		entries, err := w.entries()
		if err != nil {
			return nil, -1, err
		}
		if try {
			if entries == nil {
				if _, err := holder.Wait(ctx, w.cfg.Clock, changed, -1); err != nil {
					return nil, -1, err
				}
				continue
			}
			return w.tryOnce(ctx, states, entries)
		}
		t, err := w.step(ctx, states, entries, &seen, &ahead)
		if err != nil || t.term != nil {
			return t.term, t.index, err
		}
		now := w.cfg.Clock.Now()
		if !now.Before(renewAt) {
			renewAt = now.Add(w.renewEvery())
			if t, err := w.renewEntry(ctx, entries); err != nil {
				return nil, -1, err
			} else if t.retrySoon {
				continue // queued again: look at once
			}
		}
		wake := earliest(t.wake, renewAt)
		if t.retrySoon {
			wake = earliest(wake, now.Add(w.cfg.Timing.RetryPeriod))
		}
		if _, err := holder.Wait(ctx, w.cfg.Clock, changed, wake.Sub(now)); err != nil {
			return nil, -1, err
		}
	}
}

// takeFree is Lock's way past a lock that lies released (lookTail saw a
// permit released or not yet created): when a list of the head of the
// queue finds no entry, nobody queued before this call began, and the
// permit is taken as TryLock takes it, with no entry to create or delete.
// The queue's view continues from that list and the permits' view starts,
// as for a waiter near the head, so the holder hands over as any other.
// watching reports whether it started them: the call then queues already
// near the head (the views hold the whole queue), after a waiter that
// queued meanwhile or another taker got in first. With an entry in the
// head, or the list denied, it starts nothing and the call queues as
// usual. err is only ctx's or one that ends the call.
func (w *waiter) takeFree(ctx context.Context, read permitsRead) (term *holder.Term, index int, watching bool, err error) {
	selector := entryLabel + "=" + w.key
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Timing.RenewDeadline)
	l, err := w.cfg.Leases.Leases(w.cfg.Namespace).List(rctx, metav1.ListOptions{LabelSelector: selector, Limit: 1})
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil, -1, false, ctx.Err()
	case err != nil:
		w.cfg.Logger.V(2).Info("listing the head of the queue failed; queuing", "err", lease.Classify("list", w.cfg.Namespace, "-l "+selector, err))
		return nil, -1, false, nil
	case len(l.Items) > 0:
		return nil, -1, false, nil
	}
	w.queue.seed(queueRead{entries: map[string]*lease.Snapshot{}, rv: l.ResourceVersion})
	// The permits as read.listed has them (those it lacks did not exist):
	// the take need not wait for their watch to open, and is conditional
	// on the version it read all the same (invariant 4).
	for i, name := range w.names {
		if s, ok := read.listed[name]; ok {
			w.obs[i].Offer(s)
		} else if read.listed != nil {
			w.obs[i].Absent(read.rv)
		}
	}
	w.watchPermits()
	w.watchQueue()
	for {
		changed := w.changed.C() // invariant 1: the channel before the states
		_, _, verr, _ := w.view.snapshot()
		if verr != nil && lease.Permanent(verr) {
			return nil, -1, true, fmt.Errorf("lock: %w", verr)
		}
		entries, err := w.entries()
		if err != nil {
			return nil, -1, true, err
		}
		states := w.states()
		if entries == nil || slices.ContainsFunc(states, func(st holder.State) bool { return !st.Synced }) {
			if _, err := holder.Wait(ctx, w.cfg.Clock, changed, -1); err != nil {
				return nil, -1, true, err
			}
			continue
		}
		for i, st := range states {
			if err := w.cands[i].CheckKind(st); err != nil {
				return nil, -1, true, fmt.Errorf("lock: %w", err)
			}
		}
		q := order(w.cfg.Clock.Now(), states, w.cands, entries)
		if len(q.live) > 0 || len(q.free) == 0 {
			return nil, -1, true, nil
		}
		i := q.free[0]
		t, err := w.take(ctx, i, states[i], turn{})
		if t.term == nil && err == nil {
			// Another writer got in first (or the write failed): the call
			// queues once the view has moved past the version it tried,
			// so that it does not try again on it.
			w.awaitChange(ctx, i, states[i])
		}
		return t.term, t.index, true, err
	}
}

// awaitChange waits until permit i shows another version than st in the
// view, for at most a RetryPeriod, or until ctx ends.
func (w *waiter) awaitChange(ctx context.Context, i int, st holder.State) {
	deadline := w.cfg.Clock.Now().Add(w.cfg.Timing.RetryPeriod)
	for {
		changed := w.changed.C()
		now := w.states()[i].Lease
		if now != nil && (st.Lease == nil || now.ResourceVersion != st.Lease.ResourceVersion) {
			return
		}
		left := deadline.Sub(w.cfg.Clock.Now())
		if left <= 0 {
			return
		}
		if _, err := holder.Wait(ctx, w.cfg.Clock, changed, left); err != nil {
			return
		}
	}
}

// renewEvery is how often a waiter renews its entry: half its duration,
// so that one renewal may fail before it expires anywhere. (Every waiter
// renews: at 500 waiters and 15s that is 67 writes a second; a renewal that
// fails twice costs the waiter its place, never safety.)
func (w *waiter) renewEvery() time.Duration { return w.cfg.Timing.LeaseDuration / 2 }

// staleAfter is the age past which a near waiter renews its entry: a
// grant naming an older write would leave less than two RetryPeriods of
// the RenewDeadline counted from it (and at least a RetryPeriod).
func (w *waiter) staleAfter() time.Duration {
	t := w.cfg.Timing
	return max(t.RetryPeriod, t.RenewDeadline-2*t.RetryPeriod)
}

// firstRenewal is when a new entry is first renewed: at a random point of
// the second quarter of its duration, so that waiters that queue together
// (a fleet that starts at once) do not renew together ever after.
func (w *waiter) firstRenewal() time.Duration {
	q := w.cfg.Timing.LeaseDuration / 4
	return q + rand.N(q+1)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// step is one decision of a queued waiter: adopt a permit granted to it;
// queue again if its entry is gone; take a free permit when it is at the
// head (or the head has let one lie free for a whole LeaseDuration).
func (w *waiter) step(ctx context.Context, states []holder.State, entries map[string]entry, seen *string, ahead *int) (turn, error) {
	if t, done, err := w.adoptGrant(ctx, states); done || err != nil {
		return t, err
	}
	reg := w.entry()
	e, ok := entries[reg.name()]
	switch {
	case entries == nil:
	case ok && e.snap.Record.Holder != w.cfg.Identity:
		return w.requeue(ctx, fmt.Errorf("%w: entry %s/%s now names %q (edited by another client); queuing again at the back", ErrQueueEntryLost, w.cfg.Namespace, reg.name(), e.snap.Record.Holder))
	case ok:
		*seen = reg.name()
	case *seen == reg.name():
		return w.requeue(ctx, fmt.Errorf("%w: entry %s/%s was deleted (by another client, or skipped as expired); queuing again at the back", ErrQueueEntryLost, w.cfg.Namespace, reg.name()))
	}
	if w.passed(states, reg) {
		if w.cfg.Clock.Since(reg.created) < w.cfg.Timing.LeaseDuration/2 {
			// Too young to have expired anywhere: its creation was in
			// flight while the lock was handed to a waiter placed after
			// it (their calls began together). Nothing was lost.
			return w.requeue(ctx, nil)
		}
		return w.requeue(ctx, fmt.Errorf("%w: entry %s/%s was passed over (it expired in the releasing holder's view); queuing again at the back", ErrQueueEntryLost, w.cfg.Namespace, reg.name()))
	}
	now := w.cfg.Clock.Now()
	q := order(now, states, w.cands, entries)
	if entries == nil {
		// Only the head of the queue may take a free permit: read the
		// queue first (a watch that then stays open for this call).
		if len(q.free) > 0 {
			w.watchQueue()
		}
		return turn{wake: w.nextChange(now, states, q, -1)}, nil
	}
	r := q.rank(reg.name())
	if r != *ahead && r >= 0 {
		*ahead = r
		if w.cfg.queued != nil {
			w.cfg.queued(r)
		}
	}
	t := turn{wake: w.nextChange(now, states, q, r)}
	for _, i := range q.free {
		// One taker at a time, the head (permits free at once fill one
		// write after another), so that the cursor only grows in order.
		if r == 0 || (r > 0 && w.lyingFree(now, states[i])) {
			if !w.cands[i].Free(states[i]) && !w.confirmVoid(ctx, i, states[i]) {
				return turn{retrySoon: true}, nil
			}
			return w.take(ctx, i, states[i], t)
		}
	}
	return t, nil
}

// confirmVoid reports whether a grant to an entry marked left is still the
// permit's latest version: the permits' watch may lag behind the queue's
// (the grant may have been passed on already). One read of the permit,
// offered to the view, tells; a grant confirmed at its version is not read
// again.
func (w *waiter) confirmVoid(ctx context.Context, i int, st holder.State) bool {
	rv := st.Lease.ResourceVersion
	if w.confirmed[i] == rv {
		return true
	}
	s, err := w.obs[i].Client().Get(ctx)
	if err != nil {
		return false
	}
	w.obs[i].Offer(s)
	if s.ResourceVersion != rv {
		return false
	}
	w.confirmed[i] = rv
	return true
}

// passed reports whether the queue's cursor has moved beyond this call's
// entry while no permit names it: a releasing holder skipped it as expired.
func (w *waiter) passed(states []holder.State, reg *registration) bool {
	if served(states).cmp(reg.pos) <= 0 {
		return false
	}
	for _, st := range states {
		if _, p := cursorOf(st); w.isMine(p.name) {
			return false
		}
	}
	return true
}

// adoptGrant adopts a permit that a releasing holder granted to this call;
// a second grant (two permits released at once) is passed on.
func (w *waiter) adoptGrant(ctx context.Context, states []holder.State) (turn, bool, error) {
	for i, st := range states {
		name, granted := namedBy(st)
		if !granted || !w.isMine(name) || st.Lease.Record.Holder != w.cfg.Identity {
			continue
		}
		term, err := w.adopt(ctx, i, st.Lease) // invariant 13
		switch {
		case err == nil:
			for j, other := range states {
				if n, g := namedBy(other); j != i && g && w.isMine(n) && other.Lease.Record.Holder == w.cfg.Identity {
					w.passOn(ctx, j, other.Lease)
				}
			}
			return turn{term: term, index: i}, true, nil
		case ctx.Err() != nil:
			return turn{}, true, ctx.Err()
		case lease.Permanent(err):
			return turn{}, true, fmt.Errorf("lock: %w", err)
		}
		w.cfg.Logger.V(2).Info("adopting a granted lock failed", "lease", st.Lease.Name, "err", err)
		return turn{retrySoon: true}, false, nil
	}
	return turn{}, false, nil
}

// adopt starts a term on a permit granted to this call: at once when the
// grant names a version of this call's entry whose send time is known and
// leaves at least a RetryPeriod of the deadline counted from it (the
// adopting write then follows as the term's first renewal); otherwise
// after the adopting write.
func (w *waiter) adopt(ctx context.Context, i int, granted *lease.Snapshot) (*holder.Term, error) {
	if reg := w.entry(); reg != nil {
		_, p := cursorOf(holder.State{Lease: granted})
		if since, ok := reg.sentAt(granted.Annotation(grantedOnAnnotation)); ok && p.name == reg.name() &&
			since.Add(w.cfg.Timing.RenewDeadline).Sub(w.cfg.Clock.Now()) >= w.cfg.Timing.RetryPeriod {
			if t, err := w.cands[i].AdoptFrom(ctx, granted, since); err == nil {
				return t, nil
			}
		}
	}
	return w.cands[i].Adopt(ctx, granted)
}

// take makes one conditional write to take a free permit.
func (w *waiter) take(ctx context.Context, i int, st holder.State, t turn) (turn, error) {
	term, err := w.cands[i].Take(ctx, st)
	switch {
	case err == nil:
		return turn{term: term, index: i}, nil
	case errors.Is(err, lease.ErrConflict), errors.Is(err, lease.ErrAlreadyExists):
		if w.cfg.hooks.Conflict != nil {
			w.cfg.hooks.Conflict()
		}
		t.retrySoon = true // the winner's write comes through the watch
		return t, nil
	case ctx.Err() != nil:
		return t, ctx.Err()
	case lease.Permanent(err), errors.Is(err, holder.ErrKindMismatch):
		return t, fmt.Errorf("lock: %w", err)
	}
	if w.cfg.hooks.AttemptFailed != nil {
		w.cfg.hooks.AttemptFailed(err)
	}
	w.cfg.Logger.V(2).Info("lock attempt failed, will retry", "err", err)
	t.retrySoon = true
	return t, nil
}

// lyingFree reports whether a free permit has not changed for a whole
// LeaseDuration since it became free in this view: the head of the queue
// is alive (its entry is renewed) but does not take it, so any waiter may.
func (w *waiter) lyingFree(now time.Time, st holder.State) bool {
	return !now.Before(w.freeSince(st).Add(w.cfg.Timing.LeaseDuration))
}

func (w *waiter) freeSince(st holder.State) time.Time {
	if st.Lease == nil || !st.Lease.Record.Held() {
		return st.ObservedAt
	}
	return st.ObservedAt.Add(st.Lease.Record.LeaseDuration)
}

// nextChange is the earliest moment at which time alone changes the
// decision: a permit expires or lies free long enough, or a live waiter
// ahead of this one expires.
func (w *waiter) nextChange(now time.Time, states []holder.State, q queueOf, r int) time.Time {
	var at time.Time
	later := func(t time.Time) {
		if t.After(now) {
			at = earliest(at, t)
		}
	}
	for _, st := range states {
		if st.Lease != nil && st.Lease.Record.Held() {
			later(st.ObservedAt.Add(st.Lease.Record.LeaseDuration))
		}
		later(w.freeSince(st).Add(w.cfg.Timing.LeaseDuration))
	}
	for k := 0; k < r && k < len(q.live); k++ {
		later(q.live[k].observedAt.Add(q.live[k].snap.Record.LeaseDuration))
	}
	return at
}

// requeue registers a new entry after the old one was lost, and says so
// (why nil: it was not lost, and there is nothing to say).
func (w *waiter) requeue(ctx context.Context, why error) (turn, error) {
	switch {
	case why == nil:
		w.cfg.Logger.V(1).Info("queuing again: the lock was handed past this waiter's place while its entry was being created", "entry", w.entry().name())
	default:
		w.cfg.Logger.Info("queue entry lost", "err", why.Error())
		if w.cfg.requeued != nil {
			w.cfg.requeued(why)
		}
	}
	if old := w.entry(); old != nil {
		old.remove(ctx)
	}
	if err := w.join(ctx); err != nil {
		return turn{}, err
	}
	if w.queue.horizonNow().partial {
		// The view started from the head of the queue; the new entry is
		// at its back, behind entries the view may lack.
		w.queue.readWhole()
	}
	return turn{retrySoon: true}, nil
}

// renewEntry renews this call's entry on the newest version known; an
// entry deleted or taken over by another client is replaced at the back of
// the queue.
func (w *waiter) renewEntry(ctx context.Context, entries map[string]entry) (turn, error) {
	reg := w.entry()
	base := reg.snap
	if e, ok := entries[reg.name()]; ok && e.snap.UID == base.UID && isNewer(e.snap.ResourceVersion, base.ResourceVersion) {
		base = e.snap
	}
	err := reg.renew(ctx, base)
	switch {
	case errors.Is(err, ErrQueueEntryLost):
		return w.requeue(ctx, fmt.Errorf("%w; queuing again at the back", err))
	case err != nil && ctx.Err() != nil:
		return turn{}, ctx.Err()
	case err != nil:
		w.cfg.Logger.V(2).Info("renewing the queue entry failed", "entry", reg.name(), "err", err)
	}
	return turn{}, nil
}

// tryOnce is TryLock: take a free permit if nobody is queued.
func (w *waiter) tryOnce(ctx context.Context, states []holder.State, entries map[string]entry) (*holder.Term, int, error) {
	q := order(w.cfg.Clock.Now(), states, w.cands, entries)
	if len(q.live) == 0 && len(q.free) > 0 {
		i := q.free[0]
		term, err := w.cands[i].Take(ctx, states[i])
		if err == nil {
			return term, i, nil
		}
		if !errors.Is(err, lease.ErrConflict) && !errors.Is(err, lease.ErrAlreadyExists) {
			return nil, -1, fmt.Errorf("lock: %w", err)
		}
	}
	return nil, -1, w.lockedError(states, len(q.live))
}

// isNewer compares two resourceVersions (decimal, as etcd gives them).
func isNewer(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x > y
}
