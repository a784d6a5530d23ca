package main

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
)

// TestEntryChurnDeletesTheOldestAndCreatesANewOne: each cycle of
// handover-floor deletes the oldest entry and creates one of a new name, so
// the number of entries stays put and every cycle costs two writes.
func TestEntryChurnDeletesTheOldestAndCreatesANewOne(t *testing.T) {
	cs := k8sfake.NewClientset()
	leases := cs.CoordinationV1().Leases("ns")
	e := &entryChurn{leases: leases, prefix: "x-q-"}
	churn(t, e, 3)
	l, err := leases.List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, it := range l.Items {
		names = append(names, it.Name)
	}
	if !slices.Equal(names, []string{"x-q-3"}) {
		t.Errorf("entries left %v, want only the newest, x-q-3", names)
	}
	var creates, deletes int
	for _, a := range cs.Actions() {
		switch a.GetVerb() {
		case "create":
			creates++
		case "delete":
			deletes++
		}
	}
	if creates != 4 || deletes != 3 {
		t.Errorf("%d creates and %d deletes, want 4 and 3 (one of each per cycle)", creates, deletes)
	}
}

// TestEntryChurnMixReadsAsALockHandoverCycle: with mix, each cycle also
// makes two lists and opens four watches, and stop ends every watch.
func TestEntryChurnMixReadsAsALockHandoverCycle(t *testing.T) {
	cs := k8sfake.NewClientset()
	e := &entryChurn{leases: cs.CoordinationV1().Leases("ns"), lock: "x", prefix: "x-q-", mix: true}
	churn(t, e, 3)
	count := map[string]int{}
	for _, a := range cs.Actions() {
		count[a.GetVerb()]++
	}
	if count["list"] != 6 || count["watch"] != 12 || count["create"] != 4 || count["delete"] != 3 {
		t.Errorf("requests %v, want per cycle 2 lists, 4 watches, 1 create, 1 delete (and the first create)", count)
	}
	e.mu.Lock()
	open := len(e.cycled)
	e.mu.Unlock()
	if open != 8 {
		t.Errorf("%d cycled watches open, want the last two cycles' 8", open)
	}
	e.stop() // returns only once every watch's reader has ended
	if len(e.cycled) != 0 {
		t.Errorf("%d watches left after stop", len(e.cycled))
	}
}

// churn creates e's first entry, runs cycles cycles and waits for them.
func churn(t *testing.T, e *entryChurn, cycles int) {
	t.Helper()
	if err := e.create(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range cycles {
		if err := e.cycle(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.wait(); err != nil {
		t.Fatal(err)
	}
}
