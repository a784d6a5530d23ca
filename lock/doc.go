// Package lock provides distributed locks on Kubernetes Leases: Mutex (one
// holder) and Semaphore (N holders), with fencing tokens.
//
//	m, _ := lock.NewMutex(lock.Config{Leases: cs.CoordinationV1(), Namespace: "db", Name: "migrate"})
//	held, err := m.Lock(ctx)          // a timeout is a context deadline
//	if err != nil { ... }
//	defer held.Release(context.Background())
//	migrate(held.Context(), held.Token())
//
// Waiters watch the Lease and try one conditional update when it is released
// or expires in their own view; when several race for a release, exactly one
// write wins (HTTP 409 for the others, which go back to watching). A waiter
// that has waited longer than ClaimAfter reserves the next turn through
// spec.preferredHolder, so no waiter starves under steady contention. The
// claim is written right after a write of the holder, so it prolongs a
// crashed holder's lease by no more than the latency of one request.
//
// The guarantees and clock assumptions are those of package lease: Held's
// Context ends strictly before another process can see the lease expire,
// provided clock rates differ by less than
// (LeaseDuration−RenewDeadline)/(LeaseDuration+RenewDeadline); work that
// ignores its context or a paused process is only stopped by resources that
// check the fencing token. A lock holder is never preempted by a
// preferredHolder; the reservation takes effect at its release, and lasts two
// retry periods: a waiter that claimed the turn and then vanished holds the
// others back no longer than that.
//
// A Lease records the kind of lock it serves (annotation leasehold.io/lock:
// "mutex", or "semaphore/N" on each permit's Lease). A Mutex and a
// Semaphore of one name, or Semaphores with different permit counts, would
// not exclude each other; the second is refused with ErrKindMismatch.
//
// Do runs a function under the lock and releases it when the function
// returns or panics.
package lock
