package holder

import (
	"context"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Signal is a broadcast change signal: C returns a channel that the next
// Notify closes. Any number of goroutines may wait on it, and Notify never
// blocks. The zero Signal is ready to use.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns the channel closed at the next Notify.
func (s *Signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify wakes every waiter on the current channel.
func (s *Signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
	}
	s.ch = make(chan struct{})
}

// Relay forwards every change of obs to s. It takes obs's change channel
// now, before it returns, and gives back the loop to run on a goroutine
// until ctx ends. Call it before obs.Run starts.
//
// Invariant 1 (no lost wake-ups): a waiter takes s.C() and then reads the
// states it acts on, so every change after that read must close that channel
// or a later one. The loop holds a change channel of obs no newer than any
// state a waiter read after the last Notify, and on each change it takes
// obs's next channel *before* it notifies: a change in between closes that
// next channel at once.
func (s *Signal) Relay(obs *Observer) func(ctx context.Context) {
	_, changed := obs.State()
	return func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				_, changed = obs.State() // invariant 1: the next channel first
				s.Notify()
			}
		}
	}
}

// Wait blocks until changed is closed, d has passed on clk (unless d is
// negative: no timeout) or ctx ends, and reports whether d elapsed. It
// returns ctx.Err() when ctx ends first.
func Wait(ctx context.Context, clk clock.Clock, changed <-chan struct{}, d time.Duration) (bool, error) {
	var timeout <-chan time.Time
	if d >= 0 {
		t := clk.NewTimer(d)
		defer t.Stop()
		timeout = t.C()
	}
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-changed:
		return false, nil
	case <-timeout:
		return true, nil
	}
}
