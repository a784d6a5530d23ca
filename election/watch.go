package election

import (
	"context"
	"fmt"
	"time"

	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// LeaseState is what a Watcher knows of its Lease.
type LeaseState struct {
	// Synced is false until the Lease has been read once.
	Synced bool
	// Lease is the latest version, nil when the Lease does not exist.
	Lease *lease.Snapshot
	// ObservedAt is the local time at which the record was last seen to
	// change (or the Lease to appear or disappear). Expiry is judged from
	// it, never from timestamps written by other clocks.
	ObservedAt time.Time
	// Err is the last error of the watch, nil while it is healthy.
	Err error
}

// Exists reports whether the Lease exists.
func (s LeaseState) Exists() bool { return s.Lease != nil }

// Holder returns the current holder, "" when none.
func (s LeaseState) Holder() string {
	if s.Lease == nil {
		return ""
	}
	return s.Lease.Record.Holder
}

// ExpiresAt is when the lease expires in this watcher's view: ObservedAt
// plus the record's own duration. Zero when the lease is not held.
func (s LeaseState) ExpiresAt() time.Time {
	if s.Lease == nil || !s.Lease.Record.Held() {
		return time.Time{}
	}
	return s.ObservedAt.Add(s.Lease.Record.LeaseDuration)
}

// Watcher follows one Lease the way candidates do (a read, then a watch,
// re-established after errors), for tools that show leases without
// campaigning. It is safe for concurrent use.
type Watcher struct {
	obs *holder.Observer
}

// NewWatcher returns a Watcher of the Lease namespace/name. retry is the
// wait between attempts to re-establish a failed watch (default 1s).
func NewWatcher(leases coordinationv1client.LeasesGetter, namespace, name string, retry time.Duration) (*Watcher, error) {
	c, err := lease.NewClient(leases, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("election: watch: %w", err)
	}
	return &Watcher{obs: holder.NewObserver(c, nil, retry)}, nil
}

// Run watches until ctx ends (returning ctx.Err()) or a permanent error
// (forbidden, unauthorized) ends it. Call it once.
func (w *Watcher) Run(ctx context.Context) error { return w.obs.Run(ctx) }

// State returns the latest state and a channel closed when it next changes.
func (w *Watcher) State() (LeaseState, <-chan struct{}) {
	st, changed := w.obs.State()
	return LeaseState{Synced: st.Synced, Lease: st.Lease, ObservedAt: st.ObservedAt, Err: st.Err}, changed
}

// Offer records a version obtained outside the watch (the result of the
// caller's own write); older versions than known are ignored.
func (w *Watcher) Offer(s *lease.Snapshot) { w.obs.Offer(s) }
