// Package lock provides distributed locks on Kubernetes Leases: Mutex (one
// holder) and Semaphore (N holders), with fencing tokens, serving waiters in
// the order they queued.
//
//	m, _ := lock.NewMutex(lock.Config{Leases: cs.CoordinationV1(), Namespace: "db", Name: "migrate"})
//	held, err := m.Lock(ctx)          // a timeout is a context deadline
//	if err != nil { ... }
//	defer held.Release(context.Background())
//	migrate(held.Context(), held.Token())
//
// # The queue
//
// The lock itself is the Lease Name (a Semaphore: Name-0 … Name-(N−1), one
// per permit), written in client-go's format: the holder in holderIdentity,
// so a client-go elector or kubectl never sees it free while it is held.
// A waiter queues by creating a Lease of its own, labelled
// leasehold.io/queue-entry=<key>, that names it in holderIdentity and is
// renewed every LeaseDuration/2 while it waits. Its name is its place:
// Name-q-<version><random>, the version (16 hex digits) read by the one
// list of the lock's permits that begins its call. That version is later
// than the creation of every entry that existed when the call began, so
// the entry is placed after them; calls that begin together are ordered by
// the apiserver's versions and then by name. Since the apiserver lists in
// name order, a list of the first entries is the head of the queue.
//
// Wake-ups and reads are O(1) per waiter and per hand-over. Every grant
// and release names the last two entries its writer knew of
// (leasehold.io/queue-tail); a waiter that joins reads them with the
// permits (the list above) and follows them, each with a watch by name:
// it reads nothing of the queue. While P+1 or more live entries are ahead
// of it (P the number of permits, 1 for a Mutex) it is far, and nothing
// written to the lock's Leases reaches it, nor any entry's but those it
// follows. When one of them goes, it lists the head of the queue: one
// page of 4P+12 entries, and further pages of the same snapshot only as
// far as its own place (when it followed entries farther ahead than its
// nearest, as a waiter that joined while others' entries were being
// created may). The list places it exactly: with at most P+1 live entries
// ahead it is near, else it follows the nearest. Near the head it follows
// the lock's Leases with ONE
// label-selected watch (leasehold.io/queue=<key>), whatever the number of
// permits, and the queue's entries with another, continuing from the list;
// it keeps both when it becomes a holder, so a holder knows the next
// waiter without reading anything at release: the list held every entry
// up to the last it returned, and the watch shows every entry created or
// renewed since. A holder whose first live waiter lies beyond what the
// list held reads the queue whole before it grants (an entry placed before
// that waiter may have been quiet since). A waiter that takes or adopts a
// permit deletes its entry at once (the permit's cursor records its
// place), which is what tells the waiters behind it that they are near.
// With Hooks.Queued set, a waiter reads the queue whole when it joins, to
// report its place; a Mutex that locks again within LeaseDuration/2
// replays only the changes since the queue its previous call kept, when
// that call held it whole.
//
// Release is a hand-over: the holder writes the lock Lease, in ONE
// conditional write, to the first live waiter of its view: holderIdentity
// that waiter, a fresh acquire and renew time, leaseTransitions + 1 and the
// token of the new term (the resourceVersion this write replaces), plus the
// annotations leasehold.io/queue-entry=granted/<version>/<entry> and
// leasehold.io/granted-on=<the entry's version it read>. The waiter learns
// it from its watch and its term starts at once: the grant was written
// after that entry version, whose send time the waiter knows, so its hard
// deadline counts RenewDeadline from that send (holder invariant 13). Its
// first renewal is the adoption (…=held/<version>/<entry>), due a
// RetryPeriod after that send but no sooner than half the time left to
// the deadline, at most a RetryPeriod, after the grant; a holder that
// releases before then never writes the lock at all. A hand-over therefore
// costs one write of the lock Lease (the grant), two when the grantee keeps
// the lock past its adoption, and no conflict; the waiter's entry costs one
// create, its renewals and one delete. With nobody waiting, Release writes
// the usual release (holder ""). A grant whose entry version the waiter
// does not know, or that leaves less than a RetryPeriod before that
// deadline, is adopted first, the term starting with the adopting write.
//
// A waiter is live while its entry is renewed within the entry's duration in
// the releasing holder's view (the local time it saw the entry change, never
// a remote timestamp). A crashed waiter is therefore skipped once its own
// entry expires, not the whole queue; its expired entry is deleted by the
// holder that skipped it. A waiter that gives up (ctx, timeout) marks its
// entry as left (holder emptied) and passes on a grant it finds; a grant
// that reaches it after it left names an entry marked left, and the next
// waiter takes the lock at once. The next hand-over deletes the entry. A
// grant naming an entry that no longer exists is different: its waiter may
// already work under it (its term started on the grant, and it deleted its
// entry at once), so it is free only once it expires. A waiter whose entry
// was deleted or edited by another client (kubectl
// delete, for example) is told through Hooks.Requeued (ErrQueueEntryLost) and
// queues again at the back.
//
// # Safety
//
// At most one term per permit, and tokens that only grow, rest on the holder
// package's invariants and on conditional writes alone; the queue decides
// only who writes next, never whether a write may succeed:
//
//  1. Every write of a permit Lease (take, grant, adopt, renew, release) is
//     conditional on the resourceVersion last seen (holder invariant 4), so
//     of two writers on one version exactly one succeeds.
//  2. A holder grants only after its term has ended (Release stops renewing
//     and cancels the term's context first, holder invariant 10/11), and
//     only while the Lease still shows its term.
//  3. A grantee's hard deadline is RenewDeadline after the send of a write
//     that certainly came before the grant: the entry version the grant
//     names (leasehold.io/granted-on), which the holder read before it
//     wrote, or else its own adopting write on the grant's version (holder
//     invariant 13). Every other process saw the grant after it was written
//     and waits a leaseDuration from then. A grant never adopted expires in
//     every observer's view like a crashed holder's record, after the
//     grantee's deadline.
//  4. A waiter takes a permit without a grant only when it is free in its
//     own view: released, expired (holder invariant 2), or granted to an
//     entry marked left, a grant it first reads back from the apiserver (the
//     permits' watch may lag). Only a waiter that gave up marks its entry
//     left, and it never uses a grant afterwards (it decides to leave, or
//     to start the term, never both); a left entry is deleted only by a
//     holder's clean-up, never while a permit names it. A grant to an entry
//     that no longer exists is not free before it expires: the entry's
//     waiter deletes it as soon as its term starts, and anyone may delete
//     it by hand. Marking an entry left by hand, like releasing the lock
//     by hand, is outside these guarantees.
//  5. The token of every term is the version its first write replaced
//     (holder invariant 8), whether that write was a take or a grant.
//
// # Order and liveness
//
// Waiters are served in queue order: a holder grants to the first live entry
// placed after the queue's cursor (the place it records in
// leasehold.io/queue-entry), so an entry at or before the cursor was served
// or skipped and is never granted again. An entry's version is earlier
// than its creation, and a watch delivers entries in the order they were
// created, so a holder that sees an entry has seen every entry whose
// creation had completed before that entry's call began: a waiter is never
// served before one that was queued when its call began. Calls that begin
// while the other's entry is being created are ordered by version, and an
// entry whose creation was still in flight when the lock was handed past
// its place queues again (quietly: nothing was lost). Overtaking happens
// only when a holder's view shows a live waiter's entry as expired (its
// renewals did not reach the holder for a LeaseDuration): that waiter is
// passed over, sees the cursor beyond its place, and queues again
// (Hooks.Requeued). A free permit (released by a client-go holder, or by a
// Leasehold holder that saw nobody waiting) is taken by the head of the
// queue; if the head does not take it within a LeaseDuration, any waiter
// may. A Lock whose first list shows a permit released (or not yet
// created) lists the head of the queue, one entry, before it queues: with
// no entry there, nobody was queued when the call began, and it takes the
// permit as TryLock does, with no entry to create or delete: at once, on
// the version that first list read (a conditional write like any other).
// Lockers of a
// free lock race on one conditional write; the losers queue near the head
// (they follow the permits and the whole queue already, as TryLock does).
//
// # Guarantees and clock assumptions
//
// Those of package lease: Held's Context ends strictly before another
// process can see the lease expire, provided clock rates differ by less than
// (LeaseDuration−RenewDeadline)/(LeaseDuration+RenewDeadline); work that
// ignores its context or a paused process is only stopped by resources that
// check the fencing token.
//
// # Costs and non-guarantees
//
// A Lock of a free lock with nobody queued: two lists (the permits, the
// head of the queue), the permits' and the queue's watches, and the take;
// Release writes once (the release). Per hand-over: one write of the lock Lease (the grant), two when the
// grantee holds the lock past its adoption, no conflict; the served
// waiter's entry delete; one list of the head of the queue (4P+12
// entries) and two watches opened by the waiter that moves near; and, for
// a waiter that queues again, one list of the permits, one create and P+1
// watches of the entries it follows. None of it grows with the queue.
// Wake-ups per hand-over are a fixed number too (the holder and the near
// waiters see the grant, the adoption and the served entry's deletion; the
// waiters that follow that entry see its deletion). A waiter that joins
// where no tail is named (a lock whose holder has not released since the
// queue formed) lists the queue as far as its place: for the last in line,
// all of it, in a few requests. A waiter reads the whole queue (one
// request, one event per entry) only when it joins with Hooks.Queued set,
// when lists are denied, when its entry is missing from a list that
// reached its place, and when, as a holder, its next waiter lies beyond
// what its list held. Entries that leave, expire or get passed cost a list
// more for the waiters that followed them.
// In the background every waiter renews its entry every LeaseDuration/2
// (at 500 waiters and LeaseDuration 15s, 67 writes a second, whatever the
// hand-over rate), and once more when it moves near if its last write is
// older than RenewDeadline − 2·RetryPeriod (6s by default), so that its
// grant leaves time for the adoption; each renewal wakes the P+1 far waiters behind it, the
// near waiters and the holders (their queue watches). A far waiter holds
// P+1 watches open; a near one two.
// RBAC needs get, list, watch, create, update and delete on Leases (delete:
// the entries; without list, a waiter reads the whole queue where it would
// list its head). Anyone who may update Leases can reorder or empty the queue by
// hand; the lock stays safe (conditional writes), the order does not.
// Mixed fleets: a client-go elector on a lock's Lease does not queue; it
// takes the lock only when it is released with nobody waiting or expires.
//
// A Lease records the kind of lock it serves (annotation leasehold.io/lock:
// "mutex", or "semaphore/N" on each permit's Lease). A Mutex and a
// Semaphore of one name, or Semaphores with different permit counts, would
// not exclude each other; the second is refused with ErrKindMismatch.
//
// Do runs a function under the lock and releases it when the function
// returns or panics.
package lock
