package holder

import (
	"context"
	"errors"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/lease"
)

// State is what an Observer currently knows about its Lease.
type State struct {
	// Synced is false until the Lease has been read once.
	Synced bool
	// Lease is the latest snapshot, nil when the Lease does not exist.
	Lease *lease.Snapshot
	// ObservedAt is the local time at which the record was last seen to
	// change (or the Lease to appear or disappear). Expiry is judged from it,
	// never from timestamps written by other clocks.
	ObservedAt time.Time
	// Err is the last error of the watch, nil while it is healthy.
	Err error
}

// Exists reports whether the Lease exists.
func (s State) Exists() bool { return s.Lease != nil }

// Holder returns the current holder, "" when none.
func (s State) Holder() string {
	if s.Lease == nil {
		return ""
	}
	return s.Lease.Record.Holder
}

// ExpiresAt is when the lease expires in this observer's view: ObservedAt plus
// the record's own duration. Zero when the lease is not held.
func (s State) ExpiresAt() time.Time {
	if s.Lease == nil || !s.Lease.Record.Held() {
		return time.Time{}
	}
	return s.ObservedAt.Add(s.Lease.Record.LeaseDuration)
}

// Observer keeps the latest state of one Lease by watching it: a read, then a
// watch from the version read, re-established after errors and after 410 Gone.
// Readers get the latest State and a channel that is closed at the next
// change, so any number of them can wait without ever blocking the Observer.
//
// Observer is safe for concurrent use. Run must be called (once) for it to
// make progress.
type Observer struct {
	client *lease.Client
	clock  clock.Clock
	retry  time.Duration

	mu      sync.Mutex
	state   State
	lastRV  string
	offers  uint64 // Offer calls, to tell whether one raced with a read
	seed    State  // an earlier observation to continue from (Seed)
	changed chan struct{}
	resync  chan struct{}
	reread  []chan struct{} // closed after the next read: Resync's callers
}

// NewObserver returns an Observer of the client's Lease. retry is the wait
// between attempts to re-establish a failed watch.
func NewObserver(c *lease.Client, clk clock.Clock, retry time.Duration) *Observer {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if retry <= 0 {
		retry = time.Second
	}
	return &Observer{client: c, clock: clk, retry: retry, changed: make(chan struct{}), resync: make(chan struct{}, 1)}
}

// Client returns the Lease client the Observer reads with.
func (o *Observer) Client() *lease.Client { return o.client }

// State returns the latest state and a channel closed when it next changes.
func (o *Observer) State() (State, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.state, o.changed
}

// Resync asks Run to re-read the Lease and restart its watch, for callers that
// have reason to believe the watch is behind (a conflict that no event
// explains). It does not block; the channel it returns is closed once that
// read is done and its result, if newer, is in State.
func (o *Observer) Resync() <-chan struct{} {
	done := make(chan struct{})
	o.mu.Lock()
	o.reread = append(o.reread, done)
	o.mu.Unlock()
	select {
	case o.resync <- struct{}{}:
	default:
	}
	return done
}

// takeRereads returns the channels of the Resync calls the next read
// serves, and drops their pending request.
func (o *Observer) takeRereads() []chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	waiters := o.reread
	o.reread = nil
	if len(waiters) > 0 {
		select {
		case <-o.resync:
		default:
		}
	}
	return waiters
}

// Seed continues an earlier observation of the same Lease (usually the last
// State of a previous Observer in this process): if the first read finds the
// same object at the same resourceVersion (nothing was written since), its
// ObservedAt is kept instead of
// restarting at now, so a caller that watches in bouts (a Lock retried with
// short timeouts) still sees a crashed holder's lease expire. Call it before
// Run.
func (o *Observer) Seed(prev State) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seed = prev
}

// Offer records a snapshot obtained outside the watch, typically the result
// of the caller's own write. Snapshots older than what is known are ignored.
func (o *Observer) Offer(s *lease.Snapshot) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.offers++
	o.apply(s, s.ResourceVersion)
}

// Poke wakes every waiter on State's channel without a change of the Lease:
// for evidence from outside it (a Witness) that changes what a waiter would
// decide.
func (o *Observer) Poke() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.notify()
}

// Absent records that the Lease is gone as of resourceVersion rv, for an
// Observer fed by the caller (Offer and Absent) instead of by Run.
func (o *Observer) Absent(rv string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if rv != "" {
		o.lastRV = rv
	}
	o.forceAbsent()
}

// apply must be called with o.mu held.
func (o *Observer) apply(s *lease.Snapshot, rv string) {
	if o.state.Synced && o.lastRV != "" && rv != "" {
		if cmp, err := resourceversion.CompareResourceVersion(rv, o.lastRV); err == nil && cmp <= 0 {
			return
		}
	}
	if rv != "" {
		o.lastRV = rv
	}
	prev := o.state
	// Invariants 2 and 3: expiry is counted from the local time a change of
	// any field was seen, never from a timestamp in the record.
	next := State{Synced: true, Lease: s, ObservedAt: prev.ObservedAt, Err: nil}
	switch {
	case !prev.Synced && s != nil && o.seed.Lease != nil && s.UID == o.seed.Lease.UID && s.ResourceVersion == o.seed.Lease.ResourceVersion:
		next.ObservedAt = o.seed.ObservedAt
	case !prev.Synced, (prev.Lease == nil) != (s == nil):
		next.ObservedAt = o.clock.Now()
	case s != nil && (s.UID != prev.Lease.UID || !s.Record.Equal(prev.Lease.Record)):
		next.ObservedAt = o.clock.Now()
	}
	o.state = next
	o.notify()
}

func (o *Observer) setErr(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state.Err == nil && err == nil {
		return
	}
	o.state.Err = err
	o.notify()
}

// notify must be called with o.mu held.
func (o *Observer) notify() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// Run watches the Lease until ctx ends, then returns ctx.Err(). Errors are
// published in State.Err; transient ones are retried every retry interval,
// while a permanent one (forbidden, unauthorized, invalid: see lease.Permanent)
// ends Run with that error, since retrying cannot help without a change of
// RBAC or credentials.
func (o *Observer) Run(ctx context.Context) error {
	for {
		rereads := o.takeRereads()
		rv, err := o.read(ctx)
		for _, done := range rereads {
			close(done)
		}
		if err == nil {
			err = o.watch(ctx, rv)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errResync) || errors.Is(err, lease.ErrGone) {
			continue // re-read at once
		}
		if err != nil {
			o.setErr(err)
			if lease.Permanent(err) {
				return err
			}
			t := o.clock.NewTimer(o.retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-o.resync:
				t.Stop()
			case <-t.C():
			}
		}
	}
}

// read gets the Lease and returns the version to watch from.
func (o *Observer) read(ctx context.Context) (string, error) {
	o.mu.Lock()
	offers := o.offers
	o.mu.Unlock()
	s, err := o.client.Get(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case errors.Is(err, lease.ErrNotFound):
		if o.offers != offers && o.state.Lease != nil && o.lastRV != "" {
			// A version offered while the read was in flight is newer than
			// the read; a delete after it arrives through the watch.
			return o.lastRV, nil
		}
		// Watch from "now": an object created in between arrives as an ADDED event.
		o.forceAbsent()
		return "", nil
	case err != nil:
		return "", err
	}
	o.apply(s, s.ResourceVersion)
	return s.ResourceVersion, nil
}

// forceAbsent records that the Lease is gone; must be called with o.mu held.
func (o *Observer) forceAbsent() {
	if o.state.Synced && o.state.Lease == nil && o.state.Err == nil {
		return
	}
	wasPresent := o.state.Lease != nil || !o.state.Synced
	o.state = State{Synced: true, ObservedAt: o.state.ObservedAt}
	if wasPresent {
		o.state.ObservedAt = o.clock.Now()
	}
	o.notify()
}

// watch follows events until the watch ends. A cleanly closed watch is
// re-opened from the last version seen without a new read.
func (o *Observer) watch(ctx context.Context, rv string) error {
	for {
		w, err := o.client.Watch(ctx, rv)
		if err != nil {
			return err
		}
		o.setErr(nil)
		next, err := o.follow(ctx, w, rv)
		w.Stop()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rv = next
	}
}

func (o *Observer) follow(ctx context.Context, w watch.Interface, rv string) (string, error) {
	for {
		select {
		case <-ctx.Done():
			return rv, ctx.Err()
		case <-o.resync:
			return rv, errResync
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				l, ok := ev.Object.(*coordinationv1.Lease)
				if !ok {
					continue
				}
				rv = l.ResourceVersion
				o.mu.Lock()
				o.apply(lease.NewSnapshot(l), rv)
				o.mu.Unlock()
			case watch.Deleted:
				if m, err := meta.Accessor(ev.Object); err == nil {
					rv = m.GetResourceVersion()
				}
				o.mu.Lock()
				o.lastRV = rv
				o.forceAbsent()
				o.mu.Unlock()
			case watch.Bookmark:
				if m, err := meta.Accessor(ev.Object); err == nil && m.GetResourceVersion() != "" {
					rv = m.GetResourceVersion()
				}
			case watch.Error:
				status, _ := ev.Object.(*metav1.Status)
				var err error = errWatchClosed
				if status != nil {
					err = o.client.WatchError(status)
				}
				return rv, err
			}
		}
	}
}

var (
	errResync      = errors.New("holder: watch restarted on request")
	errWatchClosed = errors.New("holder: watch ended with an error event")
)
