// Package holder is the algorithm that holds a Lease, shared by election and
// lock: an Observer follows one Lease through a watch, a Candidate acquires
// it when it is released or has expired in its own view, and a Term renews it
// and ends its context before anyone else may take it. Package lease is the
// wire format underneath; this package decides when to write.
//
// # Invariants
//
// Each is cited by number at the line that keeps it.
//
//  1. No lost wake-ups. A waiter takes a change channel and then reads the
//     state it acts on; every change after that read closes that channel or
//     a later one (Observer.State returns both under one lock;
//     Signal.Relay takes the next channel before it notifies).
//  2. Expiry is judged only from the local time at which this process last
//     saw the record change, plus the record's own leaseDurationSeconds.
//     Timestamps written by other clocks are never compared with ours.
//  3. Every change of any field of the record restarts the expiry wait, as
//     in client-go (which compares the whole record). A claim or a handoff
//     request therefore prolongs the wait too; see 9.
//  4. Every write is conditional on the resourceVersion last seen; a
//     conflict (HTTP 409) is never resolved by overwriting.
//  5. A candidate may retake at once only its own last write. A record
//     that names our identity at a version we did not write (an earlier
//     process with the same identity) is waited out like any other.
//  6. The hard deadline is RenewDeadline after the *send* of the last
//     successful renewal (or of the acquiring write). The term's context
//     ends there from its own goroutine and timer; no hook, logger, event
//     recorder or metric runs on that path, so nothing can delay it.
//  7. A renewal never waits for its answer past the hard deadline, and one
//     answered after the deadline does not extend a term whose context has
//     ended.
//  8. A term's fencing token is the resourceVersion its acquiring write
//     replaced: each version is replaced by exactly one successful write,
//     and etcd revisions only grow, so tokens are unique and increasing.
//  9. A claim (a lock waiter reserving the next turn) is written only right
//     after the holder's own write, so it prolongs a crashed holder's lease
//     by at most the latency of one request (lock package).
//  10. A term is settled on every exit path of the code run under it,
//     panics included: renewing stops, and the lease is released only
//     after that code has returned (Term.Settle in a defer).
//  11. Release writes only while the record still shows this term (holder
//     and transition count); a lost term writes nothing.
//  12. A planned handoff never leaves two holders acting and never leaves
//     the lease unheld: the holder stops its work, then offers the lease
//     (an annotation on its own renewal) while it keeps renewing; the
//     target takes it by a conditional write on an offering version; the
//     holder resumes only after a conditional write of its own replaces
//     that version (a new acquisition, which ends the offer).
//  13. A term begins with a conditional write of its own (an acquisition,
//     or the adoption of a lease granted to it by the previous holder's
//     hand-over: Candidate.Adopt), its hard deadline counted from that
//     write's send; or on a grant that names a version of a record this
//     process wrote (a lock waiter's queue entry) which the granter read
//     before it wrote the grant: Candidate.AdoptFrom. The grant was then
//     written after that version, which was sent at a known time s; every
//     other process sees the grant later and waits a LeaseDuration from
//     then, so a deadline of s + RenewDeadline ends first (the argument of
//     6 with s for the renewal's send). The adopting write is the term's
//     first renewal. Never from the grant's own timestamps: they are
//     another clock's. Between the grant and the start of the term nobody
//     acts under the lease: the previous holder stopped before it granted.
//     A grant that is never adopted expires like any unrenewed record
//     (invariant 2).
//  14. A lease is taken before it expires only on positive evidence that
//     the exact container instance that took the term (published with the
//     acquiring write, tied to its transition count and credited only
//     while the token annotation names the record's holder) has stopped:
//     the kubelet reported that container ID terminated. Silence (a node
//     or kubelet gone quiet, a partition, a force-deleted Pod) is never
//     evidence; the lease duration applies then.
//
// # Clock assumptions
//
// A holder counts RenewDeadline (RD) from the moment its last successful
// renewal was sent; an observer counts LeaseDuration (LD) from the moment it
// saw that renewal, which is later. The holder's context therefore ends
// before any observer can take over as long as
//
//	RD·(1+ρ) < LD·(1−ρ),   i.e.   ρ < (LD−RD)/(LD+RD)
//
// where every clock runs within ±ρ of real time (0.2 for the defaults
// 15s/10s): the fastest clock must run less than LD/RD times as fast as the
// slowest. Clock offsets do not matter (invariant 2).
//
// Mixed fleets: client-go decides whether the record changed by comparing
// its JSON, in which acquire and renew times have whole seconds. With a
// RetryPeriod under a second, its followers may date the last change up to a
// second early; keep LD−RD at least a second above the clock-rate margin, or
// renew at most once a second.
//
// # Non-guarantees
//
// Ending a context does not stop code that ignores it, and a process paused
// (GC, SIGSTOP, VM migration) after checking its context can still act after
// its term ended. Only resources that check the fencing token are safe then.
package holder
