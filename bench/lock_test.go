package main

import "testing"

// TestOvertakesCountOnlyCertainOrder: an acquisition is an overtake only
// when a waiter still waiting had created its entry before the acquirer's
// create was sent; creates in flight together are not ordered.
func TestOvertakesCountOnlyCertainOrder(t *testing.T) {
	var q queueOrder
	q.begin(1)
	q.begin(2)
	q.created(1, 10, 20)
	q.created(2, 15, 25) // sent before 1's create returned: unordered
	q.acquired(2)
	if n := q.overtakes(); n != 0 {
		t.Fatalf("2's create overlapped 1's, yet %d overtakes counted", n)
	}
	q.begin(3)
	q.created(3, 30, 40) // sent after 1's create returned: behind 1
	q.acquired(3)
	if n := q.overtakes(); n != 1 {
		t.Fatalf("3 queued behind 1 and acquired first: %d overtakes counted, want 1", n)
	}
	q.acquired(1)
	q.begin(4) // takes the lock without queueing
	q.acquired(4)
	if n := q.overtakes(); n != 1 {
		t.Fatalf("nobody waited when 4 took the lock: %d overtakes, want still 1", n)
	}
}
