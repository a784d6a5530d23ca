package shard_test

import (
	"fmt"
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
