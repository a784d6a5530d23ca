package lock

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/leasehold/leasehold/internal/holder"
	"github.com/leasehold/leasehold/lease"
)

// The queue's names on the wire.
const (
	// queueLabel is set, to the lock's queue key, on the lock's Leases (the
	// permits), so that one label-selected watch follows them all.
	queueLabel = "leasehold.io/queue"
	// entryLabel is set, to the lock's queue key, on every queue entry: the
	// holder follows them with one label-selected watch, waiters only
	// while a permit lies free (they need not see each other's renewals).
	entryLabel = "leasehold.io/queue-entry"
	// entryAnnotation, on a permit Lease, is the queue's cursor and the
	// entry the permit was handed to: "granted/<position>/<entry>" by the
	// releasing holder's write, "held/<position>/<entry>" once the waiter
	// adopted it (or took the free permit) with a write of its own, and
	// "free/<position>/" after a release with nobody waiting. Waiters are
	// served in position order, so every entry at or below the cursor has
	// been served or skipped.
	entryAnnotation = "leasehold.io/queue-entry"
	// queuedAtAnnotation, on an entry, is its place in the queue: the
	// resourceVersion that created it (written at its first renewal; until
	// then the entry's own resourceVersion is that version).
	queuedAtAnnotation = "leasehold.io/queued-at"
	// grantedOnAnnotation, on a permit Lease granted to a waiter, is the
	// version of the waiter's entry that the granting holder read: the grant
	// was written after it, so the waiter may start its term at once,
	// counting its deadline from when it sent that version (invariant 13).
	// Empty on every other write.
	grantedOnAnnotation = "leasehold.io/granted-on"
	// tailAnnotation, on a permit Lease, names the last two entries of the
	// queue that the writer knew of ("<entry> <entry>", the last one
	// last), written with every grant and release: a waiter that joins
	// reads it with its version (lookTail) and follows them, so that it
	// need not read the queue.
	tailAnnotation = "leasehold.io/queue-tail"
	// entrySuffixLen is the length of "-q-", the entry's estimate (16 hex
	// digits) and 8 random hex digits.
	entrySuffixLen = 3 + estDigits + 8
	estDigits      = 16
)

// ErrQueueEntryLost is matched (errors.Is) by what Hooks.Requeued receives
// when this waiter's queue entry was deleted or edited by someone else, or
// skipped as expired: the waiter queues again, at the back.
var ErrQueueEntryLost = errors.New("lock: queue entry lost")

// queueKey is the label value that groups a lock's Leases: for a Mutex its
// name, for a Semaphore of N permits "s<N>.<name>", when that fits a label
// value (63 characters), else a digest of it. Locks of different kinds on
// one name therefore never share a queue (and refuse each other: kind).
func queueKey(kind, name string) string {
	k := name
	if n, ok := strings.CutPrefix(kind, "semaphore/"); ok {
		k = "s" + n + "." + name
	}
	if len(k) <= 63 {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "h." + hex.EncodeToString(sum[:20])
}

// QueueSelector returns the label selector of the entries of a lock's
// queue, for tools that show the queue. permits is 1 for a Mutex.
func QueueSelector(name string, permits int) string {
	return entryLabel + "=" + queueKey(kindOf(permits), name)
}

func kindOf(permits int) string {
	if permits == 1 {
		return "mutex"
	}
	return fmt.Sprintf("semaphore/%d", permits)
}

// entryName names a new entry <lock>-q-<est><random>: est, a version the
// waiter saw before it created the entry, is a lower bound of the entry's
// place, written as 16 hex digits so that names sort as their estimates
// do. The apiserver lists in name order, so a list of the first entries
// by name holds every entry placed before the last one's estimate
// (readHead).
func entryName(lock string, est uint64) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s-q-%0*x%s", lock, estDigits, est, hex.EncodeToString(b[:])), nil
}

// estOf returns the estimate in an entry's name; ok is false for a name
// without one (an entry of an earlier version of this package).
func estOf(name string) (est uint64, ok bool) {
	if len(name) < entrySuffixLen || name[len(name)-entrySuffixLen:len(name)-entrySuffixLen+3] != "-q-" {
		return 0, false
	}
	suffix := name[len(name)-entrySuffixLen+3:]
	if strings.IndexFunc(suffix, func(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') }) >= 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(suffix[:estDigits], 16, 64)
	return n, err == nil
}

// place is an entry's place in the queue: a version, then the entry's name
// to order entries of one version. For an entry named with an estimate
// (entryName) the version is that estimate, so places sort as names do
// and a list of the first entries by name is the head of the queue; for
// one of an earlier version of this package (no estimate in its name), the
// version that created it.
type place struct {
	at   uint64
	name string
}

func (p place) cmp(q place) int {
	return cmp.Or(cmp.Compare(p.at, q.at), strings.Compare(p.name, q.name))
}

// placeNamed is the place of the entry named name, if its name holds an
// estimate.
func placeNamed(name string) (place, bool) {
	est, ok := estOf(name)
	return place{est, name}, ok
}

// placeOf is an entry's place in the queue.
func placeOf(s *lease.Snapshot) place {
	if p, ok := placeNamed(s.Name); ok {
		return p
	}
	if v := s.Annotation(queuedAtAnnotation); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			return place{n, s.Name}
		}
	}
	n, _ := strconv.ParseUint(s.ResourceVersion, 10, 64)
	return place{n, s.Name}
}

// cursorOf reads a permit's entryAnnotation: the state ("granted",
// "held", "free") and the place served last, whose name is the entry named
// (for "free", the one served last, or "").
func cursorOf(st holder.State) (state string, p place) {
	if st.Lease == nil {
		return "", place{}
	}
	parts := strings.SplitN(st.Lease.Annotation(entryAnnotation), "/", 3)
	if len(parts) != 3 {
		return "", place{}
	}
	n, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return "", place{}
	}
	return parts[0], place{n, parts[2]}
}

// cursorValue is an entryAnnotation value.
func cursorValue(state string, p place) string {
	return state + "/" + strconv.FormatUint(p.at, 10) + "/" + p.name
}

// namedBy returns the entry a permit Lease was handed to and whether the
// waiter has yet to adopt it; "" when the record names none (a foreign
// holder, or a plain release).
func namedBy(st holder.State) (name string, granted bool) {
	if st.Lease == nil || !st.Lease.Record.Held() {
		return "", false
	}
	state, p := cursorOf(st)
	switch state {
	case "granted":
		return p.name, true
	case "held":
		return p.name, false
	}
	return "", false
}

// served is the queue's cursor: the latest place any permit records.
func served(permits []holder.State) place {
	var c place
	for _, st := range permits {
		if _, p := cursorOf(st); p.cmp(c) > 0 {
			c = p
		}
	}
	return c
}

// queued is an entry waiting its turn.
type queued struct {
	name string
	entry
}

// queueOf is the queue in one view: live waiters in order, the dead ones
// (expired in this view, to be skipped), and the permits that may be taken
// now by the head of the queue.
type queueOf struct {
	// dead also holds expired entries at or below the cursor.
	live, dead []queued
	free       []int
}

// order computes the queue from the permits' states and the entries at now.
// An entry named by a permit whose record still names its waiter is a
// holder (or a grantee), not a waiter. A permit is free when the candidate
// may take it (released, expired: cand.Free) or when it was granted to an
// entry its waiter has marked as left (holder emptied): that waiter gave
// up and will never use the grant. A grant to an entry that no longer
// exists is NOT free before it expires: the entry may have been deleted by
// another client while its waiter already works under the grant
// (invariant 13 lets a grantee start before its adopting write).
//
// An entry marked left is dead: it waits for a holder to delete it.
//
// entries nil means the queue is not known: no grant is then taken as void.
func order(now time.Time, permits []holder.State, cands []*holder.Candidate, entries map[string]entry) queueOf {
	var q queueOf
	taken := map[string]bool{}
	for i, st := range permits {
		name, granted := namedBy(st)
		e, exists := entries[name]
		if name != "" && exists && e.snap.Record.Holder == st.Lease.Record.Holder {
			taken[name] = true
		}
		if cands[i].Free(st) || (granted && exists && !e.snap.Record.Held()) {
			q.free = append(q.free, i)
		}
	}
	cursor := served(permits)
	for name, e := range entries {
		switch {
		case taken[name]:
		case !e.snap.Record.Held(): // left
			q.dead = append(q.dead, queued{name, e})
		case e.pos.cmp(cursor) <= 0:
			// Served or skipped already: its owner removes it (served) or
			// queues again (passed over); an expired one is nobody's.
			if !e.live(now) {
				q.dead = append(q.dead, queued{name, e})
			}
		case e.live(now):
			q.live = append(q.live, queued{name, e})
		default:
			q.dead = append(q.dead, queued{name, e})
		}
	}
	byPos := func(a, b queued) int { return a.pos.cmp(b.pos) }
	slices.SortFunc(q.live, byPos)
	slices.SortFunc(q.dead, byPos)
	return q
}

// rank returns the place of the entry name among the live waiters, -1 if
// it is not one.
func (q queueOf) rank(name string) int {
	return slices.IndexFunc(q.live, func(e queued) bool { return e.name == name })
}

// grantTo returns the write that hands the permit at base to the waiter of
// entry e: its identity and duration, a new term (transitions+1), and the
// token of that term, the version this write replaces (invariant 8).
func grantTo(base *lease.Snapshot, e queued, now time.Time) (*lease.Snapshot, lease.Record, lease.Token, error) {
	tok, err := lease.TokenOf(base.ResourceVersion)
	if err != nil {
		return nil, lease.Record{}, 0, err
	}
	rec := lease.Record{
		Holder:        e.snap.Record.Holder,
		LeaseDuration: e.snap.Record.LeaseDuration,
		AcquireTime:   now,
		RenewTime:     now,
		Transitions:   base.Record.Transitions + 1,
		Strategy:      base.Record.Strategy,
	}
	obj := lease.WithAnnotation(base, entryAnnotation, cursorValue("granted", e.pos))
	return lease.WithAnnotation(obj, grantedOnAnnotation, e.snap.ResourceVersion), rec, tok, nil
}

// registration is this waiter's entry in the queue.
type registration struct {
	cfg     settings
	key     string
	client  *lease.Client
	snap    *lease.Snapshot
	pos     place
	created time.Time // when the create was sent

	removed sync.Once

	mu   sync.Mutex
	sent map[string]time.Time // when the writes that made recent versions were sent
}

// keepSent records that the write which made version rv was sent at t;
// the last few versions are kept.
func (r *registration) keepSent(rv string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent == nil {
		r.sent = map[string]time.Time{}
	}
	if len(r.sent) >= 8 {
		oldest := ""
		for v, at := range r.sent {
			if oldest == "" || at.Before(r.sent[oldest]) {
				oldest = v
			}
		}
		delete(r.sent, oldest)
	}
	r.sent[rv] = t
}

// lastSent returns when the latest write of the entry was sent.
func (r *registration) lastSent() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	for _, at := range r.sent {
		if at.After(last) {
			last = at
		}
	}
	return last, !last.IsZero()
}

// sentAt returns when the write that made version rv of the entry was sent.
func (r *registration) sentAt(rv string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.sent[rv]
	return t, ok
}

// register creates a queue entry for the waiter: a Lease named
// <lock>-q-<est><random> (est a version it saw before), labelled with the
// queue key, holding the waiter's identity and duration. Its creating
// version is its place in the queue.
func register(ctx context.Context, cfg settings, key string, est uint64) (*registration, error) {
	name, err := entryName(cfg.Name, est)
	if err != nil {
		return nil, fmt.Errorf("lock: queue entry name: %w", err)
	}
	c, err := lease.NewClient(cfg.Leases, cfg.Namespace, name)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	now := cfg.Clock.Now()
	rec := lease.Record{Holder: cfg.Identity, LeaseDuration: cfg.Timing.LeaseDuration, AcquireTime: now, RenewTime: now}
	s, err := c.CreateLabelled(ctx, rec, map[string]string{entryLabel: key}, nil)
	if err != nil {
		return nil, fmt.Errorf("lock: join the queue: %w", err)
	}
	r := &registration{cfg: cfg, key: key, client: c, snap: s, pos: placeOf(s), created: now}
	r.keepSent(s.ResourceVersion, now)
	return r, nil
}

func (r *registration) name() string { return r.client.Name() }

// renew rewrites the entry's record (a fresh renewTime) so that it stays
// live in every view; the first renewal also records its place. base is
// the latest version known (the view's, if newer). It returns
// ErrQueueEntryLost when the entry is gone or names another waiter.
func (r *registration) renew(ctx context.Context, base *lease.Snapshot) error {
	return r.renewOn(ctx, base, false)
}

// renewOn renews on base; fresh says base was just read.
func (r *registration) renewOn(ctx context.Context, base *lease.Snapshot, fresh bool) error {
	if base == nil {
		base = r.snap
	}
	if base.Record.Holder != r.cfg.Identity || base.UID != r.snap.UID {
		return fmt.Errorf("%w: entry %s/%s was changed by another client (holder %q)", ErrQueueEntryLost, r.cfg.Namespace, r.name(), base.Record.Holder)
	}
	rec := base.Record
	sent := r.cfg.Clock.Now()
	rec.RenewTime = sent
	s, err := r.client.Update(ctx, lease.WithAnnotation(base, queuedAtAnnotation, strconv.FormatUint(r.pos.at, 10)), rec, 0)
	if errors.Is(err, lease.ErrConflict) && !fresh {
		// Written by someone else since: look, and renew on what is there
		// if it is still this waiter's entry.
		cur, gerr := r.client.Get(ctx)
		if gerr != nil && !errors.Is(gerr, lease.ErrNotFound) {
			return gerr
		}
		if gerr == nil {
			return r.renewOn(ctx, cur, true)
		}
		err = gerr
	}
	switch {
	case errors.Is(err, lease.ErrNotFound):
		return fmt.Errorf("%w: entry %s/%s was deleted (by another client, or skipped as expired)", ErrQueueEntryLost, r.cfg.Namespace, r.name())
	case err != nil:
		return err
	}
	r.snap = s
	r.keepSent(s.ResourceVersion, sent)
	return nil
}

// markLeft empties the entry's holder: its waiter gave up and will never
// use a grant to it, so the waiters behind may take such a grant at once
// (order). The entry stays for a holder to delete (cleanUp): a waiter that
// deleted it instead would leave a grant on its way to it looking like one
// to an entry deleted by another client, which only expiry frees. Bounded
// by RenewDeadline, also after ctx ended; a failure leaves the entry to
// expire.
func (r *registration) markLeft(ctx context.Context) {
	r.removed.Do(func() {
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timing.RenewDeadline)
		defer cancel()
		base := r.snap
		for range 2 {
			_, err := r.client.Update(mctx, base, base.Record.Released(r.cfg.Clock.Now()), 0)
			if !errors.Is(err, lease.ErrConflict) {
				if err != nil && !errors.Is(err, lease.ErrNotFound) {
					r.cfg.Logger.V(2).Info("marking the queue entry as left failed; it expires on its own", "entry", r.name(), "err", err)
				}
				return
			}
			cur, gerr := r.client.Get(mctx)
			if gerr != nil || cur.UID != r.snap.UID || cur.Record.Holder != r.cfg.Identity {
				return
			}
			base = cur
		}
	})
}

// remove deletes the entry (this incarnation only), bounded by
// RenewDeadline, also after ctx ended. Only the first call deletes; later
// ones wait for it.
func (r *registration) remove(ctx context.Context) {
	r.removed.Do(func() { r.delete(ctx) })
}

func (r *registration) delete(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timing.RenewDeadline)
	defer cancel()
	if err := r.client.Delete(dctx, r.snap.UID); err != nil && !errors.Is(err, lease.ErrNotFound) {
		r.cfg.Logger.V(2).Info("removing the queue entry failed; it expires on its own", "entry", r.name(), "err", err)
	}
}
