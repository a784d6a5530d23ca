package candidate

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestRateClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := NewRateClock(0.5)
		fast := NewRateClock(2)
		s0, f0 := slow.Now(), fast.Now()
		time.Sleep(4 * time.Second)
		if got := slow.Since(s0); got != 2*time.Second {
			t.Errorf("slow clock advanced %v in 4s, want 2s", got)
		}
		if got := fast.Since(f0); got != 8*time.Second {
			t.Errorf("fast clock advanced %v in 4s, want 8s", got)
		}
		start := time.Now()
		tm := slow.NewTimer(time.Second)
		<-tm.C()
		if got := time.Since(start); got != 2*time.Second {
			t.Errorf("a 1s timer of the slow clock fired after %v, want 2s", got)
		}
		tm.Reset(3 * time.Second)
		start = time.Now()
		<-tm.C()
		if got := time.Since(start); got != 6*time.Second {
			t.Errorf("reset to 3s, the slow clock's timer fired after %v, want 6s", got)
		}
		start = time.Now()
		<-fast.After(time.Second)
		if got := time.Since(start); got != 500*time.Millisecond {
			t.Errorf("After(1s) of the fast clock fired after %v, want 500ms", got)
		}
	})
}
