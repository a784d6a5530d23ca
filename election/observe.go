package election

import (
	"fmt"
	"net/http"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// Leader is a view of who leads, as seen by this candidate.
type Leader struct {
	// Holder is the identity in the lease, "" when released or absent.
	Holder string
	// Token is the holder's fencing token when the holder is a Leasehold
	// process (zero otherwise); for this process, the token of its term.
	Token lease.Token
	// Transitions is the lease's transition count.
	Transitions int32
	// AcquiredAt is the acquire time written by the holder (its clock).
	AcquiredAt time.Time
	// ObservedAt is the local time at which the record last changed.
	ObservedAt time.Time
	// ExpiresAt is when the lease expires in this process's view if not
	// renewed.
	ExpiresAt time.Time
	// IsMe is true while this process leads: its work function runs under a
	// valid term.
	IsMe bool
	// Synced is false until the lease has been read.
	Synced bool
	// Err is the last error reading or watching the lease (the apiserver
	// unreachable, for example), nil while the watch is healthy. It is
	// cleared when a read or watch succeeds again.
	Err error
}

// Observe returns the latest view of the leader and a channel closed at the
// next change. It never blocks, and any number of goroutines may wait on the
// channel. The view follows the watch only while Run is active.
func (e *Elector) Observe() (Leader, <-chan struct{}) {
	changed := e.changed.C() // invariant 1: the channel before the state
	st, _ := e.obs.State()
	l := Leader{Synced: st.Synced, ObservedAt: st.ObservedAt, ExpiresAt: st.ExpiresAt(), Err: st.Err}
	if st.Lease != nil {
		r := st.Lease.Record
		l.Holder, l.Token, l.Transitions, l.AcquiredAt = r.Holder, st.Lease.Token, r.Transitions, r.AcquireTime
	}
	e.mu.Lock()
	term := e.term
	e.mu.Unlock()
	if term != nil && term.Err() == nil {
		l.IsMe = true
		l.Token = term.Token()
	}
	return l, changed
}

// IsLeader reports whether this process leads now.
func (e *Elector) IsLeader() bool {
	l, _ := e.Observe()
	return l.IsMe
}

// Name is the health check's name, for k8s.io/apiserver's healthz and
// controller-runtime's healthz.Checker conventions.
func (e *Elector) Name() string { return "leader-election" }

// Check fails when this process believes it leads (its work function is still
// running) but the renew deadline of its term has passed: the work has not
// stopped when it should have. It passes for followers.
func (e *Elector) Check(_ *http.Request) error {
	e.mu.Lock()
	term := e.term
	e.mu.Unlock()
	if term == nil {
		return nil
	}
	if late := e.core.Clock.Since(term.Deadline()); late > 0 {
		return fmt.Errorf("election: still leading lease %s/%s %v after the renew deadline (last renewal sent at %s)",
			e.core.Namespace, e.core.Name, late, term.LastRenew().Format(time.RFC3339Nano))
	}
	return nil
}
