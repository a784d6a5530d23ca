package main

import "testing"

// TestOvertakesCountOnlyCertainOrder: an acquisition is an overtake only
// when a waiter still waiting had created its entry before the acquirer's
// Lock call began; a call that began while another's create was in flight
// is not ordered against it.
func TestOvertakesCountOnlyCertainOrder(t *testing.T) {
	var q queueOrder
	q.beginAt(1, 5)
	q.beginAt(2, 15) // began before 1's create returned: unordered
	q.created(1, 20)
	q.created(2, 30)
	q.acquired(2)
	if n := q.overtakes(); n != 0 {
		t.Fatalf("2 began before 1's entry existed, yet %d overtakes counted", n)
	}
	q.beginAt(3, 21) // began after 1's create returned: behind 1
	q.created(3, 40)
	q.acquired(3)
	if n := q.overtakes(); n != 1 {
		t.Fatalf("3 queued behind 1 and acquired first: %d overtakes counted, want 1", n)
	}
	q.acquired(1)
	q.beginAt(4, 50) // takes the lock without queueing
	q.acquired(4)
	if n := q.overtakes(); n != 1 {
		t.Fatalf("nobody waited when 4 took the lock: %d overtakes, want still 1", n)
	}
}
