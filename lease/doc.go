// Package lease is Leasehold's storage layer and holding machinery on
// coordination.k8s.io/v1 Lease objects, shared by the election and lock
// packages.
//
//   - Record is the spec of a Lease exactly as client-go's resourcelock writes
//     it, so Leasehold and client-go candidates can share a Lease.
//   - Client reads, creates, updates (conditionally, on resourceVersion) and
//     watches one Lease and returns typed errors (ErrNotFound, ErrConflict,
//     ErrForbidden naming the missing verb, ErrUnavailable, ...).
//   - Token is the fencing token of a term (see Token for how it stays
//     monotonic across a delete and re-create of the Lease).
//   - Observer follows one Lease through a watch: latest value plus a change
//     signal, never a blocking send.
//   - Candidate acquires a Lease when it is released or has expired in its own
//     view; Term renews it and ends its context before anyone else may take it.
//
// # Guarantees
//
// Expiry is judged only from the local time at which this process last saw
// the record change, plus the record's leaseDurationSeconds; timestamps
// written by other clocks are never compared with the local one, so clock
// offset between machines does not matter. Clock *rate* does: a holder counts
// its RenewDeadline (RD) from the moment its last successful renewal was
// sent, and an observer counts LeaseDuration (LD) from the moment it saw that
// renewal, which is later. The holder's context therefore ends before any
// observer can take over as long as
//
//	RD·(1+ρ) < LD·(1−ρ),   i.e.   ρ < (LD−RD)/(LD+RD)
//
// where every process's clock runs within ±ρ of real time (0.2, i.e. 20%,
// for the defaults 15s/10s). What matters is the ratio: the fastest clock
// must run less than LD/RD times as fast as the slowest (1.5 for the
// defaults); internal/chaos tests both sides of that bound. Changes of the
// lease are resolved only by resourceVersion (HTTP 409 on conflict).
//
// Mixed fleets: client-go decides whether the record changed by comparing
// its JSON, in which acquire and renew times have whole seconds. With a
// RetryPeriod under a second, its followers may therefore date the last
// change up to a second early and take over up to a second sooner than the
// formula above assumes; keep LeaseDuration−RenewDeadline at least a second
// above the clock-rate margin, or renew at most once a second.
//
// # Non-guarantees
//
// Ending a context does not stop code that ignores it, and a process paused
// (GC, SIGSTOP, VM migration) after checking its context can still act after
// its term ended. Pass the Token to the resources you guard and have them
// reject older tokens; that is the only protection against a paused holder.
// Restoring etcd from a backup rewinds resourceVersions and therefore tokens.
package lease
