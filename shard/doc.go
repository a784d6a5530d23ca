// Package shard spreads K shards over the live members of a group, each
// shard run by at most one member at a time, with a fencing token per shard
// that only grows.
//
//	g, err := shard.New(shard.Config{Leases: cs.CoordinationV1(), Namespace: "default", Name: "workers", Shards: 64})
//	err = g.Run(ctx, func(ctx context.Context, shard int, token lease.Token) error {
//		return work(ctx, shard, token) // return when ctx ends
//	})
//
// # How it works
//
// Every member holds one Lease of its own, "<group>-<identity>", labelled
// GroupLabel=<group>, written exactly as a client-go leader writes a Lease
// (holderIdentity, leaseDurationSeconds, renewTime, ...), plus an
// annotation (MemberAnnotation) that lists the shards it claims and the
// token of each claim. Every member watches the whole group with one
// label-selected watch of the namespace, which starts with the current
// objects (sendInitialEvents, so RBAC needs only get, watch, create and
// update on Leases, no list) and then delivers every write to the group in
// resourceVersion order.
//
// From that view each member computes the same assignment (Assign:
// rendezvous hashing with bounded loads, max−min ≤ 1, sticky to the current
// owners so that a join or a leave moves about K/N shards) over the live
// members: those whose record is held, trusted and not expired in its view.
// It claims the shards assigned to it, starts each once the earlier owner
// has provably stopped, stops the ones that moved away and gives up their
// claims once their work has returned.
//
// A member that leaves says so first (its record is marked leaving): the
// others assign its shards elsewhere at once and claim them, and each
// starts as soon as the leaver gives its claim up.
//
// A member whose record has not changed for RenewDeadline in another's
// view is quiet there: if it is down, its own hard deadline has passed, and
// its record expires within LeaseDuration − RenewDeadline. The others claim
// ahead, on their next renewal, the quiet member's shards that they would
// be assigned without it (counting its shards as owned by nobody, so that
// this assignment does not change as the claims made ahead arrive). Such a
// claim waits behind the quiet member's lower one like any other
// (invariant 3); if the quiet member renews after all, it is given up on a
// later renewal. So when a crashed member expires, one write stands between
// its expiry and its shards' start elsewhere: the takeover of its record,
// which one member sends at the expiry (beside the write of any claim it
// could not make ahead, not after it).
//
// Cost does not grow with K: in steady state each member writes its own
// Lease once per RetryPeriod (its claims ride on its renewal), nobody polls,
// and each member has one watch. A join or a leave costs one extra write per
// member involved (a claim, a give-up); a crash one write in all (the
// takeover) when the claims made ahead rode on renewals.
//
// # Invariants
//
// The holding rules of internal/holder apply to each membership Lease
// (expiry only from local observation, invariants 2 and 3; conditional
// writes, 4; the hard deadline from the send of the last successful write on
// its own timer, 6 and 7). On top of them, cited by number in the code
// (internal/holder's as "internal/holder invariant N"):
//
//  1. A member runs a shard only under a claim that a successful write of
//     its record carries, and only while its membership term is valid: the
//     shard's context is a child of the term's, which ends at the hard
//     deadline.
//  2. A member gives a claim up (writes a record without it) only after
//     the shard's work has returned. A shard claimed again gets a new
//     claim.
//  3. A claim's token is the resourceVersion of the write that first
//     carried it. A member starts a shard under a claim with token c only
//     when (a) its watch has delivered a version ≥ c, so it has seen every
//     write to the group before c, and (b) no other member's record that
//     still counts claims the shard with a token below c.
//  4. A record stops counting when it is released by a write (its owner
//     leaving, or another member taking over an expired record by a write
//     conditional on the version that expired), or, for a deleted Lease,
//     LeaseDuration after the deletion was seen. A record edited by hand
//     (its checksum does not match) counts with its last trusted claims,
//     or with every shard, until it is taken over like an expired one.
//
// # Why no shard runs twice
//
// Take two runs of shard s, by members A and B, with tokens a < b (tokens
// are distinct: each is a different write's resourceVersion). B started
// under invariant 3: its watch had delivered b, so it had seen A's claim a (written
// at a < b), and at B's start A's record no longer counted with a claim
// below b. Either
//
//   - A's record stopped claiming s: A wrote a version without a, which by
//     invariant 2 it did only after its run under a had returned; or
//   - A's record was released by a takeover write conditional on the
//     version V that expired in B's (or another member's) view: V was A's
//     last successful write, so A's hard deadline, RenewDeadline after it
//     *sent* V, came before LeaseDuration after the taker *saw* V, and by
//     invariant 1 A's run had its context ended by then; or
//   - A's Lease was deleted and LeaseDuration has passed since B saw the
//     deletion: A's writes after the deletion fail, so its deadline passed
//     too.
//
// A new claim by A after giving a up would have a token above b. So the run
// with the lower token ended (its context, at least) before the run with
// the higher token started, and tokens of successive runs of a shard only
// grow: a resource that remembers the highest token it has seen for a shard
// and rejects lower ones is safe even from a paused member.
//
// The assignment is not part of the argument, nor are claims made ahead of
// a quiet member's expiry: members with different views may both claim a
// shard, and the lower claim runs first while the higher waits (invariant
// 3); a claim made ahead is an ordinary claim, written before any run under
// it, and given up without a run. Views converge as the watch delivers, and the member whose
// view no longer assigns it the shard gives its claim up.
//
// # Clock assumptions
//
// As in internal/holder: RenewDeadline·(1+ρ) < LeaseDuration·(1−ρ) for
// clock rates within ±ρ (0.2 with the defaults). Offsets do not matter.
//
// # Non-guarantees
//
// Ending a context does not stop code that ignores it; only resources that
// check the token are safe then. A Lease deleted by hand is remembered by
// the members that saw the deletion; a member that starts within
// LeaseDuration after a deletion it never saw may start a shard the deleted
// member still runs until its deadline (at most RenewDeadline). Restoring
// etcd from a backup rewinds tokens. Members with different Shards in one
// group refuse to join (ErrShardCount) but cannot stop one that is already
// running.
package shard
