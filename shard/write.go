package shard

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// startWrite renews the membership Lease with the current claims, on a
// goroutine joined through writeRes (and m.bg). One write is in flight at a
// time; it never waits for its answer past the hard deadline
// (internal/holder invariant 7).
func (m *member) startWrite(t *term) {
	st := state{k: m.k(), claims: maps.Clone(m.claims), leaving: m.leaving}
	base := m.own
	m.writing, m.dirty, m.urgent = true, false, false
	ctx, cancel := context.WithDeadline(context.Background(), t.Deadline())
	m.bg.Go(func() {
		defer cancel()
		m.writeRes <- m.write(ctx, t, base, st)
	})
}

func (m *member) write(ctx context.Context, t *term, base *lease.Snapshot, st state) writeResult {
	clk, timing := m.g.core.Clock, m.g.core.Timing
	sent := clk.Now()
	rec := base.Record
	rec.Holder, rec.LeaseDuration, rec.RenewTime = m.id(), timing.LeaseDuration, sent
	snap, err := m.update(ctx, base, rec, st)
	if err == nil {
		return writeResult{snap: snap, st: st, sent: sent}
	}
	if errors.Is(err, lease.ErrNotFound) {
		return writeResult{lost: true, err: err}
	}
	if !errors.Is(err, lease.ErrConflict) {
		return writeResult{err: err}
	}
	c, cerr := lease.NewClient(m.g.cfg.Leases, m.g.cfg.Namespace, m.g.name)
	if cerr != nil {
		return writeResult{err: cerr}
	}
	fresh, gerr := c.Get(ctx)
	switch {
	case errors.Is(gerr, lease.ErrNotFound):
		return writeResult{lost: true, err: err}
	case gerr != nil:
		return writeResult{err: gerr}
	}
	found, derr := decode(fresh)
	if derr != nil || fresh.Record.Holder != m.id() || fresh.Record.Transitions != t.trans {
		// Released by another member (we had expired in its view), or
		// edited or re-created by hand: this incarnation is over.
		return writeResult{lost: true, snap: fresh, err: err}
	}
	// A newer version of our own: an earlier write whose answer was lost
	// went through. Adopt it and write again.
	return writeResult{snap: fresh, st: found, adopted: true, err: err}
}

// wrote records a write's result. A successful write moves the hard
// deadline to RenewDeadline after its send (internal/holder invariant 6)
// and gives every pending claim it carried its token: the version it wrote.
func (m *member) wrote(t *term, w writeResult) {
	m.writing = false
	timing, clk := m.g.core.Timing, m.g.core.Clock
	switch {
	case w.lost:
		m.g.metrics.wrote("renew", w.err)
		if t.valid() {
			var obj = m.own.Object()
			if w.snap != nil {
				obj = w.snap.Object()
			}
			m.g.core.Logger.Info("membership lost: the Lease was released by another member, edited or deleted", "lease", m.g.name, "err", w.err)
			m.g.event(obj, true, "MembershipLost", "%s lost its membership of shard group %s (its Lease was taken over after expiring, edited or deleted); its shards stop and it joins again", m.id(), m.g.cfg.Name)
		}
		t.end(ErrLost)
		if w.snap != nil {
			m.v.offer(w.snap)
		}
		return
	case w.adopted:
		m.own = w.snap
		m.settlePending(w.snap, w.st)
		m.v.offer(w.snap)
		m.dirty = true
		return
	case w.err != nil:
		m.g.metrics.wrote("renew", w.err)
		m.g.core.Logger.V(2).Info("renewing membership failed", "lease", m.g.name, "err", w.err)
		m.dirty, m.urgent = true, true
		m.retryAt = clk.Now().Add(timing.RetryPeriod)
		return
	}
	m.g.metrics.wrote("renew", nil)
	t.renewed(w.sent)
	m.own, m.ownRV = w.snap, w.snap.ResourceVersion
	m.settlePending(w.snap, w.st)
	m.v.offer(w.snap)
	m.nextRenew = w.sent.Add(timing.RetryPeriod)
	m.retryAt = time.Time{}
}

// settlePending gives the claims written as pending in snap their token:
// snap's version.
func (m *member) settlePending(snap *lease.Snapshot, st state) {
	tok, err := lease.TokenOf(snap.ResourceVersion)
	if err != nil {
		return
	}
	for s, t := range st.claims {
		if t == pending && m.claims[s] == pending {
			if _, ok := m.claims[s]; ok {
				m.claims[s] = tok
			}
		}
	}
}

// release leaves the group: it writes the released record (no holder, no
// claims) on our last version, so the others take our shards at once. It
// is called only after every shard's work has returned.
func (m *member) release(ctx context.Context, t *term) {
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), t.Deadline())
	defer cancel()
	c, err := lease.NewClient(m.g.cfg.Leases, m.g.cfg.Namespace, m.g.name)
	if err != nil {
		return
	}
	base := m.own
	for range 3 {
		rec := base.Record.Released(m.g.core.Clock.Now())
		snap, err := c.Update(rctx, lease.WithAnnotation(base, MemberAnnotation, state{k: m.k()}.encode(rec)), rec, 0)
		m.g.metrics.wrote("release", err)
		if err == nil {
			m.own, m.ownRV = snap, ""
			m.v.offer(snap)
			m.g.event(snap.Object(), false, "Left", "%s left shard group %s", m.id(), m.g.cfg.Name)
			return
		}
		if !errors.Is(err, lease.ErrConflict) {
			m.g.core.Logger.Info("leaving the group: release failed; the others take the shards once the Lease expires", "lease", m.g.name, "err", err)
			return
		}
		fresh, gerr := c.Get(rctx)
		if gerr != nil || fresh.Record.Holder != m.id() || fresh.Record.Transitions != t.trans {
			return
		}
		if _, derr := decode(fresh); derr != nil {
			return
		}
		base = fresh
	}
}
