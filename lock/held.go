package lock

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// Why a Held's context ended (context.Cause of Held.Context).
var (
	// ErrLost: another identity holds the lease, or it was deleted.
	ErrLost = holder.ErrLost
	// ErrDeadline: no renewal succeeded within RenewDeadline of the last
	// one sent; the context ended before anyone else could take the lock.
	ErrDeadline = holder.ErrDeadline
	// ErrReleased: Release was called.
	ErrReleased = holder.ErrReleased
)

// Held is one acquisition of a lock (or of one permit of a semaphore). It
// renews in the background until Release. Its Context ends when the lock is
// lost, strictly before another process could see the lease expire. Held is
// safe for concurrent use; Release must be called, also after a loss, to stop
// its background work (Do does it for you, panics included).
type Held struct {
	term    *holder.Term
	permit  int
	lease   string
	w       *waiter
	timeout time.Duration // bound on a release made while unwinding

	once   sync.Once
	relErr error
}

// Token returns the fencing token of this acquisition.
func (h *Held) Token() lease.Token { return h.term.Token() }

// Context is cancelled when the lock is lost or released; context.Cause
// says which (ErrLost, ErrDeadline, ErrReleased).
func (h *Held) Context() context.Context { return h.term.Context() }

// Done is closed when Context ends.
func (h *Held) Done() <-chan struct{} { return h.term.Done() }

// Err returns nil while held, else why it ended.
func (h *Held) Err() error { return h.term.Err() }

// Permit returns which permit of a Semaphore is held (0 for a Mutex).
func (h *Held) Permit() int { return h.permit }

// Lease returns "namespace/name" of the Lease held.
func (h *Held) Lease() string { return h.lease }

// Deadline returns when Context ends unless a renewal succeeds first.
func (h *Held) Deadline() time.Time { return h.term.Deadline() }

// Release hands the lock to the first live waiter of the queue in one
// conditional write (or releases it when nobody waits), stops renewing,
// leaves the queue and waits for the background work. Call it after the
// guarded work has stopped. Idempotent; later calls return the first
// result.
func (h *Held) Release(ctx context.Context) error {
	h.once.Do(func() {
		// The queue's watch started with the term; give it half the
		// release deadline to have read the entries (a plain release if it
		// has not: the waiters then take the free lock in queue order),
		// and to read them whole if the part it holds does not name the
		// next waiter for sure.
		sctx, cancel := context.WithTimeout(ctx, h.timeout/2)
		h.w.queueSynced(sctx)
		if !h.w.successorKnown() {
			h.w.queue.readWhole()
			h.w.queueSynced(sctx)
		}
		cancel()
		h.relErr = h.term.HandOver(ctx, h.w.successor)
		h.w.cleanUp(ctx)
		h.w.close()
	})
	return h.relErr
}

// do runs fn under h and releases h when fn returns or panics (invariant
// 10). A release made while a panic unwinds is bounded by RenewDeadline.
func (h *Held) do(ctx context.Context, fn func(ctx context.Context, token lease.Token) error) (err error) {
	returned := false
	defer func() {
		if !returned {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
			defer cancel()
			_ = h.Release(rctx)
		}
	}()
	fnErr := fn(h.Context(), h.Token())
	returned = true
	return errors.Join(fnErr, h.Release(context.WithoutCancel(ctx)))
}
