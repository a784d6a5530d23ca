package shard_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/shard"
)

// TestBalanceAndSingleOwner: N members of one group split K shards with
// max−min ≤ 1 and every shard run by exactly one member.
func TestBalanceAndSingleOwner(t *testing.T) {
	for _, tc := range []struct{ k, n int }{{16, 1}, {16, 3}, {256, 3}, {64, 10}} {
		t.Run("", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFleet(t, tc.k, nil)
				for _, id := range ids(tc.n) {
					f.start(id)
				}
				time.Sleep(10 * time.Second)
				synctest.Wait()
				c := f.counts(t)
				if len(c) != tc.n || imbalance(c) > 1 {
					t.Errorf("K=%d N=%d: counts %v, want %d members within 1 of each other", tc.k, tc.n, c, tc.n)
				}
				f.stopAll()
				f.log.check(t)
			})
		})
	}
}

// moved counts the shards whose owner differs between two owner lists.
func moved(a, b []string) int {
	n := 0
	for s := range a {
		if a[s] != b[s] {
			n++
		}
	}
	return n
}

// TestJoinAndLeaveMoveFewShards: a member that joins takes about K/N
// shards from the others and a member that leaves hands over only its own;
// every moved shard serves again at once (no waiting for expiry), and no
// shard is ever run twice.
func TestJoinAndLeaveMoveFewShards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 64
		f := newFleet(t, k, nil)
		f.startSettled(3)
		before := f.log.owners(k)

		f.start("m3")
		joinedAt := time.Now()
		time.Sleep(100 * time.Millisecond) // far below LeaseDuration: no expiry involved
		synctest.Wait()
		after := f.log.owners(k)
		if c := f.counts(t); len(c) != 4 || imbalance(c) > 1 {
			t.Fatalf("after the join %v after %v: counts %v", time.Since(joinedAt), time.Since(joinedAt), c)
		}
		if n, limit := moved(before, after), (k+3)/4; n > limit {
			t.Errorf("join moved %d shards, want at most ⌈K/N⌉ = %d", n, limit)
		}

		f.stop("m1")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		left := f.log.owners(k)
		if c := f.counts(t); len(c) != 3 || imbalance(c) > 1 || c["m1"] != 0 {
			t.Fatalf("after m1 left: counts %v", c)
		}
		had := 0
		for _, o := range after {
			if o == "m1" {
				had++
			}
		}
		if n := moved(after, left); n != had {
			t.Errorf("leave moved %d shards, want only m1's %d", n, had)
		}
		f.stopAll()
		f.log.check(t)
	})
}

// TestCrashTakeoverAfterExpiry: a member cut off from the API (its writes
// fail, as in a crash or a partition) stops its shards at its own hard
// deadline, and the others start them once its record has expired in their
// view — not before — with higher tokens.
func TestCrashTakeoverAfterExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 16
		f := newFleet(t, k, nil)
		m0 := &cutLeases{srv: f.srv}
		f.leasesFor("m0", m0)
		f.startSettled(3)
		before := f.log.owners(k)
		m0.cut.Store(true)
		cut := time.Now()
		time.Sleep(2500 * time.Millisecond) // past m0's deadline (2s), before its expiry (3s after the last renewal seen)
		synctest.Wait()
		mid := f.log.owners(k)
		for s, o := range before {
			if o == "m0" && mid[s] != "" {
				t.Errorf("shard %d of m0 run by %q %v after the cut: before m0's record expired", s, mid[s], time.Since(cut))
			}
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if c := f.counts(t); c["m0"] != 0 || len(c) != 2 || imbalance(c) > 1 {
			t.Errorf("after m0's expiry: counts %v", c)
		}
		f.log.mu.Lock()
		for _, r := range f.log.runs {
			if r.member != "m0" && before[r.shard] == "m0" && r.start.After(cut) {
				if d := r.start.Sub(cut); d > 3*time.Second+100*time.Millisecond {
					t.Errorf("shard %d served again %v after the cut, want within LeaseDuration (3s) of m0's last renewal", r.shard, d)
				}
			}
		}
		f.log.mu.Unlock()
		f.stopAll()
		f.log.check(t)
	})
}

// TestStaleViewDoesNotTakeOver: a member whose watch is stuck sees another
// member's record stop changing and judges it expired, but that member is
// alive and renewing: the takeover write, conditional on the version seen,
// fails, and the shards stay where they run.
func TestStaleViewDoesNotTakeOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 16
		f := newFleet(t, k, nil)
		stale := &frozenWatch{srv: f.srv}
		f.leasesFor("m1", stale)
		f.startSettled(2)
		before := f.log.owners(k)
		stale.frozen.Store(true)
		frozenAt := time.Now()
		time.Sleep(10 * time.Second) // m0 has expired in m1's stale view long ago
		synctest.Wait()
		stale.frozen.Store(false)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if c := f.counts(t); len(c) != 2 || imbalance(c) > 1 {
			t.Errorf("counts %v after the watch recovered", c)
		}
		if after := f.log.owners(k); moved(before, after) != 0 {
			t.Errorf("shards moved while every member was alive: %v -> %v", before, after)
		}
		f.log.mu.Lock()
		for _, r := range f.log.runs {
			if !r.end.IsZero() && r.end.After(frozenAt) {
				t.Errorf("%s's run of shard %d (token %v) ended at %v: a live member was taken over", r.member, r.shard, r.token, r.end)
			}
		}
		f.log.mu.Unlock()
		f.stopAll()
		f.log.check(t)
	})
}

// TestGiveUpsInOneWrite: the shards that move away from a member when
// another joins stop together, and their claims are given up by one write,
// not one write per shard whose work happened to return first (each write
// in a row is a round trip on the path of the joiner's start).
func TestGiveUpsInOneWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 64
		f := newFleet(t, k, nil)
		f.startSettled(3)
		seen := map[string]int{}
		for _, id := range ids(3) {
			seen[id] = len(f.srv.Versions(ns, group+"-"+id))
		}

		f.start("m3")
		time.Sleep(300 * time.Millisecond)
		synctest.Wait()
		if c := f.counts(t); len(c) != 4 || imbalance(c) > 1 {
			t.Fatalf("after the join: counts %v", c)
		}
		for _, id := range ids(3) {
			vs := f.srv.Versions(ns, group+"-"+id)
			first, err := shard.MemberOf(vs[seen[id]-1])
			if err != nil {
				t.Fatal(err)
			}
			final, err := shard.MemberOf(vs[len(vs)-1])
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range vs[seen[id]:] {
				m, err := shard.MemberOf(l)
				if err != nil {
					t.Fatal(err)
				}
				if n := len(m.Claims); n != len(first.Claims) && n != len(final.Claims) {
					t.Errorf("%s wrote a version with %d claims between %d before the join and %d after: its give-ups took more than one write", id, n, len(first.Claims), len(final.Claims))
				}
			}
		}
		f.stopAll()
		f.log.check(t)
	})
}

// TestOneTakeoverWrite: when a member crashes, only the first live member
// takes its expired record over; the others do not race it with writes
// that can only conflict.
func TestOneTakeoverWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 64
		f := newFleet(t, k, nil)
		m3 := &cutLeases{srv: f.srv}
		f.leasesFor("m3", m3)
		f.startSettled(4)
		conflicts := f.srv.Conflicts()
		m3.cut.Store(true)
		time.Sleep(3200 * time.Millisecond) // past m3's expiry, before RetryPeriod after it
		synctest.Wait()
		if c := f.counts(t); c["m3"] != 0 || len(c) != 3 || imbalance(c) > 1 {
			t.Errorf("after m3's expiry: counts %v", c)
		}
		if n := f.srv.Conflicts() - conflicts; n != 0 {
			t.Errorf("%d writes conflicted while m3 was taken over, want 0 (one takeover write)", n)
		}
		f.stopAll()
		f.log.check(t)
	})
}

// TestTakeoverByNewOwner: the member that takes a crashed member over at
// once is one its shards move to, even when the first live member gets
// none of them: the shard runs again right after the crashed member's
// record expires, not RetryPeriod later.
func TestTakeoverByNewOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 4
		f := newFleet(t, k, nil)
		cut := map[string]*cutLeases{}
		f.mod = func(c *shard.Config) {
			cut[c.Identity] = &cutLeases{srv: f.srv}
			c.Leases = cut[c.Identity]
		}
		f.startSettled(5)
		members := ids(5)
		if c := f.counts(t); c["m0"] == 0 {
			// The join order left m0 without a shard. One of the others
			// leaves (its shard goes to m0) and a sixth member joins,
			// which keeps none: shards stay where they run.
			leaver := "m1"
			f.stop(leaver)
			time.Sleep(2 * time.Second)
			f.start("m5")
			time.Sleep(3 * time.Second)
			synctest.Wait()
			members = append(slices.DeleteFunc(members, func(id string) bool { return id == leaver }), "m5")
		}
		before := f.log.owners(k)
		// The victim: a member other than m0 that runs a shard; its shard
		// goes to the one member that runs none, which must not be m0
		// either (else m0 is the taker in both rules).
		c := f.counts(t)
		victim, idle := "", ""
		for _, id := range members {
			if c[id] == 0 {
				idle = id
			} else if id != "m0" && victim == "" {
				victim = id
			}
		}
		if idle == "" || idle == "m0" || victim == "" {
			t.Fatalf("counts %v: want a member other than m0 without a shard", c)
		}
		cut[victim].cut.Store(true)
		vs := f.srv.Versions(ns, group+"-"+victim)
		lastWrite := vs[len(vs)-1].Spec.RenewTime.Time
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if c := f.counts(t); c[victim] != 0 || c[idle] != 1 {
			t.Fatalf("after %s's expiry: counts %v, want %s to run its shard", victim, c, idle)
		}
		f.log.mu.Lock()
		for _, r := range f.log.runs {
			if r.member == idle && before[r.shard] == victim {
				// Expiry is LeaseDuration (3s) after the others saw the last
				// renewal; RetryPeriod is 500ms.
				if d := r.start.Sub(lastWrite); d > 3*time.Second+250*time.Millisecond {
					t.Errorf("shard %d of %s ran again on %s %v after its last renewal, want within LeaseDuration (3s) and a little", r.shard, victim, idle, d)
				}
			}
		}
		f.log.mu.Unlock()
		f.stopAll()
		f.log.check(t)
	})
}

// TestCrashServesOneWriteAfterExpiry: the members claim the shards of a
// member that has gone quiet on their renewals, before it expires, so that
// when it does only the takeover write stands between its expiry and its
// shards' start elsewhere — not a claim write and then the takeover, each
// a round trip on a busy apiserver.
func TestCrashServesOneWriteAfterExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 64
		const delay = 100 * time.Millisecond // every write lands this long after it was sent
		f := newFleet(t, k, nil)
		slow := &slowLeases{srv: f.srv, delay: delay}
		m3 := &cutLeases{srv: slow}
		f.mod = func(c *shard.Config) {
			c.Leases = slow
			if c.Identity == "m3" {
				c.Leases = m3
			}
		}
		f.startSettled(4)
		before := f.log.owners(k)
		m3.cut.Store(true)
		time.Sleep(2 * delay) // a write sent before the cut lands
		vs := f.srv.Versions(ns, group+"-m3")
		// The others saw m3's last write when it landed; it expires
		// LeaseDuration (3s) later in their view.
		expiry := vs[len(vs)-1].Spec.RenewTime.Add(delay + 3*time.Second)
		time.Sleep(time.Until(expiry) - time.Millisecond)
		synctest.Wait()
		ahead := map[int]string{}
		for _, id := range ids(3) {
			m, err := shard.MemberOf(f.srv.Lease(ns, group+"-"+id))
			if err != nil {
				t.Fatal(err)
			}
			for s := range m.Claims {
				ahead[s] = id
			}
		}
		for s, o := range before {
			if o == "m3" && ahead[s] == "" {
				t.Errorf("shard %d of m3 is claimed by no other member when m3 expires", s)
			}
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if c := f.counts(t); c["m3"] != 0 || len(c) != 3 || imbalance(c) > 1 {
			t.Errorf("after m3's expiry: counts %v", c)
		}
		f.log.mu.Lock()
		for _, r := range f.log.runs {
			if r.member != "m3" && before[r.shard] == "m3" && r.start.After(expiry.Add(-time.Second)) {
				if d := r.start.Sub(expiry); d > delay+10*time.Millisecond {
					t.Errorf("shard %d of m3 ran again on %s %v after m3's expiry, want one write (%v)", r.shard, r.member, d, delay)
				}
			}
		}
		f.log.mu.Unlock()
		f.stopAll()
		f.log.check(t)
	})
}

// TestTakeoverBesideTheClaim: when the shards of a crashed member could
// not be claimed ahead (here RenewDeadline is so close to LeaseDuration
// that no renewal lands between the moment it goes quiet and its expiry),
// the member that takes it over sends the takeover at its expiry, beside
// the write that claims them, not after that write has landed: one write
// on the path, not two in a row.
func TestTakeoverBesideTheClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 64
		const delay = 100 * time.Millisecond // every write lands this long after it was sent
		f := newFleet(t, k, nil)
		slow := &slowLeases{srv: f.srv, delay: delay}
		m3 := &cutLeases{srv: slow}
		f.mod = func(c *shard.Config) {
			c.RenewDeadline = 3*time.Second - time.Millisecond
			c.Leases = slow
			if c.Identity == "m3" {
				c.Leases = m3
			}
		}
		f.startSettled(4)
		m3.cut.Store(true)
		time.Sleep(2 * delay) // a write sent before the cut lands
		vs := f.srv.Versions(ns, group+"-m3")
		last := len(vs) - 1
		expiry := vs[last].Spec.RenewTime.Add(delay + 3*time.Second)
		time.Sleep(time.Until(expiry) + 2*time.Second)
		synctest.Wait()
		if c := f.counts(t); c["m3"] != 0 || len(c) != 3 || imbalance(c) > 1 {
			t.Errorf("after m3's expiry: counts %v", c)
		}
		vs = f.srv.Versions(ns, group+"-m3")
		if len(vs) != last+2 || lease.FromSpec(vs[last+1].Spec).Held() {
			t.Fatalf("m3's Lease after its expiry: %d versions more, want one (the takeover)", len(vs)-last-1)
		}
		// A released record's renewTime is when the takeover was sent.
		if d := vs[last+1].Spec.RenewTime.Sub(expiry); d > 10*time.Millisecond {
			t.Errorf("m3 was taken over by a write sent %v after its expiry, want at once (not after a claim write of %v)", d, delay)
		}
		f.stopAll()
		f.log.check(t)
	})
}

// TestClaimsAheadRideOnRenewals: a member whose watch stalls sees another
// go quiet and claims its shards ahead; when the watch recovers before the
// quiet member has expired in its view, those claims are given up again.
// Both ride on renewals: the member writes no more often than once per
// RetryPeriod, and no shard moves.
func TestClaimsAheadRideOnRenewals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 16
		f := newFleet(t, k, nil)
		stale := &frozenWatch{srv: f.srv}
		f.leasesFor("m1", stale)
		f.startSettled(2)
		before := f.log.owners(k)
		own := 0
		for _, o := range before {
			if o == "m1" {
				own++
			}
		}
		// Freeze m1's watch just after it has seen a renewal of m0, so that
		// m0 is quiet in m1's view 2s (RenewDeadline) later and expires 3s
		// (LeaseDuration) later.
		for n := len(f.srv.Versions(ns, group+"-m0")); len(f.srv.Versions(ns, group+"-m0")) == n; {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		seen := len(f.srv.Versions(ns, group+"-m1"))
		stale.frozen.Store(true)
		time.Sleep(2700 * time.Millisecond) // m0 quiet in m1's view, not expired
		synctest.Wait()
		stale.frozen.Store(false)
		time.Sleep(2300 * time.Millisecond)
		synctest.Wait()
		vs := f.srv.Versions(ns, group+"-m1")[seen:]
		most := 0
		for _, l := range vs {
			m, err := shard.MemberOf(l)
			if err != nil {
				t.Fatal(err)
			}
			most = max(most, len(m.Claims))
		}
		if most != k {
			t.Errorf("m1 claimed at most %d shards while m0 was quiet in its view, want all %d (its %d and m0's ahead)", most, k, own)
		}
		if last, _ := shard.MemberOf(vs[len(vs)-1]); len(last.Claims) != own {
			t.Errorf("m1 still claims %d shards after its watch recovered, want its own %d", len(last.Claims), own)
		}
		for i := 1; i < len(vs); i++ {
			if d := vs[i].Spec.RenewTime.Sub(vs[i-1].Spec.RenewTime.Time); d < 500*time.Millisecond {
				t.Errorf("m1 wrote %v after its previous write, want its renewals only, one per RetryPeriod (500ms)", d)
			}
		}
		if after := f.log.owners(k); moved(before, after) != 0 {
			t.Errorf("shards moved while every member was alive: %v -> %v", before, after)
		}
		f.stopAll()
		f.log.check(t)
	})
}
