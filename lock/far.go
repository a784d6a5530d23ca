package lock

import (
	"cmp"
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
	// The last read of the queue and its version, which the queue's view
	// continues from (nil: none), and the watch that read it, still open:
	// the view goes on with it rather than open another.
	read   map[string]*lease.Snapshot
	readAt string
	watch  watch.Interface
}

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
func (w *waiter) waitNear(ctx context.Context, st *farState) error {
	dead := map[string]string{} // entry -> the version at which it expired in this view
	for first := true; ; first = false {
		reg := w.entry()
		read := w.readQueue
		if first {
			read = w.catchUp
		} else if last, ok := reg.lastSent(); ok && w.cfg.Clock.Since(last) > w.cfg.Timing.RetryPeriod {
			// An entry ahead went: this waiter may be near now, and a grant
			// can follow within a few hand-overs. Renew first, so that the
			// grant names a recent version (see acquire).
			if err := w.renewFar(ctx, st); err != nil {
				return err
			}
			reg = w.entry()
		}
		entries, rv, wch, err := read(ctx, reg)
		if err != nil || ctx.Err() != nil {
			stopWatch(wch)
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && lease.Permanent(err):
			return fmt.Errorf("lock: %w", err)
		case err != nil:
			w.cfg.Logger.V(2).Info("reading the queue failed, will retry", "err", err)
			if _, err := holder.Wait(ctx, w.cfg.Clock, nil, w.cfg.Timing.RetryPeriod); err != nil {
				return err
			}
			continue
		}
		mine, ok := entries[reg.name()]
		if !ok || mine.UID != reg.snap.UID {
			// Not in the read: deleted or replaced (or the read lags).
			// The renewal tells: queued again, read again; else follow
			// the lock (the near loop handles the rest).
			stopWatch(wch)
			if err := w.renewFar(ctx, st); err != nil || w.entry().name() != reg.name() {
				return err
			}
			return nil
		}
		ahead := entriesAhead(entries, reg, dead)
		if len(ahead) != st.ahead {
			st.ahead = len(ahead)
			if w.cfg.queued != nil {
				w.cfg.queued(len(ahead))
			}
		}
		if len(ahead) < w.lookahead() {
			st.read, st.readAt, st.watch = entries, rv, wch
			return nil
		}
		stopWatch(wch)
		if err := w.follow(ctx, ahead[:w.lookahead()], rv, st, dead); err != nil {
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
		if positionOf(s) < reg.pos {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *lease.Snapshot) int {
		return cmp.Or(cmp.Compare(positionOf(b), positionOf(a)), cmp.Compare(b.Name, a.Name))
	})
	return out
}

// follow watches the entries targets (as read at rv), each by name, until
// one of them is deleted, replaced or released, or expires in this view
// (then recorded in dead), renewing this call's entry when due. It returns
// nil to read the queue again.
func (w *waiter) follow(ctx context.Context, targets []*lease.Snapshot, rv string, st *farState, dead map[string]string) error {
	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: the watches' goroutines end with fctx
	defer cancel()
	events := make(chan followEvent)
	for i, t := range targets {
		c, err := lease.NewClient(w.cfg.Leases, w.cfg.Namespace, t.Name)
		if err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		wch, err := c.Watch(fctx, rv)
		if err != nil {
			if lease.Permanent(err) {
				return fmt.Errorf("lock: %w", err)
			}
			_, err := holder.Wait(ctx, w.cfg.Clock, nil, w.cfg.Timing.RetryPeriod)
			return err
		}
		wg.Go(func() { forward(fctx, i, wch, events) })
	}
	name := w.entry().name()
	last := slices.Clone(targets)
	observed := make([]time.Time, len(targets))
	for i := range observed {
		observed[i] = w.cfg.Clock.Now()
	}
	for {
		now := w.cfg.Clock.Now()
		var expiry time.Time
		for i, s := range last {
			at := observed[i].Add(s.Record.LeaseDuration) // local time only (invariant 2)
			if !now.Before(at) {
				dead[s.Name] = s.ResourceVersion
				return nil
			}
			expiry = earliest(expiry, at)
		}
		if !now.Before(st.renewAt) {
			if err := w.renewFar(ctx, st); err != nil || w.entry().name() != name {
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

// catchUp reads the queue for this call's first look: from the queue a
// previous call of this Mutex or Semaphore kept, replaying the changes
// since (a few, when it locks again right after releasing), up to this
// call's own entry; from scratch (readQueue) when nothing was kept or the
// replay fails (the kept version is too old for the apiserver's cache).
func (w *waiter) catchUp(ctx context.Context, reg *registration) (map[string]*lease.Snapshot, string, watch.Interface, error) {
	kept, rv := map[string]*lease.Snapshot(nil), ""
	if w.mem != nil {
		// Kept within half an entry's duration: at most about one
		// renewal per entry to replay, never more than a full read.
		kept, rv = w.mem.keptQueue(w.cfg.Clock.Now().Add(-w.renewEvery()))
	}
	if kept != nil {
		if entries, at, wch, err := w.replayQueue(ctx, kept, rv, reg); err == nil {
			return entries, at, wch, nil
		}
	}
	return w.readQueue(ctx, reg)
}

// replayQueue applies to the entries kept as of version rv the queue's
// changes since, until this call's entry appears, and returns the entries
// and the version as of which they are exact, with the watch that read
// them, still open (nil when nothing had to be read; the caller stops it).
func (w *waiter) replayQueue(ctx context.Context, kept map[string]*lease.Snapshot, rv string, reg *registration) (_ map[string]*lease.Snapshot, _ string, _ watch.Interface, err error) {
	out := maps.Clone(kept)
	if s, ok := out[reg.name()]; ok && s.UID == reg.snap.UID {
		return out, rv, nil, nil
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Timing.RenewDeadline)
	defer cancel()
	selector := entryLabel + "=" + w.key
	wch, err := w.openQueueWatch(rctx, func(c context.Context) (watch.Interface, error) {
		return lease.WatchSelected(c, w.cfg.Leases, w.cfg.Namespace, selector, rv, false)
	})
	if err != nil {
		return nil, "", nil, err
	}
	defer func() {
		if err != nil {
			wch.Stop()
		}
	}()
	for {
		select {
		case <-rctx.Done():
			return nil, "", nil, rctx.Err()
		case ev, ok := <-wch.ResultChan():
			if !ok {
				return nil, "", nil, errors.New("lock: the queue's watch ended")
			}
			l, err := w.queueEvent(out, ev, selector)
			if err != nil {
				return nil, "", nil, err
			}
			if l != nil && l.Name == reg.name() {
				return out, l.ResourceVersion, wch, nil
			}
		}
	}
}

// readQueue reads the queue's entries with one watch that starts with them
// (so it needs the watch verb only) at a version no older than the one
// that created reg, and returns them, the version they were read at and
// the watch, still open (the caller stops it).
func (w *waiter) readQueue(ctx context.Context, reg *registration) (_ map[string]*lease.Snapshot, _ string, _ watch.Interface, err error) {
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
		return nil, "", nil, err
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
			return nil, "", nil, rctx.Err()
		case ev, ok := <-wch.ResultChan():
			if !ok {
				return nil, "", nil, errors.New("lock: the queue's watch ended before its initial events")
			}
			if ev.Type == watch.Bookmark {
				if m, err := meta.Accessor(ev.Object); err == nil && m.GetAnnotations()[initialEventsEnd] == "true" {
					return out, m.GetResourceVersion(), wch, nil
				}
				continue
			}
			if _, err := w.queueEvent(out, ev, selector); err != nil {
				return nil, "", nil, err
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
