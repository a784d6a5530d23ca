// Package lease is Leasehold's wire and storage layer on
// coordination.k8s.io/v1 Lease objects, shared by the election and lock
// packages and by tools that read Leases.
//
//   - Record is the spec of a Lease exactly as client-go's resourcelock writes
//     it, so Leasehold and client-go candidates can share a Lease.
//   - Snapshot is one observed version of a Lease: its Record, its
//     resourceVersion and the fencing token the holder recorded.
//   - Client reads, creates, updates (conditionally, on resourceVersion) and
//     watches one Lease and returns typed errors (ErrNotFound, ErrConflict,
//     ErrForbidden naming the missing verb, ErrUnavailable, ...).
//   - Token is the fencing token of a term (see Token for how it stays
//     monotonic across a delete and re-create of the Lease).
//
// The holding algorithm (watching, acquiring, renewing, the hard deadline)
// lives in the election and lock packages; this package makes no decisions
// about time.
//
// # Annotations
//
// Leasehold holders write annotations next to client-go's fields, which
// client-go keeps and ignores. Each is tied to the transition count it was
// written at, and the identity comes last because it may contain "/":
//
//   - TokenAnnotation, "<token>/<transitions>/<holder>": the current term's
//     fencing token. Believed only while the record shows that holder at
//     that transition count; a foreign edit of holderIdentity is reported
//     (Snapshot.ForeignEdit), never credited with the old holder's token.
//   - PreferredHolderAnnotation, "<transitions>/<identity>": a planned
//     handoff, for apiservers that drop spec.preferredHolder.
//
// # Non-guarantees
//
// Restoring etcd from a backup rewinds resourceVersions and therefore
// tokens; resources guarded by tokens must be reset along with it.
package lease
