package main

import (
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"single", []time.Duration{7}, 50, 7},
		{"single p99", []time.Duration{7}, 99, 7},
		{"two p50 is the lower", []time.Duration{1, 2}, 50, 1},
		{"two p99 is the upper", []time.Duration{1, 2}, 99, 2},
		{"three p50", []time.Duration{1, 2, 3}, 50, 2},
		{"hundred p50", hundred, 50, 50 * time.Millisecond},
		{"hundred p99", hundred, 99, 99 * time.Millisecond},
		{"hundred p100", hundred, 100, 100 * time.Millisecond},
		{"tiny p clamps to the first", hundred, 0.001, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	in := []time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 1500 * time.Microsecond, -2 * time.Millisecond}
	orig := slices.Clone(in)
	got := summarize(in)
	want := summary{N: 4, P50: 1.5, P99: 30, Max: 30}
	if got != want {
		t.Errorf("summarize(%v) = %+v, want %+v", in, got, want)
	}
	if !slices.Equal(in, orig) {
		t.Errorf("summarize modified its input: %v, was %v", in, orig)
	}
	if got := summarize(nil); got != (summary{}) {
		t.Errorf("summarize(nil) = %+v, want the zero summary", got)
	}
}

func TestMS(t *testing.T) {
	if got := ms(12345678 * time.Nanosecond); got != 12.346 {
		t.Errorf("ms(12.345678ms) = %v, want 12.346", got)
	}
}
