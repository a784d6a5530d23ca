package shard_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/leasehold/leasehold/shard"
)

func members(n int, prefix string) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// remap expresses owners (indexes into from) as indexes into to, -1 for
// members not in to.
func remap(owners []int, from, to []string) []int {
	out := make([]int, len(owners))
	for s, o := range owners {
		out[s] = slices.Index(to, from[o])
	}
	return out
}

func names(owners []int, ms []string) []string {
	out := make([]string, len(owners))
	for s, o := range owners {
		out[s] = ms[o]
	}
	return out
}

// TestAssignBalanceAndMoves: max−min ≤ 1 from scratch, a join moves at most
// ⌈K/(N+1)⌉ shards and a leave only the leaver's, for every K and N of the
// targets.
func TestAssignBalanceAndMoves(t *testing.T) {
	for _, k := range []int{16, 256, 1024} {
		for _, n := range []int{1, 3, 10} {
			t.Run(fmt.Sprintf("K=%d/N=%d", k, n), func(t *testing.T) {
				ms := members(n, "pod")
				a := shard.Assign(k, ms, nil)
				count := map[int]int{}
				for _, o := range a {
					count[o]++
				}
				lo, hi := k, 0
				for m := range n {
					lo, hi = min(lo, count[m]), max(hi, count[m])
				}
				if hi-lo > 1 {
					t.Errorf("imbalance %d (counts %v)", hi-lo, count)
				}
				joined := append(slices.Clone(ms), "new-pod")
				b := shard.Assign(k, joined, remap(a, ms, joined))
				if got, limit := moved(names(a, ms), names(b, joined)), (k+n)/(n+1); got > limit {
					t.Errorf("join moved %d shards, want at most %d", got, limit)
				}
				if n > 1 {
					rest := ms[1:]
					c := shard.Assign(k, rest, remap(a, ms, rest))
					if got := moved(names(a, ms), names(c, rest)); got != count[0] {
						t.Errorf("leave moved %d shards, want only the leaver's %d", got, count[0])
					}
				}
			})
		}
	}
}

// TestAssignIsAFunctionOfTheView: the input order of the members does not
// change the answer, so every member computes the same assignment.
func TestAssignIsAFunctionOfTheView(t *testing.T) {
	ms := members(7, "m")
	a := names(shard.Assign(100, ms, nil), ms)
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	if b := names(shard.Assign(100, rev, nil), rev); !slices.Equal(a, b) {
		t.Errorf("assignment depends on the order of members")
	}
	cur := shard.Assign(100, ms, nil)
	c := names(shard.Assign(100, rev, remap(cur, ms, rev)), rev)
	if !slices.Equal(a, c) {
		t.Errorf("a balanced current assignment is not kept as it is")
	}
}

// settleWithStaleViews lets the members act one at a time, each on a view
// up to two steps old, as members do when their watches lag: a member
// computes Assign from its view, gives up the shards it holds that went
// elsewhere and claims the free ones it was given. It returns how many
// shards the members gave up on the way.
func settleWithStaleViews(rng *rand.Rand, k int, ms []string, cur []int) (owners []int, gaveUp int) {
	hist := [][]int{slices.Clone(cur)}
	quiet := 0
	for quiet < 3*len(ms) {
		m := rng.IntN(len(ms))
		view := hist[max(0, len(hist)-1-rng.IntN(3))]
		want := shard.Assign(k, ms, view)
		next := slices.Clone(hist[len(hist)-1])
		changed := false
		for s := range k {
			switch {
			case next[s] == m && want[s] != m:
				next[s] = -1
				gaveUp++
				changed = true
			case next[s] == -1 && want[s] == m:
				next[s] = m
				changed = true
			}
		}
		hist = append(hist, next)
		if changed {
			quiet = 0
		} else if slices.Equal(shard.Assign(k, ms, next), next) {
			quiet++ // settled when every member, on the newest view, has nothing to do
		}
	}
	return hist[len(hist)-1], gaveUp
}

// TestAssignLeaveWithStaleViewsMovesOnlyTheLeavers: the survivors of a
// leave take the leaver's shards on views that lag behind each other's
// claims. Every such view must give the spare slot (k mod n) to the same
// member; if it went to whoever owns most at the moment, two survivors
// could each fill up to ⌈k/n⌉ and one of them would later have to give a
// shard away: a move beyond the leaver's shards.
func TestAssignLeaveWithStaleViewsMovesOnlyTheLeavers(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ k, n int }{{64, 4}, {16, 3}, {100, 7}, {10, 4}, {128, 10}} {
		for leaver := range tc.n {
			ms := members(tc.n, "m")
			start := shard.Assign(tc.k, ms, nil)
			rest := slices.Delete(slices.Clone(ms), leaver, leaver+1)
			for range 30 {
				end, gaveUp := settleWithStaleViews(rng, tc.k, rest, remap(start, ms, rest))
				if gaveUp != 0 {
					t.Fatalf("K=%d N=%d leaver %s: the survivors gave up %d shards, want 0 (end %v)", tc.k, tc.n, ms[leaver], gaveUp, end)
				}
			}
		}
	}
}

// TestAssignJoinWithStaleViewsMovesNoMoreThanAtOnce: the members of a join
// give shards to the newcomer on views that lag behind each other; they
// give up no more shards than the assignment of the whole view moves at
// once.
func TestAssignJoinWithStaleViewsMovesNoMoreThanAtOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ k, n int }{{64, 3}, {16, 3}, {100, 6}, {10, 3}, {256, 9}} {
		ms := members(tc.n, "m")
		start := shard.Assign(tc.k, ms, nil)
		joined := append(slices.Clone(ms), "newcomer")
		cur := remap(start, ms, joined)
		once := moved(names(cur, joined), names(shard.Assign(tc.k, joined, cur), joined))
		for range 30 {
			end, gaveUp := settleWithStaleViews(rng, tc.k, joined, cur)
			if gaveUp > once {
				t.Fatalf("K=%d N=%d: the members gave up %d shards, the assignment at once moves %d (end %v)", tc.k, tc.n, gaveUp, once, end)
			}
		}
	}
}
