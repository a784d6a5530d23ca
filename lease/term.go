package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// Reasons a term ends, returned by Term.Err and as the cause of its context
// (context.Cause).
var (
	// ErrLost: another identity holds the lease, or it was deleted.
	ErrLost = errors.New("lease: lost to another holder")
	// ErrDeadline: no renewal succeeded within RenewDeadline of the last one
	// sent; the context ended before anyone else could take the lease.
	ErrDeadline = errors.New("lease: renew deadline passed")
	// ErrPreempted: spec.preferredHolder names another identity; the lease is
	// still held (and renewed) until Release, so the work can stop first.
	ErrPreempted = errors.New("lease: another holder is preferred (planned handoff)")
	// ErrReleased: Release or Abandon was called.
	ErrReleased = errors.New("lease: released")
)

// Term is one acquisition of a lease: from the write that took it to the
// release, loss or deadline. It renews in the background until Release or
// Abandon is called or the lease is lost. Its Context ends strictly before any
// other process could see the lease expire (see package documentation).
//
// Term is safe for concurrent use. Release or Abandon must be called to stop
// renewing; both wait for the renewing goroutine to exit.
type Term struct {
	c      *Candidate
	token  Token
	trans  int32
	ctx    context.Context
	cancel context.CancelCauseFunc

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu        sync.Mutex
	snap      *Snapshot // latest version of the lease written or seen for this term
	lastRenew time.Time // when the last successful write was sent
	deadline  time.Time // lastRenew + RenewDeadline
	lost      bool      // the lease is no longer ours: nothing to release
}

func (c *Candidate) startTerm(ctx context.Context, snap *Snapshot, tok Token, sent time.Time) *Term {
	tctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	t := &Term{
		c: c, token: tok, trans: snap.Record.Transitions,
		ctx: tctx, cancel: cancel,
		stop: make(chan struct{}), done: make(chan struct{}),
		snap: snap, lastRenew: sent, deadline: sent.Add(c.timing.RenewDeadline),
	}
	go t.run()
	return t
}

// Token returns the fencing token of this term.
func (t *Term) Token() Token { return t.token }

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
func (t *Term) Snapshot() *Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snap
}

type renewResult struct {
	snap    *Snapshot
	sent    time.Time
	lost    bool
	err     error
	latency time.Duration
}

func (t *Term) run() {
	defer close(t.done)
	timing, clk := t.c.timing, t.c.clock
	renewTimer := clk.NewTimer(timing.RetryPeriod)
	defer renewTimer.Stop()
	deadlineTimer := clk.NewTimer(timing.RenewDeadline - clk.Since(t.lastRenew))
	defer deadlineTimer.Stop()

	var inflight chan renewResult
	reqCtx, cancelReq := context.WithCancel(context.WithoutCancel(t.ctx))
	defer func() {
		cancelReq()
		if inflight != nil {
			<-inflight
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
		case <-deadlineTimer.C():
			if d := t.Deadline().Sub(clk.Now()); d > 0 { // moved by a renewal
				deadlineTimer.Reset(d)
				continue
			}
			t.cancel(ErrDeadline)
			return
		case <-changed:
		case <-renewTimer.C():
			if inflight == nil {
				inflight = make(chan renewResult, 1)
				base := t.Snapshot()
				go func() { inflight <- t.renew(reqCtx, base) }()
			}
		case res := <-inflight:
			inflight = nil
			if t.c.hooks.Renewed != nil {
				t.c.hooks.Renewed(res.latency, res.err)
			}
			switch {
			case res.lost:
				t.endLost()
				return
			case res.err != nil:
				renewTimer.Reset(timing.RetryPeriod)
			default:
				t.mu.Lock()
				t.snap = res.snap
				t.lastRenew = res.sent
				t.deadline = res.sent.Add(timing.RenewDeadline)
				t.mu.Unlock()
				t.c.setOwn(res.snap.ResourceVersion)
				t.c.obs.Offer(res.snap)
				renewTimer.Reset(res.sent.Add(timing.RetryPeriod).Sub(clk.Now()))
			}
		}
	}
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
	if p := cur.Record.PreferredHolder; p != "" && p != t.c.identity && t.c.preemptible() {
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
func (t *Term) ours(s *Snapshot) bool {
	return s != nil && s.Record.Holder == t.c.identity && s.Record.Transitions == t.trans
}

// renew makes one renewal: a conditional update of the version last seen; on
// conflict one re-read, and one more update if the lease is still ours.
func (t *Term) renew(ctx context.Context, base *Snapshot) renewResult {
	clk, timing, client := t.c.clock, t.c.timing, t.c.obs.Client()
	start := clk.Now()
	// Never wait past the hard deadline for an answer.
	ctx, cancel := context.WithTimeout(ctx, t.Deadline().Sub(start))
	defer cancel()
	write := func(b *Snapshot) (*Snapshot, time.Time, error) {
		sent := clk.Now()
		rec := b.Record
		rec.Holder = t.c.identity
		rec.LeaseDuration = timing.LeaseDuration
		rec.RenewTime = sent
		s, err := client.Update(ctx, b, rec, t.token)
		return s, sent, err
	}
	snap, sent, err := write(base)
	if errors.Is(err, ErrConflict) {
		fresh, gerr := client.Get(ctx)
		switch {
		case errors.Is(gerr, ErrNotFound):
			return renewResult{lost: true, err: err, latency: clk.Since(start)}
		case gerr != nil:
			return renewResult{err: gerr, latency: clk.Since(start)}
		case !t.ours(fresh):
			t.c.obs.Offer(fresh)
			return renewResult{lost: true, err: err, latency: clk.Since(start)}
		}
		snap, sent, err = write(fresh)
	}
	return renewResult{snap: snap, sent: sent, err: err, latency: clk.Since(start)}
}

// halt stops the renewing goroutine and waits for it.
func (t *Term) halt() {
	t.stopOnce.Do(func() { close(t.stop) })
	<-t.done
}

// Abandon stops renewing without releasing: others take the lease once it
// expires in their view. It ends the context with ErrReleased if it has not
// ended yet.
func (t *Term) Abandon() {
	t.halt()
	t.cancel(ErrReleased)
}

// Release ends the term and gives the lease up with the release convention
// (holder "", duration 1s), so that a waiting candidate takes over at once.
// Call it only after the guarded work has stopped. If the lease is no longer
// ours nothing is written. Release is idempotent.
func (t *Term) Release(ctx context.Context) error {
	t.halt()
	t.cancel(ErrReleased)
	t.mu.Lock()
	lost, base := t.lost, t.snap
	t.mu.Unlock()
	if lost || !t.ours(base) {
		return nil
	}
	client := t.c.obs.Client()
	snap, err := client.Update(ctx, base, base.Record.Released(t.c.clock.Now()), 0)
	if errors.Is(err, ErrConflict) {
		fresh, gerr := client.Get(ctx)
		if gerr != nil {
			if errors.Is(gerr, ErrNotFound) {
				return nil
			}
			return fmt.Errorf("lease: release: %w", gerr)
		}
		if !t.ours(fresh) {
			return nil
		}
		snap, err = client.Update(ctx, fresh, fresh.Record.Released(t.c.clock.Now()), 0)
	}
	if err != nil {
		return fmt.Errorf("lease: release: %w", err)
	}
	t.mu.Lock()
	t.snap, t.lost = snap, true
	t.mu.Unlock()
	t.c.setOwn("")
	t.c.obs.Offer(snap)
	return nil
}
