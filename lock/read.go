package lock

import (
	"context"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// QueueEntry is one waiter of a lock's queue, as ReadQueue shows it.
type QueueEntry struct {
	// Lease is the entry's Lease name (<lock>-q-<version><random>).
	Lease string
	// Identity is the waiter's identity.
	Identity string
	// Position orders the queue, Lease breaking ties: a version the waiter
	// read before it created the entry.
	Position uint64
	// RenewTime is when the waiter last renewed its entry, by its clock.
	RenewTime time.Time
}

// ReadQueue returns the waiters queued for the lock that permit, one of the
// lock's Leases, belongs to, in the order they will be served (entries
// already served are left out), for tools such as `leasehold describe`. It
// lists Leases by label, so it needs the list verb. A Lease that is not a
// lock's returns no entries.
func ReadQueue(ctx context.Context, leases coordinationv1client.LeasesGetter, permit *coordinationv1.Lease) ([]QueueEntry, error) {
	key := permit.Labels[queueLabel]
	if key == "" {
		return nil, nil
	}
	list, err := leases.Leases(permit.Namespace).List(ctx, metav1.ListOptions{LabelSelector: entryLabel + "=" + key})
	if err != nil {
		return nil, lease.Classify("list", permit.Namespace, "-l "+entryLabel+"="+key, err)
	}
	st := holder.State{Synced: true, Lease: lease.NewSnapshot(permit)}
	_, cursor := cursorOf(st)
	var out []QueueEntry
	for i := range list.Items {
		s := lease.NewSnapshot(&list.Items[i])
		if p := placeOf(s); p.cmp(cursor) > 0 && s.Record.Held() {
			out = append(out, QueueEntry{Lease: s.Name, Identity: s.Record.Holder, Position: p.at, RenewTime: s.Record.RenewTime})
		}
	}
	slices.SortFunc(out, func(a, b QueueEntry) int { return place{a.Position, a.Lease}.cmp(place{b.Position, b.Lease}) })
	return out, nil
}
