package main

import (
	"testing"
	"time"
)

func TestBackoffDoublesAndResetsAfterAHealthyRun(t *testing.T) {
	b := backoff{initial: time.Second, max: 8 * time.Second}
	short := 100 * time.Millisecond
	for i, want := range []time.Duration{1, 2, 4, 8, 8} {
		if got := b.after(short); got != want*time.Second {
			t.Fatalf("exit %d after a short run: delay %v, want %v", i+1, got, want*time.Second)
		}
	}
	// Ran as long as the cap: healthy, so the sequence starts over.
	if got := b.after(8 * time.Second); got != time.Second {
		t.Errorf("after a run of the cap: delay %v, want 1s", got)
	}
	if got := b.after(short); got != 2*time.Second {
		t.Errorf("next short run: delay %v, want 2s", got)
	}
}

func TestRestartPolicy(t *testing.T) {
	for _, c := range []struct {
		policy restartPolicy
		code   int
		want   bool
	}{
		{restartNever, 1, false}, {restartNever, 0, false},
		{restartOnFailure, 1, true}, {restartOnFailure, 137, true}, {restartOnFailure, 0, false},
		{restartAlways, 0, true}, {restartAlways, 3, true},
	} {
		if got := c.policy.restarts(c.code); got != c.want {
			t.Errorf("%s, status %d: restarts %v, want %v", c.policy, c.code, got, c.want)
		}
	}
	var p restartPolicy
	if err := p.Set("sometimes"); err == nil {
		t.Error(`Set("sometimes") accepted`)
	}
}
