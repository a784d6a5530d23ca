package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leasehold/leasehold/lease"
)

// run is one start of one shard's work in this member.
type run struct {
	token    lease.Token
	cancel   context.CancelCauseFunc
	active   bool // fn has not returned yet
	stopping bool // its context was ended by this member
}

type result struct {
	shard    int
	err      error
	panicked bool
	panicVal any
}

type writeResult struct {
	snap    *lease.Snapshot
	st      state // the state written (or found, when adopted)
	sent    time.Time
	adopted bool // a conflict showed a newer version of our own
	lost    bool // the Lease is no longer this incarnation's
	err     error
}

type evictResult struct {
	name string
	snap *lease.Snapshot
	err  error
}

// member is one Run of a Group: the state of the loop that owns the
// membership Lease, the claims and the shards' goroutines. All fields but
// the channels and wait groups belong to that loop's goroutine.
type member struct {
	g        *Group
	v        *view
	fn       Func
	viewDone <-chan error

	own      *lease.Snapshot // latest version of our Lease written or adopted
	ownRV    string          // version of our last successful write (internal/holder invariant 5)
	claims   map[int]lease.Token
	assigned map[int]time.Time // when a claimed shard was assigned here
	runs     map[int]*run
	active   int

	now   assignCache // Assign over the live members
	ahead assignCache // Assign over the live members that are not quiet
	// early: the claims made ahead of time, for shards of a quiet member
	// that this member would be assigned without it; they ride on the next
	// renewal instead of a write of their own.
	early map[int]bool

	writing bool
	dirty   bool
	// urgent: the next write carries what this member or the others wait
	// for (new claims, the leaving mark), so it is not held back to batch
	// give-ups.
	urgent bool
	// stopping counts the runs whose context this member ended and whose
	// work has not returned; once the first of them has returned, the
	// give-ups wait until holdUntil for the others, so that one write
	// carries them all (zero: none has returned yet).
	stopping   int
	holdUntil  time.Time
	leaving    bool // our writes say so: the others take our shards at once
	nextRenew  time.Time
	retryAt    time.Time
	evicting   map[string]string    // peer Lease -> version being evicted
	evictRetry map[string]time.Time // peer Lease -> no eviction before
	foreign    map[string]string    // peer Lease -> version reported as edited by hand

	mine   []bool        // reconcile's scratch: shards assigned here
	soon   []bool        // claimAhead's scratch: shards to claim ahead
	lowest []lease.Token // blockers' scratch: lowest other claim per shard

	results  chan result
	writeRes chan writeResult
	evictRes chan evictResult
	wg       sync.WaitGroup // shards
	bg       sync.WaitGroup // writes and evictions in flight

	failure  error
	panicked bool
	panicVal any
}

func newMember(g *Group, v *view, fn Func, viewDone <-chan error) *member {
	return &member{
		g: g, v: v, fn: fn, viewDone: viewDone,
		evicting: map[string]string{}, evictRetry: map[string]time.Time{}, foreign: map[string]string{},
		results:  make(chan result, g.cfg.Shards),
		writeRes: make(chan writeResult, 1),
		evictRes: make(chan evictResult, 64),
	}
}

func (m *member) id() string { return m.g.core.Identity }
func (m *member) k() int     { return m.g.cfg.Shards }

// run joins, serves, and joins again after a lost membership, until ctx
// ends or a failure.
func (m *member) run(ctx context.Context) error {
	for {
		t, err := m.join(ctx)
		if err != nil {
			return err
		}
		if err := m.serve(ctx, t); err != nil {
			return err
		}
	}
}

// serve runs the shards of one membership term. It returns nil when the
// term was lost (join again), else ctx.Err() or the failure, after leaving.
// Every shard has stopped when it returns.
func (m *member) serve(ctx context.Context, t *term) error {
	m.claims, m.assigned, m.runs, m.active = map[int]lease.Token{}, map[int]time.Time{}, map[int]*run{}, 0
	m.early = map[int]bool{}
	m.leaving, m.stopping, m.urgent = false, 0, false
	m.dirty, m.retryAt = false, time.Time{}
	ctxDone, termDone := ctx.Done(), t.ctx.Done()
	clk := m.g.core.Clock
	for {
		now := clk.Now()
		m.v.forget(now)
		peers, _, wm, verr, changed := m.v.snapshot()
		leaving := ctx.Err() != nil || m.failure != nil || m.panicked
		if leaving && !m.leaving && t.valid() {
			m.leaving, m.dirty, m.urgent = true, true, true
		}
		live, current := m.liveMembers(now, peers)
		if t.valid() {
			m.reconcile(now, t, peers, wm, leaving, live, current)
		} else {
			m.stopAll(context.Cause(t.ctx))
		}
		m.publish(t, peers, now, verr, leaving, live, current)
		if (leaving || !t.valid()) && m.active == 0 && !m.writing {
			break
		}
		if !m.writing && t.valid() && !now.Before(m.retryAt) && (m.dirty && !m.batching(now) || !now.Before(m.nextRenew) && !m.holding(now)) {
			m.startWrite(t)
		}
		timer := clk.NewTimer(m.nextWake(now, t, peers))
		select {
		case <-ctxDone:
			ctxDone = nil
		case <-termDone:
			termDone = nil
		case <-changed:
		case r := <-m.results:
			m.finished(r)
			for more := true; more; { // take every result at hand before the next reconcile
				select {
				case r := <-m.results:
					m.finished(r)
				default:
					more = false
				}
			}
		case w := <-m.writeRes:
			m.wrote(t, w)
		case e := <-m.evictRes:
			m.evicted(e)
		case err := <-m.viewDone:
			m.failure = fmt.Errorf("shard: watching group %s/%s: %w", m.g.cfg.Namespace, m.g.cfg.Name, err)
		case <-timer.C():
		}
		timer.Stop()
	}
	m.wg.Wait()
	leaving := ctx.Err() != nil || m.failure != nil || m.panicked
	if leaving && t.valid() {
		m.release(ctx, t)
	}
	t.end(ErrLeaving)
	if !leaving {
		return nil
	}
	if m.failure != nil {
		return m.failure
	}
	if m.panicked {
		return errPanicked // Run re-raises the panic
	}
	return ctx.Err()
}

var errPanicked = errors.New("shard: a shard's work panicked")

// reconcile moves the member towards the assignment of its current view:
// it stops shards that moved away, gives up their claims once their work
// has returned, claims the shards assigned to it (and ahead, those it would
// be assigned once quiet members expire), and starts those whose earlier
// owners have provably stopped.
func (m *member) reconcile(now time.Time, t *term, peers map[string]peer, wm uint64, leaving bool, live []string, current []int) {
	if len(m.mine) != m.k() {
		m.mine = make([]bool, m.k())
	}
	mine := m.mine
	clear(mine)
	var soon []bool
	if !leaving {
		for s, o := range m.now.assign(m.k(), live, current) {
			mine[s] = live[o] == m.id()
		}
		soon = m.claimAhead(now, peers, live, current)
	}
	for s, r := range m.runs {
		if !mine[s] && r.active && !r.stopping {
			m.stop(r, cause(leaving))
		}
	}
	m.updateClaims(now, mine, soon)
	m.startFree(now, t, peers, wm, live, mine)
}

// updateClaims gives up the claims on shards no longer assigned here whose
// work has returned, and claims the shards assigned here (at once) and
// those in soon (on the next renewal). soon may be nil.
func (m *member) updateClaims(now time.Time, mine, soon []bool) {
	ahead := func(s int) bool { return soon != nil && soon[s] }
	for s := range m.claims {
		if r := m.runs[s]; !mine[s] && (r == nil || !r.active) {
			if m.early[s] && ahead(s) {
				continue // still wanted ahead
			}
			// Invariant 2: a claim is given up only after the work has
			// returned (a claim made ahead never ran).
			delete(m.claims, s)
			delete(m.assigned, s)
			delete(m.runs, s)
			if m.early[s] {
				delete(m.early, s) // its give-up rides on the next renewal
				continue
			}
			m.dirty = true
		}
	}
	for s, ok := range mine {
		_, claimed := m.claims[s]
		switch {
		case ok && !claimed:
			m.claims[s], m.assigned[s] = pending, now // invariant 1: claimed before started
			m.dirty, m.urgent = true, true
		case ok && m.early[s]:
			delete(m.early, s) // claimed ahead: now assigned here
			m.assigned[s] = now
		case !ok && !claimed && ahead(s):
			m.claims[s], m.early[s] = pending, true // rides on the next renewal
		}
	}
}

// startFree starts the shards assigned here whose earlier owners have
// provably stopped, and takes over the expired members that block the
// others.
func (m *member) startFree(now time.Time, t *term, peers map[string]peer, wm uint64, live []string, mine []bool) {
	lowest := m.blockers(now, peers)
	var evict map[int]bool
	for s, ok := range mine {
		if !ok || m.runs[s] != nil {
			continue
		}
		tok := m.claims[s]
		if lowest[s] != noClaim && (tok == pending || lowest[s] < tok) {
			// Another member's claim may come first: take that member over
			// if it has expired, without waiting for our own claim's
			// write, so that the two writes go in parallel.
			if evict == nil {
				evict = map[int]bool{}
			}
			evict[s] = true
		}
		// Invariant 3: start only once the watch has delivered our own
		// claim (so every earlier claim is known) and no earlier claim of
		// another member still counts.
		if tok == pending || wm < uint64(tok) || lowest[s] < tok {
			continue
		}
		m.start(t, s, tok, now)
	}
	m.evictBlockers(now, peers, evict, live)
}

// stop ends a run's context; its give-up waits for the others stopped
// with it (batching).
func (m *member) stop(r *run, err error) {
	m.stopping++
	r.stopping = true
	r.cancel(err)
}

// giveUpBatch is how long, after the first of the runs this member stopped
// has returned, the give-up waits for the others (stopped at the same
// moment, they return together): one write instead of one per returning
// goroutine, which at K=1024 put two writes in a row on the path of every
// join.
const giveUpBatch = 20 * time.Millisecond

// batching reports whether a write that would only give claims up waits
// for more stopped runs to return.
func (m *member) batching(now time.Time) bool {
	return !m.urgent && m.stopping > 0 && (m.holdUntil.IsZero() || now.Before(m.holdUntil))
}

// holding reports whether some of the runs this member stopped together
// have returned and the others are still due within giveUpBatch: every
// write waits for them then, a renewal too (by at most giveUpBatch), so
// that their give-ups go in one write rather than part on a renewal and
// the rest in a write of its own right after.
func (m *member) holding(now time.Time) bool {
	return m.batching(now) && !m.holdUntil.IsZero()
}

// assignCache is Assign, computed again only when its input changed.
type assignCache struct {
	key    uint64 // input of the last Assign, hashed
	owners []int  // its result
}

func (c *assignCache) assign(k int, live []string, current []int) []int {
	h := fnv.New64a()
	for _, id := range live {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	var b [8]byte
	for _, o := range current {
		binary.LittleEndian.PutUint64(b[:], uint64(int64(o)))
		h.Write(b[:])
	}
	if key := h.Sum64(); key != c.key || c.owners == nil {
		c.key, c.owners = key, Assign(k, live, current)
	}
	return c.owners
}

// claimAhead returns the shards of quiet members that this member would be
// assigned if they left the group now, or nil when no member is quiet. A
// member is quiet when its record has not changed for RenewDeadline in
// this view: if it is down, its own hard deadline has passed and its record
// expires within LeaseDuration − RenewDeadline. Claimed ahead, on a
// renewal, these shards need no write of their own when it expires: only
// the takeover write stands between its expiry and their start.
//
// The assignment without the quiet members counts their shards as owned by
// nobody, whatever claims wait behind theirs, so that it does not change
// while the claims made ahead arrive one renewal at a time.
func (m *member) claimAhead(now time.Time, peers map[string]peer, live []string, current []int) []bool {
	rd := m.g.core.Timing.RenewDeadline
	gone := make([]bool, len(live))
	quiet := 0
	for name, p := range peers {
		if name == m.g.name || p.snap == nil || now.Before(p.observedAt.Add(rd)) {
			continue
		}
		if i, ok := slices.BinarySearch(live, p.holderID()); ok && live[i] != m.id() && !gone[i] {
			gone[i] = true
			quiet++
		}
	}
	if quiet == 0 {
		return nil
	}
	rest := make([]string, 0, len(live)-quiet)
	index := make([]int, len(live)) // in live -> in rest, -1 for the quiet
	for i, id := range live {
		index[i] = -1
		if !gone[i] {
			index[i] = len(rest)
			rest = append(rest, id)
		}
	}
	cur := make([]int, len(current))
	for s, o := range current {
		cur[s] = -1
		if o >= 0 {
			cur[s] = index[o]
		}
	}
	if len(m.soon) != m.k() {
		m.soon = make([]bool, m.k())
	}
	soon := m.soon
	for s, o := range m.ahead.assign(m.k(), rest, cur) {
		soon[s] = current[s] >= 0 && gone[current[s]] && rest[o] == m.id()
	}
	return soon
}

func cause(leaving bool) error {
	if leaving {
		return ErrLeaving
	}
	return ErrMoved
}

// liveMembers returns the identities of the live members (valid records,
// held, the same shard count, not expired in this view), this member
// included, sorted, and the current owner of each shard among them: the
// member that claims it with the lowest token.
func (m *member) liveMembers(now time.Time, peers map[string]peer) ([]string, []int) {
	ids := []string{m.id()}
	seen := map[string]string{m.id(): m.g.name}
	for name, p := range peers {
		if name == m.g.name || p.snap == nil || p.err != nil || !p.snap.Record.Held() || p.st.k != m.k() || p.st.leaving || !now.Before(p.expiresAt()) {
			continue
		}
		if _, dup := seen[p.holderID()]; dup {
			continue
		}
		seen[p.holderID()] = name
		ids = append(ids, p.holderID())
	}
	slices.Sort(ids)
	current := make([]int, m.k())
	best := make([]lease.Token, m.k())
	for s := range current {
		current[s] = -1
	}
	for i, id := range ids {
		p, ok := peers[seen[id]]
		if !ok || p.snap == nil {
			continue
		}
		for s, tok := range p.claims(m.k()) {
			if current[s] < 0 || tok < best[s] {
				current[s], best[s] = i, tok
			}
		}
	}
	return ids, current
}

// noClaim is blockers' value for a shard no other member claims.
const noClaim = ^lease.Token(0)

// blockers returns, for each shard, the lowest token with which another
// member may still be running it in this view (noClaim: none). A member's
// claims count until its record is released by a write, and a deleted
// member's until its last record expires. The slice is reused by the next
// call.
func (m *member) blockers(now time.Time, peers map[string]peer) []lease.Token {
	if len(m.lowest) != m.k() {
		m.lowest = make([]lease.Token, m.k())
	}
	lowest := m.lowest
	for s := range lowest {
		lowest[s] = noClaim
	}
	for name, p := range peers {
		if name == m.g.name {
			continue
		}
		if p.snap == nil && !now.Before(p.expiresAt()) {
			continue // deleted, and its deadline has passed
		}
		if p.snap != nil && p.err == nil && p.st.k != m.k() {
			continue // another shard space: ErrShardCount at its join
		}
		for s, tok := range p.claims(m.k()) {
			if s < len(lowest) && tok < lowest[s] {
				lowest[s] = tok
			}
		}
	}
	return lowest
}

// evictBlockers releases, by a write conditional on the version that
// expired, the record of every member that blocks a wanted shard and has
// expired in this view. Invariant 4: the write fails if that member
// renewed since, so a member is taken over only when its last successful
// renewal is the one whose expiry this view saw; its own deadline, counted
// from when it sent that renewal, has passed then.
//
// wanted are the shards assigned here that another member's claim may
// precede, including those whose own claim is still being written: the
// takeover goes beside that write, not after it.
//
// One write suffices, so at first only one member takes an expired member
// over: the first, by identity, of those its shards are assigned to; the
// others do so RetryPeriod after the expiry if it is still not released
// (views differ): at K=1024 the takeovers of every member at once slowed
// down the writes that the shards' new owners wait for.
func (m *member) evictBlockers(now time.Time, peers map[string]peer, wanted map[int]bool, live []string) {
	if len(wanted) == 0 {
		return
	}
	for name, p := range peers {
		if name == m.g.name || p.snap == nil || now.Before(p.expiresAt()) || m.evicting[name] == p.snap.ResourceVersion || now.Before(m.evictRetry[name]) {
			continue
		}
		if now.Before(p.expiresAt().Add(m.g.core.Timing.RetryPeriod)) && m.taker(p, live) != m.id() {
			continue
		}
		if !p.snap.Record.Held() && p.err == nil {
			continue
		}
		blocks := false
		for s := range p.claims(m.k()) {
			if wanted[s] {
				blocks = true
				break
			}
		}
		if !blocks {
			continue
		}
		m.evicting[name] = p.snap.ResourceVersion
		snap := p.snap
		m.bg.Go(func() { m.evictRes <- m.evict(snap) })
	}
}

// taker is the member that takes p over at once: the first, by identity,
// of the live members that p's claimed shards are assigned to in this
// view.
func (m *member) taker(p peer, live []string) string {
	best := ""
	for s := range p.claims(m.k()) {
		owners := m.now.owners
		if s >= len(owners) || owners[s] < 0 || owners[s] >= len(live) {
			continue
		}
		if id := live[owners[s]]; best == "" || id < best {
			best = id
		}
	}
	return best
}

func (m *member) evict(p *lease.Snapshot) evictResult {
	ctx, cancel := context.WithTimeout(context.Background(), m.g.core.Timing.RenewDeadline)
	defer cancel()
	rec := p.Record.Released(m.g.core.Clock.Now())
	base := lease.WithAnnotation(p, MemberAnnotation, state{k: m.k()}.encode(rec))
	c, err := lease.NewClient(m.g.cfg.Leases, p.Namespace, p.Name)
	if err != nil {
		return evictResult{name: p.Name, err: err}
	}
	s, err := c.Update(ctx, base, rec, 0) // internal/holder invariant 4: conditional on the expired version
	return evictResult{name: p.Name, snap: s, err: err}
}

func (m *member) evicted(e evictResult) {
	m.g.metrics.wrote("evict", e.err)
	if e.err != nil {
		m.g.core.Logger.V(2).Info("taking over an expired member failed", "lease", e.name, "err", e.err)
		// A conflict: the watch brings the newer version. Anything else:
		// retry after RetryPeriod.
		delete(m.evicting, e.name)
		m.evictRetry[e.name] = m.g.core.Clock.Now().Add(m.g.core.Timing.RetryPeriod)
		return
	}
	m.v.offer(e.snap)
	m.g.core.Logger.Info("took over the shards of an expired member", "lease", e.name)
	m.g.event(e.snap.Object(), true, "MemberExpired", "member Lease %s expired in the view of %s, who released it to take its shards over", e.name, m.id())
}

func (m *member) start(t *term, s int, tok lease.Token, now time.Time) {
	sctx, cancel := context.WithCancelCause(context.WithValue(t.ctx, termKey{}, t))
	m.runs[s] = &run{token: tok, cancel: cancel, active: true}
	m.active++
	m.g.metrics.moved(true)
	if at, ok := m.assigned[s]; ok {
		m.g.metrics.served(now.Sub(at))
	}
	m.wg.Go(func() {
		res := result{shard: s}
		defer func() {
			if p := recover(); p != nil {
				res.panicked, res.panicVal = true, p
			}
			cancel(nil)
			m.results <- res
		}()
		res.err = m.fn(sctx, s, tok)
	})
}

func (m *member) finished(res result) {
	r := m.runs[res.shard]
	r.active = false
	m.active--
	m.g.metrics.moved(false)
	switch {
	case res.panicked:
		if !m.panicked {
			m.panicked, m.panicVal = true, res.panicVal
		}
	case res.err != nil && !r.stopping && m.failure == nil:
		m.failure = fmt.Errorf("shard %d: %w", res.shard, res.err)
	}
	if r.stopping {
		m.stopping--
		if m.stopping == 0 {
			m.holdUntil = time.Time{}
		} else if m.holdUntil.IsZero() {
			m.holdUntil = m.g.core.Clock.Now().Add(giveUpBatch)
		}
		// Invariant 2: the work has returned; the claim goes with the
		// next write. A shard that comes back is claimed afresh, with a
		// new, higher token.
		delete(m.runs, res.shard)
		delete(m.claims, res.shard)
		delete(m.assigned, res.shard)
		m.dirty = true
	}
}

func (m *member) stopAll(err error) {
	for _, r := range m.runs {
		if r.active && !r.stopping {
			m.stop(r, err)
		}
	}
}

// nextWake is when the loop must look again without a change: the next
// renewal, a retry, or the expiry of a member in this view.
func (m *member) nextWake(now time.Time, t *term, peers map[string]peer) time.Duration {
	next := now.Add(time.Hour)
	if !m.writing && t.valid() {
		next = m.nextRenew
		if m.dirty && m.retryAt.After(now) {
			next = m.retryAt
		} else if m.holding(now) && (m.holdUntil.Before(next) || !next.After(now)) {
			next = m.holdUntil
		}
	}
	for _, at := range m.evictRetry {
		if at.After(now) && at.Before(next) {
			next = at
		}
	}
	for _, p := range peers {
		if p.snap != nil && !p.snap.Record.Held() && p.err == nil {
			continue
		}
		// Its expiry, and when a member that is not first takes it over.
		for _, at := range []time.Time{p.expiresAt(), p.expiresAt().Add(m.g.core.Timing.RetryPeriod)} {
			if at.After(now) && at.Before(next) {
				next = at
			}
		}
	}
	return max(next.Sub(now), 0)
}

// publish updates Status, health and metrics, and reports records edited
// by hand.
func (m *member) publish(t *term, peers map[string]peer, now time.Time, verr error, leaving bool, ids []string, current []int) {
	owners := make([]string, m.k())
	for s, o := range current {
		if o >= 0 {
			owners[s] = ids[o]
		}
	}
	live := ids
	if !t.valid() || leaving {
		live = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == m.id() })
	}
	owned := map[int]lease.Token{}
	for s, r := range m.runs {
		if r.active && !r.stopping {
			owned[s] = r.token
		}
	}
	health := verr
	if !t.valid() {
		health = fmt.Errorf("shard: membership of %s not valid: %w", m.id(), context.Cause(t.ctx))
	}
	m.g.mu.Lock()
	m.g.status = Status{Identity: m.id(), Member: t.valid() && !leaving, Members: live, Owners: owners, Owned: owned}
	m.g.health = health
	m.g.mu.Unlock()
	m.g.metrics.gauges(len(owned), len(live), t.valid())
	for name, p := range peers {
		if p.snap != nil && p.err != nil && m.foreign[name] != p.snap.ResourceVersion {
			m.foreign[name] = p.snap.ResourceVersion
			m.g.core.Logger.Info("ignoring a membership Lease edited by hand; its last trusted claims count until it expires", "lease", name, "err", p.err)
			m.g.event(p.snap.Object(), true, "ForeignEdit", "%v: its last trusted claims (all shards if none) count until it expires and is released; members never start a shard it may hold", p.err)
		}
	}
}

// join takes this member's Lease for a new incarnation: it creates it, or
// takes it when it is released, expired in this view, or still at this
// process's own last write.
func (m *member) join(ctx context.Context) (*term, error) {
	clk := m.g.core.Clock
	m.g.setHealth(errors.New("shard: joining the group"))
	for {
		peers, synced, _, verr, changed := m.v.snapshot()
		wait := time.Duration(-1)
		if synced {
			if err := m.checkShardCount(clk.Now(), peers); err != nil {
				return nil, err
			}
			var me *peer
			if p, ok := peers[m.g.name]; ok {
				me = &p
			}
			t, retry, err := m.tryJoin(ctx, me)
			if t != nil || err != nil {
				return t, err
			}
			wait = retry
		} else if verr != nil {
			m.g.setHealth(verr)
		}
		if err := m.awaitJoin(ctx, changed, wait); err != nil {
			return nil, err
		}
	}
}

// awaitJoin waits for a change of the view, wait (unless negative) or the
// end of ctx or of the view.
func (m *member) awaitJoin(ctx context.Context, changed <-chan struct{}, wait time.Duration) error {
	var timeout <-chan time.Time
	if wait >= 0 {
		timer := m.g.core.Clock.NewTimer(wait)
		defer timer.Stop()
		timeout = timer.C()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-m.viewDone:
		return fmt.Errorf("shard: watching group %s/%s: %w", m.g.cfg.Namespace, m.g.cfg.Name, err)
	case <-changed:
	case <-timeout:
	}
	return nil
}

func (m *member) checkShardCount(now time.Time, peers map[string]peer) error {
	for name, p := range peers {
		if name != m.g.name && p.snap != nil && p.err == nil && p.snap.Record.Held() && now.Before(p.expiresAt()) && p.st.k != m.k() {
			return fmt.Errorf("%w: member %q of group %s/%s uses %d shards, this member %d; use the same Shards everywhere, or another group Name",
				ErrShardCount, p.holderID(), m.g.cfg.Namespace, m.g.cfg.Name, p.st.k, m.k())
		}
	}
	return nil
}

// tryJoin makes one attempt. It returns the new term, or how long to wait
// before the next attempt (-1: until the view changes), or a permanent
// error.
func (m *member) tryJoin(ctx context.Context, me *peer) (*term, time.Duration, error) {
	clk, timing := m.g.core.Clock, m.g.core.Timing
	now := clk.Now()
	rec := lease.Record{Holder: m.id(), LeaseDuration: timing.LeaseDuration, AcquireTime: now, RenewTime: now}
	var snap *lease.Snapshot
	var err error
	if me == nil || me.snap == nil {
		snap, err = m.create(ctx, rec)
	} else {
		cur := me.snap
		if m.own != nil && m.own.UID == cur.UID && newer(m.own.ResourceVersion, cur.ResourceVersion) {
			cur = m.own
		}
		switch {
		case !cur.Record.Held() && me.err == nil, !now.Before(me.expiresAt()), cur.ResourceVersion == m.ownRV:
			rec.Transitions = cur.Record.Transitions + 1
			snap, err = m.update(ctx, cur, rec, state{k: m.k()})
		default:
			return nil, me.expiresAt().Sub(now), nil // held by another process with our identity, or edited: wait it out
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, lease.ErrConflict), errors.Is(err, lease.ErrAlreadyExists):
		return nil, timing.RetryPeriod, nil // the watch brings the newer version
	case lease.Permanent(err):
		return nil, 0, fmt.Errorf("shard: joining group %s/%s: %w", m.g.cfg.Namespace, m.g.cfg.Name, err)
	default:
		m.g.setHealth(err)
		return nil, timing.RetryPeriod, nil
	}
	t := startTerm(ctx, clk, timing.RenewDeadline, rec.Transitions, now)
	m.own, m.ownRV = snap, snap.ResourceVersion
	m.nextRenew = now.Add(timing.RetryPeriod)
	m.v.offer(snap)
	m.g.core.Logger.Info("joined the shard group", "group", m.g.cfg.Name, "lease", m.g.name, "transitions", rec.Transitions)
	m.g.event(snap.Object(), false, "Joined", "%s joined shard group %s (%d shards)", m.id(), m.g.cfg.Name, m.k())
	return t, 0, nil
}

func (m *member) create(ctx context.Context, rec lease.Record) (*lease.Snapshot, error) {
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: m.g.cfg.Namespace, Name: m.g.name,
			Labels:      map[string]string{GroupLabel: m.g.cfg.Name},
			Annotations: map[string]string{MemberAnnotation: state{k: m.k()}.encode(rec)},
		},
		Spec: rec.ToSpec(),
	}
	out, err := m.g.cfg.Leases.Leases(m.g.cfg.Namespace).Create(ctx, l, metav1.CreateOptions{})
	if err != nil {
		err = lease.Classify("create", m.g.cfg.Namespace, m.g.name, err)
		if errors.Is(err, lease.ErrAlreadyExists) {
			if cur, gerr := m.g.cfg.Leases.Leases(m.g.cfg.Namespace).Get(ctx, m.g.name, metav1.GetOptions{}); gerr == nil && cur.Labels[GroupLabel] != m.g.cfg.Name {
				return nil, fmt.Errorf("shard: Lease %s/%s exists but is not a member of group %q (label %s=%q): delete it, or give this member another Identity", m.g.cfg.Namespace, m.g.name, m.g.cfg.Name, GroupLabel, cur.Labels[GroupLabel])
			}
		}
		return nil, err
	}
	return lease.NewSnapshot(out), nil
}

// update writes rec and st on base, conditionally on base's version
// (internal/holder invariant 4).
func (m *member) update(ctx context.Context, base *lease.Snapshot, rec lease.Record, st state) (*lease.Snapshot, error) {
	c, err := lease.NewClient(m.g.cfg.Leases, m.g.cfg.Namespace, m.g.name)
	if err != nil {
		return nil, err
	}
	return c.Update(ctx, lease.WithAnnotation(base, MemberAnnotation, st.encode(rec)), rec, 0)
}
