package lock

import (
	"context"
	"errors"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// initialEventsEnd is the annotation of the bookmark that ends a watch's
// initial events (sendInitialEvents).
const initialEventsEnd = "k8s.io/initial-events-end"

// entry is one queue entry as this process sees it.
type entry struct {
	snap       *lease.Snapshot
	pos        place     // place in the queue
	observedAt time.Time // local time its record last changed (invariant 2)
}

// live reports whether the entry's waiter has renewed within the entry's
// own duration in this process's view.
func (e entry) live(now time.Time) bool {
	return now.Before(e.observedAt.Add(e.snap.Record.LeaseDuration))
}

// view follows, with ONE label-selected watch, either every permit Lease
// of a lock (whatever the number of permits), each feeding one
// holder.Observer so that candidates and terms work on them as usual, or
// every entry of the lock's queue. Safe for concurrent use; run must be
// called.
type view struct {
	cfg      settings
	key      string
	selector string
	locks    map[string]*holder.Observer // permit Lease name -> its observer; nil for the queue
	changed  *holder.Signal              // notified at every change

	reread chan struct{} // asks run to read the entries whole again

	mu      sync.Mutex
	entries map[string]entry
	synced  bool
	from    string // the version a seeded view continues from
	latest  string // the version as of which entries are exact ("" while reading them)
	horizon horizon
	err     error
	watches int             // watches opened
	handed  watch.Interface // a watch seed handed on, for the first run
}

// horizon says how much of the queue a view (or a read) holds: every entry
// unless partial. A partial one holds every entry placed up to bound (its
// zero value: none for sure). One that started from a list of the first
// entries by name (readHead) has as bound the place of the last one
// listed, and learns of every entry created or changed since.
type horizon struct {
	partial bool
	bound   place
}

// holdsBefore reports whether every entry placed before p is known.
func (h horizon) holdsBefore(p place) bool { return !h.partial || p.cmp(h.bound) <= 0 }

// newView returns the view of the permit Leases (locks set) or of the
// queue's entries (locks nil) of the lock with queue key key.
func newView(cfg settings, key string, locks map[string]*holder.Observer, changed *holder.Signal) *view {
	label := entryLabel
	if locks != nil {
		label = queueLabel
	}
	return &view{cfg: cfg, key: key, selector: label + "=" + key, locks: locks, entries: map[string]entry{}, changed: changed, reread: make(chan struct{}, 1)}
}

// horizonNow returns how much of the queue the view holds.
func (v *view) horizonNow() horizon {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.horizon
}

// readWhole makes run read the entries whole again (the view is not
// synced until it has).
func (v *view) readWhole() {
	v.mu.Lock()
	v.synced = false
	v.mu.Unlock()
	select {
	case v.reread <- struct{}{}:
	default:
	}
}

// snapshot returns the entries, whether the view is synced and its error,
// and a channel closed at the next change (invariant 1: channel first).
func (v *view) snapshot() (map[string]entry, bool, error, <-chan struct{}) {
	ch := v.changed.C()
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]entry, len(v.entries))
	for k, e := range v.entries {
		out[k] = e
	}
	return out, v.synced, v.err, ch
}

// seed starts the queue's view from a read of the entries, so that run
// continues from there instead of reading them all again: with the watch
// that made the read (nil: none), which run then owns.
func (v *view) seed(q queueRead) {
	now := v.cfg.Clock.Now()
	v.mu.Lock()
	v.handed, v.horizon = q.watch, q.h
	for name, s := range q.entries {
		v.entries[name] = entry{snap: s, pos: placeOf(s), observedAt: now}
	}
	v.synced, v.from, v.latest = true, q.rv, q.rv
	v.mu.Unlock()
	v.changed.Notify()
}

// run watches until ctx ends, re-establishing the watch after errors.
func (v *view) run(ctx context.Context) {
	v.mu.Lock()
	rv := v.from
	v.mu.Unlock()
	for ctx.Err() == nil {
		next, err := v.watch(ctx, rv)
		if ctx.Err() != nil {
			return
		}
		rv = next
		if errors.Is(err, lease.ErrGone) {
			rv = ""
			continue
		}
		if err != nil {
			v.setErr(err)
			if lease.Permanent(err) {
				return
			}
			if _, werr := holder.Wait(ctx, v.cfg.Clock, nil, v.cfg.Timing.RetryPeriod); werr != nil {
				return
			}
		}
	}
}

// watch opens one watch (with the initial state when rv is "") and
// follows it until it ends; it returns the version to continue from.
func (v *view) watch(ctx context.Context, rv string) (string, error) {
	w := v.takeHanded()
	if w == nil {
		var err error
		if w, err = lease.WatchSelected(ctx, v.cfg.Leases, v.cfg.Namespace, v.selector, rv, rv == ""); err != nil {
			return rv, err
		}
		v.mu.Lock()
		v.watches++
		v.mu.Unlock()
	}
	defer w.Stop()
	seen := map[string]bool{}
	initial := rv == ""
	for {
		select {
		case <-ctx.Done():
			return rv, ctx.Err()
		case <-v.reread:
			return "", nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				if initial {
					return "", nil // the initial state was cut short: start over
				}
				return rv, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if l, ok := ev.Object.(*coordinationv1.Lease); ok {
					rv = l.ResourceVersion
					seen[l.Name] = true
					v.put(lease.NewSnapshot(l))
				}
			case watch.Deleted:
				if m, err := meta.Accessor(ev.Object); err == nil {
					rv = m.GetResourceVersion()
					v.remove(ctx, m.GetName(), rv)
				}
			case watch.Bookmark:
				if m, err := meta.Accessor(ev.Object); err == nil {
					if m.GetResourceVersion() != "" {
						rv = m.GetResourceVersion()
					}
					if initial && m.GetAnnotations()[initialEventsEnd] == "true" {
						initial = false
						v.endInitial(ctx, seen, rv)
					}
				}
			case watch.Error:
				if s, ok := ev.Object.(*metav1.Status); ok {
					return rv, lease.WatchStatusError(v.cfg.Namespace, v.selector, s)
				}
				return rv, errors.New("lock: queue watch ended with an error event")
			}
			if !initial {
				v.mu.Lock()
				v.latest = rv // the view is exact as of rv
				v.mu.Unlock()
			}
		}
	}
}

// takeHanded returns the watch seed handed on, once; nil if none.
func (v *view) takeHanded() watch.Interface {
	v.mu.Lock()
	defer v.mu.Unlock()
	w := v.handed
	v.handed = nil
	return w
}

// kept returns the entries as a read, exact as of the view's latest
// version; ok is false when it has not read them.
func (v *view) kept() (q queueRead, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.synced || v.err != nil || v.latest == "" {
		return queueRead{}, false
	}
	entries := make(map[string]*lease.Snapshot, len(v.entries))
	for name, e := range v.entries {
		entries[name] = e.snap
	}
	return queueRead{entries: entries, rv: v.latest, h: v.horizon}, true
}

// put records a version of a permit Lease or of an entry.
func (v *view) put(s *lease.Snapshot) {
	if o, ok := v.locks[s.Name]; ok {
		o.Offer(s)
		v.changed.Notify()
		return
	}
	v.mu.Lock()
	prev, had := v.entries[s.Name]
	e := entry{snap: s, pos: placeOf(s), observedAt: v.cfg.Clock.Now()}
	if had && prev.snap.UID == s.UID && prev.snap.Record.Equal(s.Record) {
		e.observedAt = prev.observedAt // invariant 3: only a change restarts the wait
	}
	v.entries[s.Name] = e
	v.err = nil
	v.mu.Unlock()
	v.changed.Notify()
}

func (v *view) remove(ctx context.Context, name, rv string) {
	if o, ok := v.locks[name]; ok {
		v.unseen(ctx, name, o, rv)
	} else {
		v.mu.Lock()
		delete(v.entries, name)
		v.mu.Unlock()
	}
	v.changed.Notify()
}

// endInitial completes a (re-)read: what it did not show is gone, or
// lacks the queue label.
func (v *view) endInitial(ctx context.Context, seen map[string]bool, rv string) {
	v.mu.Lock()
	for name := range v.entries {
		if !seen[name] {
			delete(v.entries, name)
		}
	}
	v.err = nil
	v.mu.Unlock()
	for name, o := range v.locks {
		if !seen[name] {
			v.unseen(ctx, name, o, rv)
		}
	}
	v.mu.Lock()
	v.synced, v.horizon = true, horizon{}
	v.mu.Unlock()
	v.changed.Notify()
}

// unseen handles a permit Lease that the watch does not show: it does not
// exist, or it lacks the queue label (created by another client, or the
// label was removed by hand: it then left the selection). One read tells;
// a Lease without the label gets it back with a conditional write that
// changes no field of the record; one labelled for another lock is shown to
// the candidates as is, whose kind check refuses it.
func (v *view) unseen(ctx context.Context, name string, o *holder.Observer, rv string) {
	s, err := o.Client().Get(ctx)
	switch {
	case errors.Is(err, lease.ErrNotFound):
		o.Absent(rv)
	case err != nil && lease.Permanent(err):
		v.setErr(err)
	case err != nil:
		v.cfg.Logger.V(2).Info("reading a lock Lease the queue watch does not show failed", "lease", name, "err", err)
		o.Absent(rv)
	case s.Label(queueLabel) == "":
		v.cfg.Logger.Info("lock Lease has no queue label (created by another client, or edited); adding it", "lease", name, "label", v.selector)
		labelled := lease.WithLabel(s, queueLabel, v.key)
		if out, err := o.Client().Update(ctx, labelled, s.Record, 0); err == nil { // invariant 4
			s = out
		}
		o.Offer(s)
	default:
		o.Offer(s)
	}
}

func (v *view) setErr(err error) {
	v.mu.Lock()
	v.err = err
	v.mu.Unlock()
	v.changed.Notify()
}

// watchCount returns how many watches this view has opened.
func (v *view) watchCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.watches
}
