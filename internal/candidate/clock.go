package candidate

import (
	"time"

	"k8s.io/utils/clock"
)

// RateClock is a clock.Clock whose time runs Rate times as fast as real
// time: with Rate 0.5 a one-second timer fires after two real seconds and Now
// advances half a second per real second. It models a machine whose clock
// runs fast or slow; offsets are irrelevant to the elector (see lease/doc.go),
// rates are not. The times delivered on timer channels are real times; the
// elector ignores them.
type RateClock struct {
	Rate float64
	base time.Time
}

var _ clock.Clock = (*RateClock)(nil)

// NewRateClock returns a clock running at rate (> 0) times real time.
func NewRateClock(rate float64) *RateClock {
	return &RateClock{Rate: rate, base: time.Now()}
}

// Now returns the skewed time. Its monotonic reading comes from the base, so
// differences of two Now values are skewed durations.
func (c *RateClock) Now() time.Time {
	return c.base.Add(time.Duration(float64(time.Since(c.base)) * c.Rate))
}

// Since returns the skewed time elapsed since t (a value from Now).
func (c *RateClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// real converts a skewed duration to real time.
func (c *RateClock) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / c.Rate)
}

// After returns a channel that receives once d of skewed time has passed.
func (c *RateClock) After(d time.Duration) <-chan time.Time { return time.After(c.real(d)) }

// NewTimer returns a timer for d of skewed time.
func (c *RateClock) NewTimer(d time.Duration) clock.Timer {
	return &rateTimer{c: c, t: time.NewTimer(c.real(d))}
}

// Sleep sleeps for d of skewed time.
func (c *RateClock) Sleep(d time.Duration) { time.Sleep(c.real(d)) }

// Tick returns a channel ticking every d of skewed time.
func (c *RateClock) Tick(d time.Duration) <-chan time.Time { return time.Tick(c.real(d)) }

type rateTimer struct {
	c *RateClock
	t *time.Timer
}

func (t *rateTimer) C() <-chan time.Time        { return t.t.C }
func (t *rateTimer) Stop() bool                 { return t.t.Stop() }
func (t *rateTimer) Reset(d time.Duration) bool { return t.t.Reset(t.c.real(d)) }
