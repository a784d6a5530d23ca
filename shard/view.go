package shard

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// peer is one membership Lease as this process last saw it.
type peer struct {
	name string
	// snap is the latest version; nil once the Lease was deleted (a
	// tombstone that keeps the last valid state until it expires).
	snap *lease.Snapshot
	// st is the state decoded from snap; err says why it could not be
	// (an edit by hand), and then last is the last state that could.
	st   state
	err  error
	last *state
	// resolved are st's claims with their tokens, computed once per version
	// (the member's loop reads them on every change of the group).
	resolved map[int]lease.Token
	// observedAt is the local time the record was last seen to change
	// (invariant 2 of internal/holder): expiry is judged from it alone.
	observedAt time.Time
	// duration is how long after observedAt the record expires: its own
	// leaseDurationSeconds, or, for a record edited by hand or deleted, the
	// longest of that and this member's own LeaseDuration.
	duration time.Duration
}

// holderID is the identity the record names, "" when released or deleted.
func (p *peer) holderID() string {
	if p.snap == nil {
		return ""
	}
	return p.snap.Record.Holder
}

// expiresAt is when the peer's claims stop counting in this view.
func (p *peer) expiresAt() time.Time { return p.observedAt.Add(p.duration) }

// claims returns the shards the peer may be running, with their tokens
// (a pending claim's token is the version it was written in). A released
// valid record claims nothing. A record that cannot be trusted claims what
// its last trusted version did, or every shard when there is none. The map
// may be shared: callers only read it.
func (p *peer) claims(k int) map[int]lease.Token {
	switch {
	case p.snap == nil && p.last != nil, p.err != nil && p.last != nil:
		return p.last.claims
	case p.err != nil && p.snap != nil && p.snap.Record.Held(), p.snap == nil:
		all := make(map[int]lease.Token, k)
		for s := range k {
			all[s] = 1 // lower than any real token: blocks until it expires
		}
		return all
	case !p.snap.Record.Held() || p.err != nil:
		return nil
	}
	return p.resolved
}

// resolve returns st's claims with each pending token replaced by rv, the
// version that carries them.
func resolve(st state, rv string) map[int]lease.Token {
	tok, _ := lease.TokenOf(rv)
	out := make(map[int]lease.Token, len(st.claims))
	for s, t := range st.claims {
		if t == pending {
			t = tok
		}
		out[s] = t
	}
	return out
}

// view follows every membership Lease of one group through a single
// label-selected watch of the namespace. The watch starts with the current
// objects (sendInitialEvents) and then delivers changes in resourceVersion
// order, so once the view has seen an event at version v it has seen every
// write to the group at or below v: Watermark says how far that is.
//
// view is safe for concurrent use; run must be called once.
type view struct {
	leases    coordinationv1client.LeaseInterface
	namespace string
	selector  string
	clock     clock.Clock
	retry     time.Duration
	floor     time.Duration // minimum expiry wait for untrusted records

	changed holder.Signal

	mu        sync.Mutex
	peers     map[string]*peer
	synced    bool
	watermark uint64
	err       error
}

func newView(leases coordinationv1client.LeasesGetter, namespace, group string, clk clock.Clock, retry, floor time.Duration) *view {
	return &view{
		leases: leases.Leases(namespace), namespace: namespace,
		selector: labels.SelectorFromSet(labels.Set{GroupLabel: group}).String(),
		clock:    clk, retry: retry, floor: floor, peers: map[string]*peer{},
	}
}

// snapshot returns copies of the peers, whether the view is synced, its
// watermark and its last error, and the channel closed at the next change
// (taken before the read: invariant 1 of internal/holder).
func (v *view) snapshot() (map[string]peer, bool, uint64, error, <-chan struct{}) {
	ch := v.changed.C()
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]peer, len(v.peers))
	for n, p := range v.peers {
		out[n] = *p
	}
	return out, v.synced, v.watermark, v.err, ch
}

// offer records a version obtained by this process's own write, so the
// view never goes back behind it. It does not move the watermark: only the
// watch proves that every earlier write has been seen.
func (v *view) offer(s *lease.Snapshot) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.applyLocked(s)
	v.changed.Notify()
}

func (v *view) applyLocked(s *lease.Snapshot) {
	p := v.peers[s.Name]
	if p != nil && p.snap != nil && p.snap.UID == s.UID && !newer(s.ResourceVersion, p.snap.ResourceVersion) {
		return
	}
	now := v.clock.Now()
	if p == nil {
		p = &peer{name: s.Name}
		v.peers[s.Name] = p
	}
	if p.snap == nil || p.snap.UID != s.UID || !p.snap.Record.Equal(s.Record) ||
		p.snap.Object().Annotations[MemberAnnotation] != s.Object().Annotations[MemberAnnotation] {
		p.observedAt = now // invariants 2 and 3 of internal/holder
	}
	p.snap = s
	p.st, p.err = decode(s)
	p.resolved = nil
	p.duration = s.Record.LeaseDuration
	if p.err == nil {
		p.resolved = resolve(p.st, s.ResourceVersion)
		st := p.st
		p.last = &st
	} else {
		p.duration = max(p.duration, v.floor)
	}
}

func (v *view) deleteLocked(name string) {
	p := v.peers[name]
	if p == nil || p.snap == nil {
		return
	}
	if !p.snap.Record.Held() && p.err == nil {
		delete(v.peers, name) // a released member: nothing to remember
		return
	}
	p.snap, p.observedAt, p.duration = nil, v.clock.Now(), max(p.duration, v.floor)
}

func newer(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x > y
}

// run watches until ctx ends. A watch that fails is re-opened from the last
// version seen; one whose version is too old (410) starts over with the
// current objects. A permanent error (RBAC) ends run.
func (v *view) run(ctx context.Context) error {
	rv := ""
	for {
		next, err := v.watch(ctx, rv)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rv = next
		if errors.Is(err, lease.ErrGone) {
			rv = ""
			continue
		}
		if err != nil {
			v.setErr(err)
			if lease.Permanent(err) {
				return err
			}
			if _, werr := holder.Wait(ctx, v.clock, nil, v.retry); werr != nil {
				return werr
			}
		}
	}
}

func (v *view) setErr(err error) {
	v.mu.Lock()
	v.err = err
	v.mu.Unlock()
	v.changed.Notify()
}

// watch opens one watch, from rv or (rv "") with the current objects first,
// and follows it; it returns the version to continue from.
func (v *view) watch(ctx context.Context, rv string) (string, error) {
	opts := metav1.ListOptions{LabelSelector: v.selector, AllowWatchBookmarks: true, ResourceVersion: rv}
	initial := rv == ""
	if initial {
		yes := true
		opts.SendInitialEvents = &yes
		opts.ResourceVersionMatch = metav1.ResourceVersionMatchNotOlderThan
	}
	w, err := v.leases.Watch(ctx, opts)
	if err != nil {
		return rv, lease.Classify("watch", v.namespace, v.selector, err)
	}
	defer w.Stop()
	v.setErr(nil)
	var fresh map[string]*lease.Snapshot // the initial objects, applied at the bookmark
	if initial {
		fresh = map[string]*lease.Snapshot{}
	}
	for {
		select {
		case <-ctx.Done():
			return rv, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				if initial {
					return "", nil // the initial list never completed: start over
				}
				return rv, nil
			}
			next, done, err := v.event(ev, &fresh)
			if err != nil {
				return rv, err
			}
			if next != "" {
				rv = next
			}
			if done {
				initial = false
			}
		}
	}
}

// event applies one watch event. During the initial list (fresh != nil)
// objects are collected and applied together at the bookmark that ends it,
// so that the view jumps from one consistent state to the next.
func (v *view) event(ev watch.Event, fresh *map[string]*lease.Snapshot) (rv string, initialDone bool, err error) {
	switch ev.Type {
	case watch.Error:
		status, _ := ev.Object.(*metav1.Status)
		if status == nil {
			return "", false, errors.New("shard: watch ended with an error event")
		}
		return "", false, lease.Classify("watch", v.namespace, v.selector, lease.StatusError(status))
	case watch.Bookmark:
		m, err := meta.Accessor(ev.Object)
		if err != nil {
			return "", false, nil
		}
		rv = m.GetResourceVersion()
		if *fresh != nil && m.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
			v.replace(*fresh, rv)
			*fresh = nil
			return rv, true, nil
		}
		if *fresh == nil {
			v.advance(rv)
		}
		return rv, false, nil
	}
	l, ok := ev.Object.(*coordinationv1.Lease)
	if !ok {
		return "", false, nil
	}
	rv = l.ResourceVersion
	if *fresh != nil {
		if ev.Type != watch.Deleted {
			(*fresh)[l.Name] = lease.NewSnapshot(l)
		}
		return rv, false, nil
	}
	v.mu.Lock()
	if ev.Type == watch.Deleted {
		v.deleteLocked(l.Name)
	} else {
		v.applyLocked(lease.NewSnapshot(l))
	}
	v.watermark = max(v.watermark, parseRV(rv))
	v.mu.Unlock()
	v.changed.Notify()
	return rv, false, nil
}

// replace installs a complete list of the group at version rv: members
// missing from it were deleted while the watch was down.
func (v *view) replace(objs map[string]*lease.Snapshot, rv string) {
	v.mu.Lock()
	for name := range v.peers {
		if objs[name] == nil {
			v.deleteLocked(name)
		}
	}
	for _, s := range objs {
		v.applyLocked(s)
	}
	v.synced = true
	v.watermark = max(v.watermark, parseRV(rv))
	v.mu.Unlock()
	v.changed.Notify()
}

func (v *view) advance(rv string) {
	v.mu.Lock()
	v.watermark = max(v.watermark, parseRV(rv))
	v.mu.Unlock()
	v.changed.Notify()
}

// forget drops tombstones that have expired, so the map does not grow.
func (v *view) forget(now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for n, p := range v.peers {
		if p.snap == nil && !now.Before(p.expiresAt()) {
			delete(v.peers, n)
		}
	}
}

func parseRV(rv string) uint64 {
	n, _ := strconv.ParseUint(rv, 10, 64)
	return n
}
