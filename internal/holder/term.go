package holder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/resourceversion"

	"github.com/leasehold/leasehold/lease"
)

// Reasons a term ends, returned by Term.Err and as the cause of its context
// (context.Cause). election and lock export the same values.
var (
	// ErrLost: another identity holds the lease, or it was deleted.
	ErrLost = errors.New("lease lost to another holder")
	// ErrDeadline: no renewal succeeded within RenewDeadline of the last one
	// sent; the context ended before anyone else could take the lease.
	ErrDeadline = errors.New("lease renew deadline passed")
	// ErrPreempted: a preferred holder names another identity; the lease is
	// still held (and renewed) until Release, so the work can stop first.
	ErrPreempted = errors.New("lease preferred for another holder (planned handoff)")
	// ErrReleased: Release or Abandon was called.
	ErrReleased = errors.New("lease released")
)

// Term is one acquisition of a lease: from the write that took it to the
// release, loss or deadline. It renews in the background until Release or
// Abandon is called or the lease is lost. Its Context ends strictly before any
// other process could see the lease expire (invariant 6).
//
// Term is safe for concurrent use. Release or Abandon must be called to stop
// renewing; both wait for the term's goroutines to exit.
type Term struct {
	c      *Candidate
	token  lease.Token
	trans  int32
	ctx    context.Context
	cancel context.CancelCauseFunc

	stop     chan struct{} // closed by halt
	stopOnce sync.Once
	expired  chan struct{} // closed by the deadline goroutine when it ends the term
	finished chan struct{} // closed when the renewing goroutine returns
	offerNow chan struct{} // asks the renewing goroutine for a renewal at once
	wg       sync.WaitGroup

	mu        sync.Mutex
	snap      *lease.Snapshot // latest version of the lease written or seen for this term
	lastRenew time.Time       // when the last successful write was sent
	deadline  time.Time       // lastRenew + RenewDeadline
	over      bool            // the deadline passed: renewals no longer extend the term
	lost      bool            // the lease is no longer ours: nothing to release
	offerTo   string          // set by Offer: every later renewal offers the lease to it
	adopting  bool            // begun on a grant (AdoptFrom): the next renewal is the adoption
	successor string          // set by SetSuccessor: Release reserves the lease for it
}

func (c *Candidate) startTerm(ctx context.Context, snap *lease.Snapshot, tok lease.Token, sent time.Time) *Term {
	t := c.newTerm(ctx, snap, tok, sent)
	t.begin()
	return t
}

func (c *Candidate) newTerm(ctx context.Context, snap *lease.Snapshot, tok lease.Token, sent time.Time) *Term {
	tctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	return &Term{
		c: c, token: tok, trans: snap.Record.Transitions,
		ctx: tctx, cancel: cancel,
		stop: make(chan struct{}), expired: make(chan struct{}),
		finished: make(chan struct{}), offerNow: make(chan struct{}, 1),
		snap: snap, lastRenew: sent, deadline: sent.Add(c.cfg.Timing.RenewDeadline),
	}
}

// begin starts the term's goroutines.
func (t *Term) begin() {
	t.wg.Go(t.enforceDeadline)
	t.wg.Go(t.renewLoop)
}

// Token returns the fencing token of this term.
func (t *Term) Token() lease.Token { return t.token }

// Transitions returns the lease's transition count for this term.
func (t *Term) Transitions() int32 { return t.trans }

// Context is cancelled when the term ends or is preempted; its cause
// (context.Cause) is one of ErrLost, ErrDeadline, ErrPreempted, ErrReleased.
func (t *Term) Context() context.Context { return t.ctx }

// Done is closed when the term's context ends.
func (t *Term) Done() <-chan struct{} { return t.ctx.Done() }

// Err returns nil while the term holds, else why it ended.
func (t *Term) Err() error { return context.Cause(t.ctx) }

// Deadline returns the hard deadline: the moment the context ends unless a
// renewal succeeds first.
func (t *Term) Deadline() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deadline
}

// LastRenew returns when the last successful renewal (or the acquisition) was
// sent.
func (t *Term) LastRenew() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastRenew
}

// Snapshot returns the latest version of the lease known to this term.
func (t *Term) Snapshot() *lease.Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snap
}

// enforceDeadline ends the term's context at the hard deadline. Invariant 6:
// it runs on its own goroutine with its own timer and calls no hook, logger
// or other code not in this package, so nothing else the process does can
// delay it. A successful renewal moves the deadline later; the timer then
// fires early, and the loop re-arms it.
func (t *Term) enforceDeadline() {
	clk := t.c.cfg.Clock
	for {
		t.mu.Lock()
		left := t.deadline.Sub(clk.Now())
		if left <= 0 {
			t.over = true // invariant 7: no renewal extends the term from now on
		}
		t.mu.Unlock()
		if left <= 0 {
			t.cancel(ErrDeadline)
			close(t.expired)
			return
		}
		timer := clk.NewTimer(left)
		select {
		case <-timer.C():
		case <-t.stop:
			timer.Stop()
			return
		}
	}
}

type renewResult struct {
	snap    *lease.Snapshot
	sent    time.Time
	lost    bool
	err     error
	latency time.Duration
}

// renewLoop renews every RetryPeriod and follows the watch for a loss or a
// preemption, until halt, the deadline or the loss of the lease.
func (t *Term) renewLoop() {
	defer close(t.finished)
	timing, clk := t.c.cfg.Timing, t.c.cfg.Clock
	first := timing.RetryPeriod
	if t.isAdopting() {
		// The adoption is the first renewal, due a RetryPeriod after the
		// write the term counts from, but not before half the time left
		// to the deadline (at most a RetryPeriod) has passed: a term
		// released before then hands over without ever writing (one write
		// per hand-over), also when the grant counts from a write made
		// long before it. The other half is left for retries.
		left := t.Deadline().Sub(clk.Now())
		first = max(0, t.LastRenew().Add(timing.RetryPeriod).Sub(clk.Now()), min(timing.RetryPeriod, left/2))
	}
	renewTimer := clk.NewTimer(first)
	defer renewTimer.Stop()

	var inflight chan renewResult
	reqCtx, cancelReq := context.WithCancel(context.WithoutCancel(t.ctx))
	defer func() {
		if inflight != nil && t.isAdopting() {
			// The adoption (AdoptFrom) is still on its way: a release
			// right after the grant writes on the version it makes rather
			// than cancel it, which would cost a conflict and a read.
			// Bounded by a RetryPeriod.
			wait := clk.NewTimer(timing.RetryPeriod)
			select {
			case res := <-inflight:
				inflight = nil
				if res.err == nil && !res.lost {
					t.renewed(res)
				}
			case <-wait.C():
			}
			wait.Stop()
		}
		cancelReq()
		if inflight != nil {
			// A renewal that got through anyway is still our own last
			// write: record it, so that the candidate knows it may retake
			// the lease (invariant 5).
			if res := <-inflight; res.err == nil && !res.lost {
				t.renewed(res)
			}
		}
	}()
	for {
		st, changed := t.c.obs.State()
		if t.checkObserved(st) {
			return
		}
		select {
		case <-t.stop:
			return
		case <-t.expired:
			return
		case <-changed:
		case <-t.offerNow:
			renewTimer.Reset(0)
		case <-renewTimer.C():
			if inflight == nil {
				inflight = make(chan renewResult, 1)
				base := t.Snapshot()
				go func() { inflight <- t.renew(reqCtx, base) }() // joined by the deferred receive
			}
		case res := <-inflight:
			inflight = nil
			next, over := t.settleRenewal(res)
			if over {
				return
			}
			renewTimer.Reset(next)
		}
	}
}

// settleRenewal records the result of one renewal, tells the Renewed hook,
// and returns when to renew next, or that the lease is lost.
func (t *Term) settleRenewal(res renewResult) (next time.Duration, lost bool) {
	if res.lost {
		t.endLost()
	} else if res.err == nil {
		t.renewed(res)
	}
	if t.c.cfg.Hooks.Renewed != nil {
		t.c.cfg.Hooks.Renewed(res.latency, res.err) // after the result is recorded
	}
	if res.lost {
		return 0, true
	}
	if res.err != nil {
		return t.c.cfg.Timing.RetryPeriod, false
	}
	if t.offering() && res.snap.OfferedTo == "" {
		return 0, false // Offer came while this renewal was in flight
	}
	return res.sent.Add(t.c.cfg.Timing.RetryPeriod).Sub(t.c.cfg.Clock.Now()), false
}

// renewed records a successful renewal. Invariant 6: the deadline moves to
// RenewDeadline after the renewal was sent, not answered; invariant 7: a
// renewal answered after the deadline does not revive the term.
func (t *Term) renewed(res renewResult) {
	t.mu.Lock()
	t.snap = res.snap
	t.adopting = false
	if !t.over {
		t.lastRenew = res.sent
		t.deadline = res.sent.Add(t.c.cfg.Timing.RenewDeadline)
	}
	t.mu.Unlock()
	t.c.setOwn(res.snap.ResourceVersion)
	t.c.obs.Offer(res.snap)
}

// checkObserved reacts to the watch: a newer version held by someone else
// means the term is lost; a newer version still ours is adopted as the base of
// the next renewal; a preferred holder other than us preempts the term.
// It reports whether the term is over.
func (t *Term) checkObserved(st State) bool {
	t.mu.Lock()
	cur := t.snap
	newer := st.Synced && (st.Lease == nil || isNewer(st.Lease.ResourceVersion, cur.ResourceVersion))
	if newer && (st.Lease == nil || !t.ours(st.Lease)) {
		t.mu.Unlock()
		t.endLost()
		return true
	}
	if newer {
		t.snap = st.Lease
		cur = st.Lease
	}
	t.mu.Unlock()
	if p := cur.Record.PreferredHolder; p != "" && p != t.c.cfg.Identity && !t.c.cfg.KeepOnPreference {
		t.cancel(ErrPreempted)
	}
	return false
}

func (t *Term) endLost() {
	t.mu.Lock()
	t.lost = true
	t.mu.Unlock()
	t.cancel(ErrLost)
}

func isNewer(a, b string) bool {
	cmp, err := resourceversion.CompareResourceVersion(a, b)
	return err == nil && cmp > 0
}

// ours reports whether s still shows this term: our identity, our transition.
func (t *Term) ours(s *lease.Snapshot) bool {
	return s != nil && s.Record.Holder == t.c.cfg.Identity && s.Record.Transitions == t.trans
}

// renew makes one renewal: a conditional update of the version last seen; on
// conflict one re-read, and one more update if the lease is still ours.
func (t *Term) renew(ctx context.Context, base *lease.Snapshot) renewResult {
	clk, client := t.c.cfg.Clock, t.c.obs.Client()
	start := clk.Now()
	// Invariant 7: never wait past the hard deadline for an answer.
	ctx, cancel := context.WithTimeout(ctx, t.Deadline().Sub(start))
	defer cancel()
	snap, sent, err := t.write(ctx, base)
	if errors.Is(err, lease.ErrConflict) {
		fresh, gerr := client.Get(ctx)
		switch {
		case errors.Is(gerr, lease.ErrNotFound):
			return renewResult{lost: true, err: err, latency: clk.Since(start)}
		case gerr != nil:
			return renewResult{err: gerr, latency: clk.Since(start)}
		case !t.ours(fresh):
			t.c.obs.Offer(fresh)
			return renewResult{lost: true, err: err, latency: clk.Since(start)}
		}
		snap, sent, err = t.write(ctx, fresh)
	}
	return renewResult{snap: snap, sent: sent, err: err, latency: clk.Since(start)}
}

// write renews on base (with the handoff offer, once Offer was called) and
// returns when the request was sent.
func (t *Term) write(ctx context.Context, base *lease.Snapshot) (*lease.Snapshot, time.Time, error) {
	t.mu.Lock()
	offerTo, adopting := t.offerTo, t.adopting
	t.mu.Unlock()
	if adopting {
		base = t.c.decorate(base, t.trans)
	}
	if offerTo != "" {
		base = lease.WithOffer(base, offerTo)
	}
	sent := t.c.cfg.Clock.Now()
	rec := base.Record
	rec.Holder = t.c.cfg.Identity
	rec.LeaseDuration = t.c.cfg.Timing.LeaseDuration
	rec.RenewTime = sent
	s, err := t.c.obs.Client().Update(ctx, base, rec, t.token) // invariant 4
	return s, sent, err
}

func (t *Term) isAdopting() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.adopting
}

// halt stops the term's goroutines and waits for them.
func (t *Term) halt() {
	t.stopOnce.Do(func() { close(t.stop) })
	t.wg.Wait()
}

// Abandon stops renewing without releasing: others take the lease once it
// expires in their view. It ends the context with ErrReleased if it has not
// ended yet.
func (t *Term) Abandon() {
	t.halt()
	t.cancel(ErrReleased)
}

// SetSuccessor names the candidate a later Release reserves the released
// lease for (spec.preferredHolder and its annotation): it takes the lease at
// once, the others wait two retry periods. "" (the default) releases it to
// anyone.
func (t *Term) SetSuccessor(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.successor = id
}

// Release ends the term and gives the lease up with the release convention
// (holder "", duration 1s), so that a waiting candidate takes over at once.
// Call it only after the guarded work has stopped. Invariant 11: if the
// lease no longer shows this term nothing is written. A conflict (a claim or
// handoff request written meanwhile) is re-read and retried while the lease
// is still ours, until ctx ends. Release is idempotent.
func (t *Term) Release(ctx context.Context) error {
	return t.HandOver(ctx, nil)
}

// Successor says what a releasing holder writes on base, the version it
// writes on: the object (base, or a copy with other annotations), the record
// (base.Record.Released, or a record naming the next holder) and the token to
// record (zero: none).
type Successor func(base *lease.Snapshot) (obj *lease.Snapshot, rec lease.Record, tok lease.Token)

// HandOver ends the term as Release does, but writes what next returns for
// the version it writes on (a record naming the next holder, in one
// conditional write); nil next is the plain release.
// Invariant 11 holds for both: nothing is written once the lease no longer
// shows this term.
func (t *Term) HandOver(ctx context.Context, next Successor) error {
	t.halt()
	t.cancel(ErrReleased)
	t.mu.Lock()
	lost, base, successor := t.lost, t.snap, t.successor
	t.mu.Unlock()
	client := t.c.obs.Client()
	for !lost && t.ours(base) {
		obj, rec, tok := base, base.Record.Released(t.c.cfg.Clock.Now()), lease.Token(0)
		if next != nil {
			obj, rec, tok = next(base)
		} else if successor != "" {
			rec.PreferredHolder = successor
		}
		snap, err := client.Update(ctx, obj, rec, tok) // invariant 4
		if err == nil {
			t.mu.Lock()
			t.snap, t.lost = snap, true
			t.mu.Unlock()
			t.c.setOwn("")
			t.c.obs.Offer(snap)
			return nil
		}
		if !errors.Is(err, lease.ErrConflict) {
			return fmt.Errorf("release: %w", err)
		}
		base, err = client.Get(ctx)
		if errors.Is(err, lease.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		t.c.obs.Offer(base)
	}
	return nil
}

func (t *Term) offering() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.offerTo != ""
}

// Offer hands the lease to the candidate with identity to, keeping it
// meanwhile: the next renewal (at once) and every later one carry an offer
// (lease.OfferAnnotation) that lets to take the lease by a conditional write.
// Call it only after the work under the term has stopped: the offer says so.
// Offer returns true when to (or anyone) has taken the lease, false when
// nobody took it within the given time or ctx ended; the term is then
// halted, with the lease still ours at our last write, which the candidate
// may retake at once (invariant 5) and, doing so, withdraw the offer.
func (t *Term) Offer(ctx context.Context, to string, within time.Duration) bool {
	t.mu.Lock()
	t.offerTo = to
	t.mu.Unlock()
	select {
	case t.offerNow <- struct{}{}:
	default:
	}
	timer := t.c.cfg.Clock.NewTimer(within)
	defer timer.Stop()
	select {
	case <-t.finished:
	case <-timer.C():
	case <-ctx.Done():
	}
	t.halt()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lost
}

// Settle ends the term once the code that ran under it has returned or
// panicked: it stops renewing and releases the lease within timeout, or
// abandons it (it then expires) when release is false. Invariant 10: callers
// run it in a defer around the user code, so that no exit path, a recovered
// panic included, leaves a term renewing. It returns Release's error.
func (t *Term) Settle(ctx context.Context, release bool, timeout time.Duration) error {
	if !release {
		t.Abandon()
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	return t.Release(rctx)
}
