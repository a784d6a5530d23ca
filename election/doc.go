// Package election is watch-driven leader election on a Kubernetes Lease,
// wire-compatible with client-go's leaderelection so both can share a Lease.
//
//	e, err := election.New(election.Config{
//		Leases: clientset.CoordinationV1(), Namespace: "default", Name: "my-app",
//	})
//	...
//	err = e.Run(ctx, func(ctx context.Context) error {
//		token, _ := election.TokenFrom(ctx) // pass it to what you write to
//		return work(ctx, token)            // return when ctx ends
//	})
//
// # How it differs from client-go
//
// Followers watch the Lease instead of polling: they take it the moment it is
// released, or the moment it expires in their own view (the local time they
// last saw it change plus its leaseDurationSeconds). In steady state a
// follower makes no requests beyond its open watch; the leader makes one
// update per RetryPeriod. Run calls the work function on the caller's
// goroutine, waits for it, releases, and campaigns again after a loss; it
// never exits the process. Each term has a fencing token (TokenFrom).
// Planned handoff names the preferred holder (Handoff, or `leasehold
// handoff`): in spec.preferredHolder, which the apiserver keeps only with the
// CoordinatedLeaderElection feature gate, and in the annotation
// leasehold.io/preferred-holder, which works on every cluster. On clusters
// with the gate, setting spec.preferredHolder with kubectl works too. The
// leader stops its work but keeps the lease, and offers it to the named
// candidate on its renewals (annotation leasehold.io/handoff-offer); the
// target takes it at once by a conditional write, while every other
// candidate keeps waiting. If the target does not take it within
// HandoffTimeout (a typo, a candidate that is not running), the leader
// resumes under a new term: a handoff never leaves the lease unheld.
//
// # Guarantees
//
//   - At most one candidate runs its work under a valid leadership context
//     at any time, among Leasehold and client-go candidates using the same
//     LeaseDuration, provided the fastest clock runs less than
//     LeaseDuration/RenewDeadline times as fast as the slowest (every clock
//     within ±20% of real time with the defaults 15s/10s; see lease/doc.go).
//     Clock offsets do not matter: no timestamp written by another process
//     is compared with the local clock.
//   - The leadership context ends at the hard deadline: RenewDeadline after
//     the last successful renewal was sent. A follower counts LeaseDuration
//     from when it saw that renewal, which is later, and RenewDeadline is
//     shorter than LeaseDuration, so the context ends strictly before anyone
//     else can acquire.
//   - The lease is released (or offered) only after the work function has
//     returned, also when it panics: Run settles the term before the panic
//     continues.
//   - Fencing tokens increase with every acquisition by any Leasehold
//     candidate, also across a delete and re-create of the Lease.
//
// # Non-guarantees
//
//   - A cancelled context does not stop work that ignores it, nor a process
//     paused (SIGSTOP, GC, VM migration) between checking its context and
//     acting. Guard external writes with the fencing token; resources that
//     reject older tokens are safe even then.
//   - Liveness needs the apiserver: without it nobody can acquire, and a
//     leader steps down at its deadline.
//   - Candidates with different LeaseDuration settings do not agree on
//     expiry when the holder is a client-go process, which reads its own
//     configured duration rather than the record's.
package election
