package shard

import (
	"hash/fnv"
	"slices"
)

// Assign returns the owner of each of k shards among members: owners[s] is
// an index into members. current[s] is the index of the member that owns
// shard s now, or -1 (current may be nil: nobody owns anything). Every
// member computes it from the same membership view (identities and current
// owners, both read from the membership Leases), so the same view gives the
// same answer everywhere.
//
// Balance: k mod n members get room for ⌈k/n⌉ shards, the others for
// ⌊k/n⌋, so the most and least loaded members differ by at most one shard.
// The spare slots go first to members that own more than ⌊k/n⌋ now (each
// of them keeps one shard it would otherwise give away), then by a hash of
// the identity. How much more a member owns does not count: while the
// members of a leave claim the leaver's shards, one after the other and on
// views that lag, that number changes from view to view, and a spare slot
// that followed it would move with it and take a shard from a member that
// had already filled up.
//
// Stickiness: a member keeps the shards it owns, up to its room, preferring
// those it scores highest; only the rest move. So a join moves about k/(n+1)
// shards (what the members above their new room give up) and a leave moves
// only the leaver's shards.
//
// Placement is rendezvous (highest random weight) hashing with bounded
// loads: every (shard, member) pair has a pseudo-random score, and the
// shards that move are placed in order of falling score on members that
// still have room. With no current owners that is the whole assignment.
//
// members must be distinct; their order does not matter. Assign returns nil
// when members is empty or k is not positive.
func Assign(k int, members []string, current []int) []int {
	n := len(members)
	if n == 0 || k <= 0 {
		return nil
	}
	hs := make([]uint64, n)
	for m, id := range members {
		hs[m] = hashString(id)
	}
	owners := make([]int, k)
	owned := make([][]int, n)
	for s := range k {
		owners[s] = -1
		if s < len(current) && current[s] >= 0 && current[s] < n {
			owned[current[s]] = append(owned[current[s]], s)
		}
	}
	room := capacities(k, members, hs, owned)
	// Keep: each member keeps its best-scoring current shards up to its room.
	for m := range n {
		slices.SortFunc(owned[m], func(a, b int) int { return cmpScore(mix(hs[m], uint64(b)), mix(hs[m], uint64(a)), b, a) })
		for _, s := range owned[m][:min(room[m], len(owned[m]))] {
			owners[s] = m
			room[m]--
		}
	}
	// Place the rest by falling pair score on members with room.
	type pair struct {
		score         uint64
		shard, member int
	}
	var pairs []pair
	for s := range k {
		if owners[s] >= 0 {
			continue
		}
		for m := range n {
			if room[m] > 0 {
				pairs = append(pairs, pair{mix(hs[m], uint64(s)), s, m})
			}
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := cmpScore(b.score, a.score, 0, 0); c != 0 {
			return c
		}
		if members[a.member] != members[b.member] { // ties: by identity, never by input order
			if members[a.member] < members[b.member] {
				return -1
			}
			return 1
		}
		return a.shard - b.shard
	})
	for _, p := range pairs {
		if owners[p.shard] < 0 && room[p.member] > 0 {
			owners[p.shard] = p.member
			room[p.member]--
		}
	}
	return owners
}

func cmpScore(a, b uint64, sa, sb int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return sa - sb
}

// capacities gives each member ⌊k/n⌋ shards, and one more to k mod n
// members: those that own more than ⌊k/n⌋ now first, then by the hash of
// their identity.
func capacities(k int, members []string, hs []uint64, owned [][]int) []int {
	n := len(members)
	room := make([]int, n)
	order := make([]int, n)
	for i := range n {
		room[i] = k / n
		order[i] = i
	}
	over := func(m int) bool { return len(owned[m]) > k/n }
	slices.SortFunc(order, func(a, b int) int {
		if oa, ob := over(a), over(b); oa != ob {
			if oa {
				return -1
			}
			return 1
		}
		if hs[a] != hs[b] {
			return cmpScore(hs[a], hs[b], 0, 0)
		}
		if members[a] < members[b] {
			return -1
		}
		return 1
	})
	for _, i := range order[:k%n] {
		room[i]++
	}
	return room
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// mix scores the pair (member hash, shard) with a 64-bit finaliser
// (splitmix64), so that members' preference orders over shards are
// independent of each other.
func mix(member, shard uint64) uint64 {
	z := member ^ (shard+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
