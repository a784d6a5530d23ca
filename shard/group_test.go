package shard_test

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestBalanceAndSingleOwner: N members of one group split K shards with
// max−min ≤ 1 and every shard run by exactly one member.
func TestBalanceAndSingleOwner(t *testing.T) {
	for _, tc := range []struct{ k, n int }{{16, 1}, {16, 3}, {256, 3}, {256, 10}, {1024, 10}} {
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
