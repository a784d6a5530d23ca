package lock

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// A waiter far back in the queue follows neither the lock's Leases nor the
// queue: it watches the lookahead live entries just ahead of its own, each
// by name, and reads the queue again only when one of them is deleted or
// expires in its view. Until then nothing a releasing holder, a grantee or
// another waiter writes reaches it, except those entries' own renewals (a
// fresh expiry time, nothing to do). Once fewer than lookahead live entries
// are ahead of it, it is near: it follows the permits and the queue, as the
// holder will (see acquire).

// lookahead is how many live entries may be ahead of a waiter before it
// follows the lock itself: one per permit, plus one, so that the waiter
// next in line already follows the permits and the queue when a permit is
// handed to it.
func (w *waiter) lookahead() int { return len(w.names) + 1 }

// farState is what waitNear hands on to the near waiter's loop.
type farState struct {
	renewAt time.Time // when the entry is next renewed
	ahead   int       // the place last reported to Hooks.Queued (-1: none)
	// The last read of the queue, which the queue's view continues from
	// (entries nil: none), with the watch that read it, still open (the
	// view goes on with it rather than open another).
	read queueRead
}

// queueRead is one read of the queue's entries: exact as of version rv for
// the entries it holds (h says which), with the watch that made it, still
// open (nil: none). Whoever ends up with it stops the watch.
type queueRead struct {
	entries map[string]*lease.Snapshot
	rv      string
	h       horizon
	watch   watch.Interface
}

func (q queueRead) stop() { stopWatch(q.watch) }

// queueWatch is a watch of the queue's entries opened under the waiter's
// own context, so that it outlives the read it was opened for; Stop ends
// the request too.
type queueWatch struct {
	watch.Interface
	cancel context.CancelFunc
}

func (q queueWatch) Stop() {
	q.Interface.Stop()
	q.cancel()
}

// openQueueWatch opens a watch of the queue's entries under the waiter's
// context (ctx only bounds the open). The caller stops it.
func (w *waiter) openQueueWatch(ctx context.Context, open func(context.Context) (watch.Interface, error)) (watch.Interface, error) {
	parent := w.ctx
	if parent == nil {
		parent = ctx
	}
	wctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(ctx, cancel) // ctx ending before the open returns ends it
	wch, err := open(wctx)
	stop()
	if err != nil || ctx.Err() != nil {
		if wch != nil {
			wch.Stop()
		}
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return queueWatch{wch, cancel}, nil
}

func stopWatch(wch watch.Interface) {
	if wch != nil {
		wch.Stop()
	}
}

// waitNear returns once fewer than lookahead live entries are ahead of
// this call's entry (at once if so already), renewing the entry meanwhile
// and queuing again if it is lost. A waiter never acts on the lock from
// here: it only decides when to start following it.
//
// It first follows the waiters that the permits name as the queue's tail
// (lookTail): nothing is read. With Hooks.Queued set, it reads the queue
// whole instead, to report its place (catchUp). Later reads, when an entry
// it follows goes, list the head of the queue as far as this entry's place
// (readHead). A read that does not place this entry for sure (its entry is
// missing, or lists are denied) is made again whole (readQueue).
func (w *waiter) waitNear(ctx context.Context, st *farState) error {
	dead := map[string]string{} // entry -> the version at which it expired in this view
	whole := false
	for first := true; ; first = false {
		reg := w.entry()
		read := w.readHead
		switch {
		case whole:
			read = w.readQueue
		case first && w.cfg.queued != nil:
			read = w.catchUp // its place is reported: read it exactly
		case first:
			// The waiters nearest ahead are the queue's tail, as the
			// permits named it when this call joined: follow them. With
			// fewer named, it may be near: list the head.
			if names := w.tailAhead(reg); len(names) >= w.lookahead() {
				if err := w.follow(ctx, names, make([]*lease.Snapshot, len(names)), w.joinRV, st, dead); err != nil {
					return err
				}
				continue
			}
		default:
			if last, ok := reg.lastSent(); ok && w.cfg.Clock.Since(last) > w.staleAfter() {
				// An entry ahead went: this waiter may be near now, and a
				// grant can follow within a few hand-overs. Renew an old
				// entry first, so that the grant names a version that
				// leaves time for the adoption (see acquire).
				if err := w.renewFar(ctx, st); err != nil {
					return err
				}
				reg = w.entry()
			}
		}
		q, err := read(ctx, reg)
		if err != nil || ctx.Err() != nil {
			q.stop()
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && !whole && !first:
			// The head could not be listed (the list verb may be denied):
			// read the queue whole.
			w.cfg.Logger.V(2).Info("listing the head of the queue failed; reading it whole", "err", err)
			whole = true
			continue
		case err != nil && lease.Permanent(err):
			return fmt.Errorf("lock: %w", err)
		case err != nil:
			w.cfg.Logger.V(2).Info("reading the queue failed, will retry", "err", err)
			if _, err := holder.Wait(ctx, w.cfg.Clock, nil, w.cfg.Timing.RetryPeriod); err != nil {
				return err
			}
			continue
		}
		mine, ok := q.entries[reg.name()]
		if q.h.partial && (!ok || mine.UID != reg.snap.UID || !q.h.holdsBefore(reg.pos)) {
			// A partial read places only an entry it holds with every
			// entry before it (readHead lists that far): read whole.
			q.stop()
			whole = true
			continue
		}
		if !ok || mine.UID != reg.snap.UID {
			// Not in the read: deleted or replaced (or the read lags).
			// The renewal tells: queued again, read again; else follow
			// the lock (the near loop handles the rest).
			q.stop()
			if err := w.renewFar(ctx, st); err != nil || w.entry().name() != reg.name() {
				return err
			}
			return nil
		}
		ahead := entriesAhead(q.entries, reg, dead)
		whole = false
		if len(ahead) != st.ahead {
			st.ahead = len(ahead)
			if w.cfg.queued != nil {
				w.cfg.queued(len(ahead))
			}
		}
		if len(ahead) < w.lookahead() || (q.h.partial && len(ahead) == w.lookahead()) {
			// Near; or, after a list of the head, one hand-over from
			// near: the view that list seeds is read already, and
			// following the entries ahead until then would cost a list
			// more.
			st.read = q
			return nil
		}
		q.stop()
		targets := ahead[:w.lookahead()]
		names := make([]string, len(targets))
		for i, t := range targets {
			names[i] = t.Name
		}
		if err := w.follow(ctx, names, targets, q.rv, st, dead); err != nil {
			return err
		}
	}
}

// entriesAhead returns the entries queued before reg that are held and not
// expired in this view (dead at their version), the nearest first.
func entriesAhead(entries map[string]*lease.Snapshot, reg *registration, dead map[string]string) []*lease.Snapshot {
	var out []*lease.Snapshot
	for name, s := range entries {
		if name == reg.name() || !s.Record.Held() || dead[name] == s.ResourceVersion {
			continue
		}
		if placeOf(s).cmp(reg.pos) < 0 {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *lease.Snapshot) int { return placeOf(b).cmp(placeOf(a)) })
	return out
}

// follow watches the entries targets, each by name, until one of them is
// deleted, replaced or released, or expires in this view (then recorded
// in dead), renewing this call's entry when due. A target read at rv is
// watched from there; one known by name only (nil snapshot: named by the
// queue's tail, see lookTail) with its state as of rv first, and one that
// does not exist then counts as gone. It returns nil to read the queue
// again.
func (w *waiter) follow(ctx context.Context, names []string, targets []*lease.Snapshot, rv string, st *farState, dead map[string]string) error {
	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: the watches' goroutines end with fctx
	defer cancel()
	events := make(chan followEvent)
	for i, name := range names {
		opts := metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: rv, AllowWatchBookmarks: true}
		if targets[i] == nil {
			yes := true
			opts.SendInitialEvents, opts.ResourceVersionMatch = &yes, metav1.ResourceVersionMatchNotOlderThan
		}
		wch, err := w.cfg.Leases.Leases(w.cfg.Namespace).Watch(fctx, opts)
		if err != nil {
			if err := lease.Classify("watch", w.cfg.Namespace, name, err); lease.Permanent(err) {
				return fmt.Errorf("lock: %w", err)
			}
			_, err := holder.Wait(ctx, w.cfg.Clock, nil, w.cfg.Timing.RetryPeriod)
			return err
		}
		wg.Go(func() { forward(fctx, i, wch, events) })
	}
	mine := w.entry().name()
	last := slices.Clone(targets)
	observed := make([]time.Time, len(targets))
	for i := range observed {
		observed[i] = w.cfg.Clock.Now()
	}
	for {
		now := w.cfg.Clock.Now()
		var expiry time.Time
		for i, s := range last {
			if s == nil {
				continue // its state is on its way
			}
			at := observed[i].Add(s.Record.LeaseDuration) // local time only (invariant 2)
			if !now.Before(at) {
				dead[s.Name] = s.ResourceVersion
				return nil
			}
			expiry = earliest(expiry, at)
		}
		if !now.Before(st.renewAt) {
			if err := w.renewFar(ctx, st); err != nil || w.entry().name() != mine {
				return err // queued again: read the queue
			}
			continue
		}
		timer := w.cfg.Clock.NewTimer(earliest(expiry, st.renewAt).Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C():
			continue
		case fe := <-events:
			timer.Stop()
			if !fe.ok {
				return nil
			}
			if last[fe.i] == nil {
				s, ok := initialState(fe.ev)
				if !ok {
					return nil // gone, left or unreadable: read the queue
				}
				if s != nil {
					last[fe.i], observed[fe.i] = s, w.cfg.Clock.Now()
				}
				continue
			}
			next, more := followed(fe.ev, last[fe.i])
			if !more {
				return nil
			}
			if !next.Record.Equal(last[fe.i].Record) {
				observed[fe.i] = w.cfg.Clock.Now() // only a change restarts the wait
			}
			last[fe.i] = next
		}
	}
}

// initialState reads an event of a watch that starts with the state of a
// followed entry: the entry (nil: not yet), or ok false when it does not
// exist (the initial state ended without it) or is not a waiter's.
func initialState(ev watch.Event) (s *lease.Snapshot, ok bool) {
	switch ev.Type {
	case watch.Added, watch.Modified:
		l, isLease := ev.Object.(*coordinationv1.Lease)
		if !isLease {
			return nil, false
		}
		s = lease.NewSnapshot(l)
		return s, s.Record.Held()
	case watch.Bookmark:
		m, err := meta.Accessor(ev.Object)
		return nil, err == nil && m.GetAnnotations()[initialEventsEnd] != "true"
	}
	return nil, false
}

// followEvent is an event of the watch of the i-th followed entry; ok
// false: that watch ended.
type followEvent struct {
	i  int
	ev watch.Event
	ok bool
}

// forward passes the events of one followed entry's watch on until ctx
// ends or the watch does.
func forward(ctx context.Context, i int, wch watch.Interface, out chan<- followEvent) {
	defer wch.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-wch.ResultChan():
			select {
			case out <- followEvent{i, ev, ok}:
			case <-ctx.Done():
				return
			}
			if !ok {
				return
			}
		}
	}
}

// followed applies one watch event of a followed entry: the new version,
// and whether to keep following it (false: deleted, replaced, released,
// or the watch failed: read the queue again).
func followed(ev watch.Event, last *lease.Snapshot) (*lease.Snapshot, bool) {
	switch ev.Type {
	case watch.Added, watch.Modified:
		l, ok := ev.Object.(*coordinationv1.Lease)
		if !ok {
			return last, false
		}
		s := lease.NewSnapshot(l)
		return s, s.UID == last.UID && s.Record.Held()
	case watch.Bookmark:
		return last, true
	}
	return last, false
}

// renewFar renews this call's entry; a lost entry is replaced at the back
// of the queue.
func (w *waiter) renewFar(ctx context.Context, st *farState) error {
	st.renewAt = w.cfg.Clock.Now().Add(w.renewEvery())
	reg := w.entry()
	err := reg.renew(ctx, reg.snap)
	switch {
	case errors.Is(err, ErrQueueEntryLost):
		_, err := w.requeue(ctx, fmt.Errorf("%w; queuing again at the back", err))
		return err
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		w.cfg.Logger.V(2).Info("renewing the queue entry failed", "entry", reg.name(), "err", err)
	}
	return nil
}

// catchUp reads the whole queue for this call's first look: from the
// queue a previous call of this Mutex or Semaphore kept whole, replaying
// the changes since (a few, when it locks again right after releasing), up
// to this call's own entry; from scratch (readQueue) when nothing whole
// was kept or the replay fails (the kept version is too old for the
// apiserver's cache).
func (w *waiter) catchUp(ctx context.Context, reg *registration) (queueRead, error) {
	if w.mem != nil {
		// Kept within half an entry's duration: at most about one
		// renewal per entry to replay, never more than a full read.
		if kept, ok := w.mem.keptQueue(w.cfg.Clock.Now().Add(-w.renewEvery())); ok {
			if q, err := w.replayQueue(ctx, kept, reg); err == nil {
				return q, nil
			}
		}
	}
	return w.readQueue(ctx, reg)
}

// replayQueue applies to the entries kept the queue's changes since, until
// this call's entry appears, and returns the entries, with the watch that
// read them, still open (none when nothing had to be read).
func (w *waiter) replayQueue(ctx context.Context, kept queueRead, reg *registration) (_ queueRead, err error) {
	out := queueRead{entries: maps.Clone(kept.entries), rv: kept.rv, h: kept.h}
	if s, ok := out.entries[reg.name()]; ok && s.UID == reg.snap.UID {
		return out, nil
	}

	rctx, cancel := context.WithTimeout(ctx, w.cfg.Timing.RenewDeadline)
	defer cancel()
	selector := entryLabel + "=" + w.key
	wch, err := w.openQueueWatch(rctx, func(c context.Context) (watch.Interface, error) {
		return lease.WatchSelected(c, w.cfg.Leases, w.cfg.Namespace, selector, kept.rv, false)
	})
	if err != nil {
		return queueRead{}, err
	}
	defer func() {
		if err != nil {
			wch.Stop()
		}
	}()
	for {
		select {
		case <-rctx.Done():
			return queueRead{}, rctx.Err()
		case ev, ok := <-wch.ResultChan():
			if !ok {
				return queueRead{}, errors.New("lock: the queue's watch ended")
			}
			l, err := w.queueEvent(out.entries, ev, selector)
			if err != nil {
				return queueRead{}, err
			}
			if l != nil && l.Name == reg.name() {
				out.rv, out.watch = l.ResourceVersion, wch
				return out, nil
			}
		}
	}
}

// headPage is how many entries readHead lists: the few that the near
// waiters and the holders act on, with room for some that left or died.
func (w *waiter) headPage() int64 { return int64(4*w.lookahead() + 8) }

// readHead lists the first entries of the queue by name: one page of
// headPage entries, and more pages (each larger, from the same snapshot)
// only until they reach reg's place, so that the cost grows with how far
// back reg is, not with the queue. Names sort as places do (entryName), so
// the pages hold every entry placed up to the last one listed: that is
// their bound (none when they hold the whole queue). The view that
// continues from them learns of every entry created or changed since.
func (w *waiter) readHead(ctx context.Context, reg *registration) (queueRead, error) {
	selector := entryLabel + "=" + w.key
	opts := metav1.ListOptions{LabelSelector: selector, Limit: w.headPage()}
	q := queueRead{entries: map[string]*lease.Snapshot{}}
	for {
		l, err := w.cfg.Leases.Leases(w.cfg.Namespace).List(ctx, opts)
		if err != nil {
			return queueRead{}, lease.Classify("list", w.cfg.Namespace, "-l "+selector, err)
		}
		if q.rv == "" {
			q.rv = l.ResourceVersion // the snapshot every page is read at
		}
		for i := range l.Items {
			q.entries[l.Items[i].Name] = lease.NewSnapshot(&l.Items[i])
		}
		if l.Continue == "" {
			q.h = horizon{}
			return q, nil
		}
		q.h.partial = true
		if n := len(l.Items); n > 0 {
			q.h.bound = placeOf(q.entries[l.Items[n-1].Name])
		}
		if q.h.holdsBefore(reg.pos) {
			return q, nil
		}
		opts.Continue, opts.Limit = l.Continue, min(4*opts.Limit, 512)
	}
}

// readQueue reads the queue's entries with one watch that starts with them
// (so it needs the watch verb only) at a version no older than the one
// that created reg, and returns them with that watch, still open.
func (w *waiter) readQueue(ctx context.Context, reg *registration) (_ queueRead, err error) {
	minRV := reg.snap.ResourceVersion
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Timing.RenewDeadline)
	defer cancel()
	yes := true
	selector := entryLabel + "=" + w.key
	wch, err := w.openQueueWatch(rctx, func(c context.Context) (watch.Interface, error) {
		wch, err := w.cfg.Leases.Leases(w.cfg.Namespace).Watch(c, metav1.ListOptions{
			LabelSelector: selector, AllowWatchBookmarks: true, SendInitialEvents: &yes,
			ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, ResourceVersion: minRV,
		})
		if err != nil {
			return nil, lease.Classify("watch", w.cfg.Namespace, "-l "+selector, err)
		}
		return wch, nil
	})
	if err != nil {
		return queueRead{}, err
	}
	defer func() {
		if err != nil {
			wch.Stop()
		}
	}()
	out := map[string]*lease.Snapshot{}
	for {
		select {
		case <-rctx.Done():
			return queueRead{}, rctx.Err()
		case ev, ok := <-wch.ResultChan():
			if !ok {
				return queueRead{}, errors.New("lock: the queue's watch ended before its initial events")
			}
			if ev.Type == watch.Bookmark {
				if m, err := meta.Accessor(ev.Object); err == nil && m.GetAnnotations()[initialEventsEnd] == "true" {
					return queueRead{entries: out, rv: m.GetResourceVersion(), watch: wch}, nil
				}
				continue
			}
			if _, err := w.queueEvent(out, ev, selector); err != nil {
				return queueRead{}, err
			}
		}
	}
}

// queueEvent applies an event of a watch on the queue's entries to out. It
// returns the Lease an Added or Modified event carried, and the error an
// Error event reports.
func (w *waiter) queueEvent(out map[string]*lease.Snapshot, ev watch.Event, selector string) (*coordinationv1.Lease, error) {
	switch ev.Type {
	case watch.Added, watch.Modified:
		if l, ok := ev.Object.(*coordinationv1.Lease); ok {
			out[l.Name] = lease.NewSnapshot(l)
			return l, nil
		}
	case watch.Deleted:
		if m, err := meta.Accessor(ev.Object); err == nil {
			delete(out, m.GetName())
		}
	case watch.Error:
		if s, ok := ev.Object.(*metav1.Status); ok {
			return nil, lease.WatchStatusError(w.cfg.Namespace, selector, s)
		}
		return nil, errors.New("lock: the queue's watch ended with an error event")
	}
	return nil, nil
}
