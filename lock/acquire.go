package lock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

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
	// Waiting is the number of waiters queued ahead: a free lock with
	// waiters is theirs, not TryLock's.
	Waiting int
}

// Holder describes one held permit.
type Holder struct {
	// Lease is "namespace/name".
	Lease string
	// Identity holds it; "" if released but reserved for PreferredFor.
	Identity string
	// PreferredFor is set when the lease is reserved for a planned handoff.
	PreferredFor string
	// ExpiresAt is when it expires in this process's view unless renewed.
	ExpiresAt time.Time
}

func (e *LockedError) Error() string {
	parts := make([]string, 0, len(e.Holders)+1)
	for _, h := range e.Holders {
		who := fmt.Sprintf("held by %q", h.Identity)
		if h.Identity == "" {
			who = fmt.Sprintf("reserved for %q", h.PreferredFor)
		}
		parts = append(parts, fmt.Sprintf("%s %s until at least %s", h.Lease, who, h.ExpiresAt.Format(time.RFC3339)))
	}
	if e.Waiting > 0 {
		parts = append(parts, fmt.Sprintf("%d waiter(s) queued", e.Waiting))
	}
	return "lock: locked: " + strings.Join(parts, "; ")
}

// Is matches ErrLocked.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// waiter is one Lock, TryLock or Acquire call: its queue entry, the view of
// the lock's Leases (one watch) and a candidate per permit. After an
// acquisition it stays with the Held until Release, which hands over from it.
type waiter struct {
	cfg   settings
	key   string
	names []string
	obs   []*holder.Observer
	cands []*holder.Candidate
	view  *view // the permit Leases: watched from start to close
	queue *view // the queue's entries: watched only while needed (watchQueue)

	changed holder.Signal // either view changed

	confirmed map[int]string // void grants read back, per permit (acquire's goroutine only)
	mem       *memory        // of the Mutex or Semaphore, shared by its calls

	mu           sync.Mutex
	reg          *registration   // nil for TryLock
	tail         []string        // the queue's tail the permits named when reg joined
	joinRV       string          // the version they were read at
	mine         map[string]bool // every entry this call created
	queueStarted bool
	lockStarted  bool
	ctx          context.Context // of the watches, ended by close
	cancel       context.CancelFunc
	wg           sync.WaitGroup
}

func newWaiter(cfg settings, names []string, kind string) (*waiter, error) {
	w := &waiter{cfg: cfg, key: queueKey(kind, cfg.Name), names: names, mine: map[string]bool{}, confirmed: map[int]string{}}
	locks := map[string]*holder.Observer{}
	for _, name := range names {
		c, err := lease.NewClient(cfg.Leases, cfg.Namespace, name)
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		o := holder.NewObserver(c, cfg.Clock, cfg.Timing.RetryPeriod) // fed by the view
		cand, err := holder.NewCandidate(o, holder.CandidateConfig{
			Identity: cfg.Identity, Timing: cfg.Timing, Clock: cfg.Clock, Hooks: cfg.hooks,
			KeepOnPreference: true, // a lock is held until released
			Kind:             kind,
			Labels:           map[string]string{queueLabel: w.key},
			Decorate:         w.markHeld,
		})
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		locks[name] = o
		w.obs = append(w.obs, o)
		w.cands = append(w.cands, cand)
	}
	w.view = newView(cfg, w.key, locks, &w.changed)
	w.queue = newView(cfg, w.key, nil, &w.changed)
	return w, nil
}

// markHeld records, on an acquiring write, which entry holds the permit.
func (w *waiter) markHeld(base *lease.Snapshot) *lease.Snapshot {
	w.mu.Lock()
	reg := w.reg
	w.mu.Unlock()
	_, cur := cursorOf(holder.State{Lease: base})
	if reg == nil {
		// TryLock queues no entry: the cursor stays.
		return lease.WithAnnotation(base, entryAnnotation, cursorValue("free", cur))
	}
	p := reg.pos
	if cur.cmp(p) > 0 {
		p.at = cur.at // the cursor never moves back
	}
	base = lease.WithAnnotation(base, grantedOnAnnotation, "")
	return lease.WithAnnotation(base, entryAnnotation, cursorValue("held", p))
}

// start prepares the waiter's background work, owned by it until close.
func (w *waiter) start(ctx context.Context) {
	w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
}

// watchPermits starts the permits' watch, if it is not running: for
// TryLock, and for a waiter near the head of the queue (waitNear).
func (w *waiter) watchPermits() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lockStarted || w.ctx == nil {
		return
	}
	w.lockStarted = true
	w.wg.Go(func() { w.view.run(w.ctx) })
}

// dropEntry deletes, in the background, the entry of a call that has just
// taken or adopted a permit: the permit's cursor now records its place,
// and the waiter that follows this entry learns at once that it is near.
func (w *waiter) dropEntry() {
	reg := w.entry()
	if reg == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx != nil {
		w.wg.Go(func() { reg.remove(w.ctx) })
	}
}

// watchQueue starts the queue's watch, if it is not running: for a waiter
// near the head, which keeps it as the holder (it hands over to the head of
// the queue), and for TryLock (a free lock with waiters is theirs).
func (w *waiter) watchQueue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queueStarted || w.ctx == nil {
		return
	}
	w.queueStarted = true
	w.wg.Go(func() { w.queue.run(w.ctx) })
}

// entries returns the queue's entries when its watch has read them, else
// nil (also after a permanent error of that watch, returned).
func (w *waiter) entries() (map[string]entry, error) {
	w.mu.Lock()
	started := w.queueStarted
	w.mu.Unlock()
	if !started {
		return nil, nil
	}
	entries, synced, err, _ := w.queue.snapshot()
	if err != nil && lease.Permanent(err) {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if !synced {
		return nil, nil
	}
	return entries, nil
}

// queueSynced waits until the queue's watch has read the entries, ctx ends
// or the watch fails for good.
func (w *waiter) queueSynced(ctx context.Context) {
	w.watchQueue()
	for {
		changed := w.changed.C()
		_, synced, err, _ := w.queue.snapshot()
		if synced || (err != nil && lease.Permanent(err)) {
			return
		}
		if _, werr := holder.Wait(ctx, w.cfg.Clock, changed, -1); werr != nil {
			return
		}
	}
}

// close stops the watches and waits for them; the queue, if this call
// followed it, is kept for the next call.
func (w *waiter) close() {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
	stopWatch(w.queue.takeHanded()) // seeded but never run
	w.mu.Lock()
	started := w.queueStarted
	w.mu.Unlock()
	if started && w.mem != nil {
		if q, ok := w.queue.kept(); ok && !q.h.partial { // only a whole queue is replayed
			w.mem.keepQueue(q, w.cfg.Clock.Now())
		}
	}
}

func (w *waiter) entry() *registration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reg
}

// join registers a (new) queue entry for this call.
func (w *waiter) join(ctx context.Context) error {
	read, err := w.lookTail(ctx)
	if err != nil {
		return err
	}
	return w.joinAt(ctx, read.rv, read.tail)
}

// permitsRead is what lookTail read.
type permitsRead struct {
	rv   string
	tail []string
	// listed holds the permits the list returned, by name (nil: lists are
	// denied, the version came from a watch); free reports whether a
	// permit lay released, or did not exist yet, in that list.
	listed map[string]*lease.Snapshot
	free   bool
}

// joinAt registers a queue entry placed at version rv (read by lookTail
// after this call began), behind the tail that read named.
func (w *waiter) joinAt(ctx context.Context, rv string, tail []string) error {
	est, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return fmt.Errorf("lock: read the current version: %q is not a number", rv)
	}
	reg, err := register(ctx, w.cfg, w.key, est)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.reg, w.mine[reg.name()], w.tail, w.joinRV = reg, true, tail, rv
	w.mu.Unlock()
	return nil
}

// lookTail reads the lock's permits (a Lease each) in ONE consistent
// list, whatever the queue's length (a Mutex's by name, so that the
// apiserver reads one key rather than filter the namespace by label), for
// two things: its version, read after this call began, is no later than
// the one its entry will be created at and later than those of every
// entry whose creation had completed when it began, so that the entry's
// place (entryName) comes after theirs; and the queue's tail that the
// permits name (tailAnnotation), the waiters just ahead of the entry.
// The permits it lists start takeFree's view of them. Where lists are
// denied, a watch of the lock's Lease that starts with its current state
// gives the version, and the tail stays unknown.
func (w *waiter) lookTail(ctx context.Context) (permitsRead, error) {
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Timing.RenewDeadline)
	defer cancel()
	// A Mutex lists its one Lease by name, which the apiserver reads by key;
	// a Semaphore's permits by label, which it filters the namespace for.
	opts := metav1.ListOptions{LabelSelector: queueLabel + "=" + w.key}
	selector := "-l " + opts.LabelSelector
	if len(w.names) == 1 {
		opts = metav1.ListOptions{FieldSelector: "metadata.name=" + w.names[0]}
		selector = w.names[0]
	}
	l, err := w.cfg.Leases.Leases(w.cfg.Namespace).List(rctx, opts)
	if err == nil {
		read := permitsRead{rv: l.ResourceVersion, listed: map[string]*lease.Snapshot{}}
		for i := range l.Items {
			item := &l.Items[i]
			read.tail = append(read.tail, strings.Fields(item.Annotations[tailAnnotation])...)
			if slices.Contains(w.names, item.Name) {
				read.listed[item.Name] = lease.NewSnapshot(item)
				read.free = read.free || item.Spec.HolderIdentity == nil || *item.Spec.HolderIdentity == ""
			}
		}
		read.free = read.free || len(read.listed) < len(w.names)
		return read, nil
	}
	listErr := lease.Classify("list", w.cfg.Namespace, selector, err)
	name := w.names[0]
	yes := true
	wch, err := w.cfg.Leases.Leases(w.cfg.Namespace).Watch(rctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + name, AllowWatchBookmarks: true, SendInitialEvents: &yes,
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		return permitsRead{}, fmt.Errorf("lock: read the current version: %w", errors.Join(listErr, lease.Classify("watch", w.cfg.Namespace, name, err)))
	}
	defer wch.Stop()
	for {
		select {
		case <-rctx.Done():
			return permitsRead{}, fmt.Errorf("lock: read the current version: %w", rctx.Err())
		case ev, ok := <-wch.ResultChan():
			if !ok {
				return permitsRead{}, errors.New("lock: read the current version: the watch ended before its initial state")
			}
			if m, err := meta.Accessor(ev.Object); err == nil && ev.Type == watch.Bookmark && m.GetAnnotations()[initialEventsEnd] == "true" {
				return permitsRead{rv: m.GetResourceVersion()}, nil
			}
		}
	}
}

// tailAhead returns the entries of the tail named when this call joined
// that are ahead of reg, the nearest first, at most lookahead of them.
func (w *waiter) tailAhead(reg *registration) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ahead []place
	for _, name := range w.tail {
		if p, ok := w.placeNamed(name); ok && p.cmp(reg.pos) < 0 && !slices.Contains(ahead, p) {
			ahead = append(ahead, p)
		}
	}
	slices.SortFunc(ahead, func(a, b place) int { return b.cmp(a) })
	names := make([]string, 0, w.lookahead())
	for i := 0; i < len(ahead) && i < w.lookahead(); i++ {
		names = append(names, ahead[i].name)
	}
	return names
}

// placeNamed is the place of the entry of this lock's queue named name:
// ok is false for a name that is not one (a tail annotation edited by
// hand names anything).
func (w *waiter) placeNamed(name string) (place, bool) {
	if !strings.HasPrefix(name, w.cfg.Name+"-q-") || len(name) != len(w.cfg.Name)+entrySuffixLen {
		return place{}, false
	}
	return placeNamed(name)
}

// tailHint is the tailAnnotation a grant or release writes on base: the
// last two live waiters known, from the queue's view and from the tail
// base names (those the view cannot have missed and does not show are
// gone). Unchanged while the view has not read the queue.
func (w *waiter) tailHint(base *lease.Snapshot, live []queued, entries map[string]entry) string {
	if entries == nil {
		return base.Annotation(tailAnnotation)
	}
	h := w.queue.horizonNow()
	var tail []place
	for _, e := range live {
		if !w.isMine(e.name) {
			tail = append(tail, e.pos)
		}
	}
	for _, name := range strings.Fields(base.Annotation(tailAnnotation)) {
		if _, known := entries[name]; known {
			continue // live above if it still waits
		}
		if p, ok := w.placeNamed(name); ok && !h.holdsBefore(p) && !slices.Contains(tail, p) {
			tail = append(tail, p)
		}
	}
	slices.SortFunc(tail, func(a, b place) int { return a.cmp(b) })
	tail = tail[max(0, len(tail)-2):]
	names := make([]string, len(tail))
	for i, p := range tail {
		names[i] = p.name
	}
	return strings.Join(names, " ")
}

func (w *waiter) isMine(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mine[name]
}

// states returns every permit's state.
func (w *waiter) states() []holder.State {
	out := make([]holder.State, len(w.obs))
	for i, o := range w.obs {
		out[i], _ = o.State()
	}
	return out
}

// successor is what a releasing holder (or a waiter passing on a grant it
// will not use) writes: a grant to the first live waiter of the queue that
// is not this call, or the plain release when nobody waits.
func (w *waiter) successor(base *lease.Snapshot) (*lease.Snapshot, lease.Record, lease.Token) {
	now := w.cfg.Clock.Now()
	entries, _ := w.entries()
	q := order(now, w.states(), w.cands, entries)
	base = lease.WithAnnotation(base, tailAnnotation, w.tailHint(base, q.live, entries))
	for _, e := range q.live {
		if w.isMine(e.name) {
			continue
		}
		if obj, rec, tok, err := grantTo(base, e, now); err == nil {
			return obj, rec, tok
		}
	}
	_, cur := cursorOf(holder.State{Lease: base})
	base = lease.WithAnnotation(base, grantedOnAnnotation, "")
	return lease.WithAnnotation(base, entryAnnotation, cursorValue("free", cur)), base.Record.Released(now), 0
}

// successorKnown reports whether the queue's view names the next waiter
// for sure: it holds the whole queue, or its first live waiter is placed
// where the view holds every entry before it. (A view that started from
// the head of the queue lacks quiet entries beyond what it listed.)
func (w *waiter) successorKnown() bool {
	h := w.queue.horizonNow()
	entries, err := w.entries()
	if !h.partial || err != nil || entries == nil {
		return true
	}
	for _, e := range order(w.cfg.Clock.Now(), w.states(), w.cands, entries).live {
		if !w.isMine(e.name) {
			return h.holdsBefore(e.pos)
		}
	}
	return false
}

// passOn hands a permit granted to this call, which it will not use, to the
// next waiter (or releases it), with one conditional write.
func (w *waiter) passOn(ctx context.Context, i int, granted *lease.Snapshot) {
	obj, rec, tok := w.successor(granted)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.Timing.RenewDeadline)
	defer cancel()
	s, err := w.obs[i].Client().Update(pctx, obj, rec, tok) // invariant 4
	if err != nil {
		w.cfg.Logger.V(2).Info("passing on an unused grant failed; it expires", "lease", granted.Name, "err", err)
		return
	}
	w.obs[i].Offer(s)
}

// leave is a waiter's exit without a lock: it marks its entry as left,
// then passes on any permit its view shows granted to it. A grant still on
// its way is taken by the waiter behind: it names an entry marked left (see
// order).
func (w *waiter) leave(ctx context.Context) {
	if reg := w.entry(); reg != nil {
		reg.markLeft(ctx)
	}
	for i, st := range w.states() {
		if name, granted := namedBy(st); granted && w.isMine(name) && st.Lease.Record.Holder == w.cfg.Identity {
			w.passOn(ctx, i, st.Lease)
		}
	}
}

// cleanUp deletes the entries this process saw expire (their waiters are
// gone, or so slow that they queue again) or marked left, and this call's
// own entry, after a hand-over. An entry a permit still names is kept: a
// grant to an entry marked left is free at once, one to a deleted entry
// only once it expires.
func (w *waiter) cleanUp(ctx context.Context) {
	entries, _ := w.entries()
	states := w.states()
	q := order(w.cfg.Clock.Now(), states, w.cands, entries)
	named := map[string]bool{}
	for _, st := range states {
		if _, p := cursorOf(st); p.name != "" {
			named[p.name] = true
		}
	}
	for _, d := range q.dead {
		if named[d.name] {
			continue
		}
		c, err := lease.NewClient(w.cfg.Leases, w.cfg.Namespace, d.name)
		if err == nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.Timing.RenewDeadline)
			_ = c.Delete(dctx, d.snap.UID)
			cancel()
		}
	}
	if reg := w.entry(); reg != nil {
		reg.remove(ctx)
	}
}

// lockedError describes the permits and the queue for TryLock.
func (w *waiter) lockedError(states []holder.State, waiting int) *LockedError {
	e := &LockedError{Waiting: waiting}
	now := w.cfg.Clock.Now()
	for i, st := range states {
		c := w.obs[i].Client()
		h := Holder{Lease: c.Namespace() + "/" + c.Name(), Identity: st.Holder()}
		switch {
		case st.Lease == nil:
		case st.Lease.Record.Held():
			h.ExpiresAt = st.ObservedAt.Add(st.Lease.Record.LeaseDuration)
		default:
			h.PreferredFor = st.Lease.Record.PreferredHolder
			h.ExpiresAt = now
		}
		if h.ExpiresAt.Before(now) {
			h.ExpiresAt = now
		}
		e.Holders = append(e.Holders, h)
	}
	return e
}
