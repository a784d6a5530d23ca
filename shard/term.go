package shard

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Reasons a shard's context ends (context.Cause).
var (
	// ErrMoved: the shard is assigned to another member in this member's
	// view (a join, a leave, a rebalance).
	ErrMoved = errors.New("shard: moved to another member")
	// ErrDeadline: no renewal of this member's membership succeeded within
	// RenewDeadline of the last one sent; every shard stopped before any
	// other member could take it.
	ErrDeadline = errors.New("shard: membership renew deadline passed")
	// ErrLost: this member's membership Lease was taken over (its record
	// had expired in another member's view) or edited or deleted by hand.
	ErrLost = errors.New("shard: membership lost")
	// ErrLeaving: Run's context ended; the member leaves the group once
	// every shard has stopped.
	ErrLeaving = errors.New("shard: member leaving the group")
	// ErrShardCount: the group's live members use another number of
	// shards.
	ErrShardCount = errors.New("shard: the group uses another number of shards")
)

// term is one incarnation of this member's membership: from the write that
// took its Lease to the loss of it, its deadline or the leave. Every shard
// context is a child of ctx, which ends at the hard deadline from its own
// goroutine and timer (as in internal/holder, invariant 6): RenewDeadline
// after the send of the last successful write.
type term struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	trans  int32
	clock  clock.Clock
	rd     time.Duration

	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu       sync.Mutex
	deadline time.Time
	over     bool
}

func startTerm(parent context.Context, clk clock.Clock, rd time.Duration, trans int32, sent time.Time) *term {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	t := &term{ctx: ctx, cancel: cancel, trans: trans, clock: clk, rd: rd, stop: make(chan struct{}), deadline: sent.Add(rd)}
	t.wg.Go(t.enforceDeadline)
	return t
}

// enforceDeadline ends the term at the hard deadline. It runs no code but
// its own (internal/holder invariant 6): nothing the process does, user
// code included, can delay it.
func (t *term) enforceDeadline() {
	for {
		t.mu.Lock()
		left := t.deadline.Sub(t.clock.Now())
		if left <= 0 {
			t.over = true // internal/holder invariant 7: no renewal extends it now
		}
		t.mu.Unlock()
		if left <= 0 {
			t.cancel(ErrDeadline)
			return
		}
		timer := t.clock.NewTimer(left)
		select {
		case <-timer.C():
		case <-t.stop:
			timer.Stop()
			return
		}
	}
}

// renewed moves the deadline to RenewDeadline after sent, the moment the
// successful write was sent, unless the term is already over.
func (t *term) renewed(sent time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.over && t.ctx.Err() == nil {
		t.deadline = sent.Add(t.rd)
	}
}

// Deadline returns the hard deadline.
func (t *term) Deadline() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deadline
}

// valid reports whether the term still holds: shards may run under it and
// its Lease may be written as this incarnation.
func (t *term) valid() bool { return t.ctx.Err() == nil }

// end ends the term with cause and stops its deadline goroutine.
func (t *term) end(cause error) {
	t.cancel(cause)
	t.once.Do(func() { close(t.stop) })
	t.wg.Wait()
}

// termKey is the context key of the term a shard runs under.
type termKey struct{}

// Check reports whether the shard run that ctx belongs to (the context Run
// passes to Func, or one derived from it) may still run: nil while ctx has
// not ended and its member's hard deadline has not passed by the Group's
// clock, even when the timer that ends ctx at the deadline has not fired
// yet (a process that was stopped, SIGSTOP or a VM pause, and has just
// been continued); else why not (ErrDeadline, or ctx's cause).
func Check(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	t, ok := ctx.Value(termKey{}).(*term)
	if !ok {
		return errors.New("shard: Check: not the context of a shard's run")
	}
	if !t.clock.Now().Before(t.Deadline()) {
		return ErrDeadline
	}
	return nil
}
