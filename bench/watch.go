package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/lease"
)

// leaseWatch follows one Lease from the bench process and stamps each change
// of its record with candidate.Mono, the way a follower judges expiry: from
// the local time at which it last saw the record change. Safe for concurrent
// use; run must be called for it to make progress.
type leaseWatch struct {
	cs              kubernetes.Interface
	namespace, name string

	mu      sync.Mutex
	last    *lease.Record
	seen    map[string]int64 // holder -> Mono of the latest change showing it
	changed chan struct{}
}

func newLeaseWatch(cs kubernetes.Interface, namespace, name string) *leaseWatch {
	return &leaseWatch{cs: cs, namespace: namespace, name: name, seen: map[string]int64{}, changed: make(chan struct{})}
}

// run watches until ctx ends. A watch from resourceVersion "" starts with the
// current object; a closed watch resumes from the last version seen; after an
// error it starts over.
func (w *leaseWatch) run(ctx context.Context) {
	rv := ""
	for ctx.Err() == nil {
		wi, err := w.cs.CoordinationV1().Leases(w.namespace).Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", w.name).String(),
			ResourceVersion: rv,
		})
		if err != nil {
			rv = ""
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		rv = w.follow(ctx, wi, rv)
		wi.Stop()
	}
}

// follow records events until the watch ends and returns the version to
// resume from ("" after an error event).
func (w *leaseWatch) follow(ctx context.Context, wi watch.Interface, rv string) string {
	for {
		select {
		case <-ctx.Done():
			return rv
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return rv
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if l, ok := ev.Object.(*coordinationv1.Lease); ok {
					w.observe(candidate.Mono(), lease.FromSpec(l.Spec))
					rv = l.ResourceVersion
				}
			case watch.Error:
				return ""
			}
		}
	}
}

func (w *leaseWatch) observe(mono int64, rec lease.Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last != nil && sameRecord(*w.last, rec) {
		return
	}
	w.last = &rec
	w.seen[rec.Holder] = mono
	close(w.changed)
	w.changed = make(chan struct{})
}

// lastChange returns the Mono of the latest change of the record that showed
// holder.
func (w *leaseWatch) lastChange(holder string) (int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.seen[holder]
	return m, ok
}

// awaitHolder waits until the watch has seen holder hold the lease after
// mono.
func (w *leaseWatch) awaitHolder(ctx context.Context, holder string, after int64, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		w.mu.Lock()
		m, ok := w.seen[holder]
		ch := w.changed
		w.mu.Unlock()
		if ok && m > after {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("the bench's watch of lease %s/%s did not see %s take it within %v", w.namespace, w.name, holder, timeout)
		}
	}
}

// sameRecord reports whether a and b describe the same lease state: any
// change restarts a follower's expiry timer (in client-go too, which compares
// the whole record).
func sameRecord(a, b lease.Record) bool {
	return a.Holder == b.Holder && a.LeaseDuration == b.LeaseDuration &&
		a.AcquireTime.Equal(b.AcquireTime) && a.RenewTime.Equal(b.RenewTime) &&
		a.Transitions == b.Transitions && a.PreferredHolder == b.PreferredHolder && a.Strategy == b.Strategy
}
