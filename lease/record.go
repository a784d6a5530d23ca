package lease

import (
	"math"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Record is the leader-election state held in a Lease's spec, in the exact shape
// client-go's resourcelock writes it. The zero Record is a lease nobody holds.
//
// Times travel as metav1.MicroTime, so they keep microsecond precision on the
// wire; FromSpec returns them in UTC truncated to the microsecond.
type Record struct {
	// Holder is spec.holderIdentity; "" means released or never held.
	Holder string
	// LeaseDuration is spec.leaseDurationSeconds: how long others wait, from
	// the moment they observe a change, before treating the lease as expired.
	// Whole seconds on the wire; ToSpec truncates, and saturates at the
	// largest int32 rather than wrapping to a negative duration.
	LeaseDuration time.Duration
	// AcquireTime is spec.acquireTime: when the current holder acquired it.
	AcquireTime time.Time
	// RenewTime is spec.renewTime: the holder's clock at its last renewal.
	// Informational only: expiry is never judged by comparing it with a
	// local clock.
	RenewTime time.Time
	// Transitions is spec.leaseTransitions: the number of times the lease has
	// changed hands.
	Transitions int32
	// PreferredHolder is spec.preferredHolder: an identity the current holder
	// should hand over to (planned handoff, KEP-4355).
	PreferredHolder string
	// Strategy is spec.strategy, kept so that writes do not drop it.
	Strategy coordinationv1.CoordinatedLeaseStrategy
}

// Held reports whether the record names a holder.
func (r Record) Held() bool { return r.Holder != "" }

// Released returns the record written when a holder gives the lease up, by the
// same convention as client-go: no holder, a one-second duration, the
// transition count kept, both times set to now. PreferredHolder is kept so
// that a planned handoff reaches its target.
func (r Record) Released(now time.Time) Record {
	return Record{
		LeaseDuration:   time.Second,
		AcquireTime:     now,
		RenewTime:       now,
		Transitions:     r.Transitions,
		PreferredHolder: r.PreferredHolder,
		Strategy:        r.Strategy,
	}
}

// FromSpec reads a Record from a Lease spec. Absent fields read as zero values.
func FromSpec(spec coordinationv1.LeaseSpec) Record {
	var r Record
	if spec.HolderIdentity != nil {
		r.Holder = *spec.HolderIdentity
	}
	if spec.LeaseDurationSeconds != nil {
		r.LeaseDuration = time.Duration(*spec.LeaseDurationSeconds) * time.Second
	}
	if spec.AcquireTime != nil && !spec.AcquireTime.IsZero() {
		r.AcquireTime = spec.AcquireTime.UTC().Truncate(time.Microsecond)
	}
	if spec.RenewTime != nil && !spec.RenewTime.IsZero() {
		r.RenewTime = spec.RenewTime.UTC().Truncate(time.Microsecond)
	}
	if spec.LeaseTransitions != nil {
		r.Transitions = *spec.LeaseTransitions
	}
	if spec.PreferredHolder != nil {
		r.PreferredHolder = *spec.PreferredHolder
	}
	if spec.Strategy != nil {
		r.Strategy = *spec.Strategy
	}
	return r
}

// ToSpec writes the Record as client-go does: holderIdentity,
// leaseDurationSeconds, acquireTime, renewTime and leaseTransitions are always
// set (holderIdentity "" when released); preferredHolder and strategy only
// when non-empty.
func (r Record) ToSpec() coordinationv1.LeaseSpec {
	holder := r.Holder
	seconds := int32(min(r.LeaseDuration/time.Second, math.MaxInt32)) // saturate, never wrap negative
	transitions := r.Transitions
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       &holder,
		LeaseDurationSeconds: &seconds,
		AcquireTime:          &metav1.MicroTime{Time: r.AcquireTime},
		RenewTime:            &metav1.MicroTime{Time: r.RenewTime},
		LeaseTransitions:     &transitions,
	}
	if r.PreferredHolder != "" {
		preferred := r.PreferredHolder
		spec.PreferredHolder = &preferred
	}
	if r.Strategy != "" {
		strategy := r.Strategy
		spec.Strategy = &strategy
	}
	return spec
}

// Equal reports whether two records describe the same lease state. Holders
// judge expiry by it: a change in any field restarts an observer's wait, as
// it does in client-go (which compares the whole serialized record).
func (a Record) Equal(b Record) bool {
	return a.Holder == b.Holder &&
		a.LeaseDuration == b.LeaseDuration &&
		a.AcquireTime.Equal(b.AcquireTime) &&
		a.RenewTime.Equal(b.RenewTime) &&
		a.Transitions == b.Transitions &&
		a.PreferredHolder == b.PreferredHolder &&
		a.Strategy == b.Strategy
}
