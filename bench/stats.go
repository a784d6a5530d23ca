package main

import (
	"math"
	"slices"
	"time"
)

// summary is the distribution of a set of durations, in milliseconds.
type summary struct {
	N   int
	P50 float64
	P99 float64
	Max float64
}

// summarize returns the nearest-rank p50, p99 and maximum of ds. It does not
// modify ds. The zero summary describes an empty set.
func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return summary{
		N:   len(sorted),
		P50: ms(percentile(sorted, 50)),
		P99: ms(percentile(sorted, 99)),
		Max: ms(sorted[len(sorted)-1]),
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, which must be sorted ascending and not empty: the smallest value
// such that at least p% of the values are less than or equal to it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms converts d to milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

// round3 rounds x to three decimals.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// latency is the JSON form of a summary, embedded in results.
type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func (s summary) latency() latency { return latency{N: s.N, P50: s.P50, P99: s.P99, Max: s.Max} }
