package chaos

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
)

// Window is an interval on the shared monotonic clock (nanoseconds).
type Window struct{ From, To int64 }

// Report is what the checker found in one run's terms.
type Report struct {
	Terms int
	// Overlaps are pairs of terms of different processes that overlap in
	// time and are not excused by a pause: safety violations.
	Overlaps []string
	// PausedOverlaps overlap only because the earlier holder was frozen
	// (SIGSTOP) and could log its "stop" only once thawed. lease/doc.go lists
	// this as a non-guarantee; the fencing token is the protection, and the
	// Store's log shows whether the frozen holder's late writes were rejected.
	PausedOverlaps []string
	// TokensBackwards is candidate.TokensBackwards (Leasehold terms, Go and
	// Python, only).
	TokensBackwards []string
	// Fence is what the fenced resource saw (CheckWrites).
	Fence FenceResult
	// Blame counts the violations by the implementation of the process at
	// fault: for an overlap, the earlier holder (it outlived its term); for
	// a stale write, the writer, or the newer holder when that one sent no
	// token (FenceResult.StaleBy); for a token going backwards, the term
	// whose token did not grow. Keys are the implementations the
	// candidates report (Event.Impl): leasehold, lock, client-go,
	// leasehold-python. In a mixed fleet this tells whose safety broke.
	Blame map[string]int
	// MaxNoLeader is the longest time, after the last fault healed, with no
	// term open.
	MaxNoLeader time.Duration
	// MaxNoLeaderAll is the longest time with no term open over the whole
	// run (faults included), for information.
	MaxNoLeaderAll time.Duration
	// Starved lists, for a lock fleet, the processes running at the end that
	// saw more than twice the fleet's size of other processes' terms begin,
	// after the last fault healed, without one of their own in between: a
	// FIFO queue serves a waiter within the fleet's size.
	Starved []string
}

// Starved returns, for each process of alive, a description if it saw more
// than limit terms of other processes start within w without a term of its
// own in between.
func Starved(terms []candidate.Term, alive []string, w Window, limit int) []string {
	sorted := append([]candidate.Term(nil), terms...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })
	var out []string
	for _, id := range alive {
		others, worst := 0, 0
		for _, t := range sorted {
			if t.Start < w.From || t.Start > w.To {
				continue
			}
			if t.ID == id {
				others = 0
				continue
			}
			others++
			worst = max(worst, others)
		}
		if worst > limit {
			out = append(out, fmt.Sprintf("%s waited while %d terms of others began (limit %d)", id, worst, limit))
		}
	}
	return out
}

// Violations lists every safety violation: unexcused overlaps, tokens going
// backwards and stale writes.
func (r Report) Violations() []string {
	var out []string
	for _, s := range r.Overlaps {
		out = append(out, "overlap: "+s)
	}
	for _, s := range r.TokensBackwards {
		out = append(out, "token backwards: "+s)
	}
	for _, s := range r.Fence.Stale {
		out = append(out, "stale write: "+s)
	}
	return out
}

// Check checks terms (as from candidate.Recorder.Terms, closed only by each
// process's own "stop" or exit, so a frozen holder's term lasts until it
// thaws and logs) and the writes the fenced resource received. pauses gives,
// per process id, the windows during which it was stopped with SIGSTOP; an
// overlap is excused when the earlier term's process was frozen when the
// later term started and it ended its term within slack of being thawed.
// Liveness is measured over live.
func Check(terms []candidate.Term, writes []Write, pauses map[string][]Window, slack time.Duration, live Window) Report {
	return CheckRun(terms, writes, pauses, slack, live, live)
}

// CheckRun is Check that also measures MaxNoLeaderAll over whole. Terms and
// writes of shards members are checked per shard (each shard is a lease of
// its own and a resource of its own); MaxNoLeader is then the longest time
// any one shard had no owner.
func CheckRun(terms []candidate.Term, writes []Write, pauses map[string][]Window, slack time.Duration, live, whole Window) Report {
	if !slices.ContainsFunc(terms, func(t candidate.Term) bool { return t.Shard != "" }) {
		return checkOne(terms, writes, pauses, slack, live, whole)
	}
	byShard := map[string][]candidate.Term{}
	for _, t := range terms {
		byShard[t.Shard] = append(byShard[t.Shard], t)
	}
	wByShard := map[string][]Write{}
	for _, w := range writes {
		wByShard[w.Shard] = append(wByShard[w.Shard], w)
	}
	r := Report{Blame: map[string]int{}, Fence: FenceResult{StaleBy: map[string]int{}}}
	shards := slices.Sorted(maps.Keys(byShard))
	for _, s := range shards {
		one := checkOne(byShard[s], wByShard[s], pauses, slack, live, whole)
		p := "shard " + s + ": "
		r.Terms += one.Terms
		r.Overlaps = append(r.Overlaps, prefixed(p, one.Overlaps)...)
		r.PausedOverlaps = append(r.PausedOverlaps, prefixed(p, one.PausedOverlaps)...)
		r.TokensBackwards = append(r.TokensBackwards, prefixed(p, one.TokensBackwards)...)
		r.Fence.Stale = append(r.Fence.Stale, prefixed(p, one.Fence.Stale)...)
		r.Fence.Fenced = append(r.Fence.Fenced, prefixed(p, one.Fence.Fenced)...)
		r.Fence.Writes += one.Fence.Writes
		r.Fence.Accepted += one.Fence.Accepted
		r.Fence.Orphans += one.Fence.Orphans
		r.Fence.Unfenceable += one.Fence.Unfenceable
		for k, v := range one.Fence.StaleBy {
			r.Fence.StaleBy[k] += v
		}
		for k, v := range one.Blame {
			r.Blame[k] += v
		}
		r.MaxNoLeader = max(r.MaxNoLeader, one.MaxNoLeader)
		r.MaxNoLeaderAll = max(r.MaxNoLeaderAll, one.MaxNoLeaderAll)
	}
	return r
}

func prefixed(p string, msgs []string) []string {
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, p+m)
	}
	return out
}

func checkOne(terms []candidate.Term, writes []Write, pauses map[string][]Window, slack time.Duration, live, whole Window) Report {
	r := Report{Terms: len(terms), Blame: map[string]int{}}
	sorted := append([]candidate.Term(nil), terms...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })
	for i, a := range sorted {
		for _, b := range sorted[i+1:] {
			if b.Start >= a.End || a.ID == b.ID {
				continue
			}
			msg := fmt.Sprintf("%s (%s, token %s) led until %d, but %s (%s, token %s) started at %d: overlap %.3fms",
				a.ID, a.Impl, a.Token, a.End, b.ID, b.Impl, b.Token, b.Start, float64(min(a.End, b.End)-b.Start)/1e6)
			if excused(a, b, pauses[a.ID], slack) {
				r.PausedOverlaps = append(r.PausedOverlaps, msg)
			} else {
				r.Overlaps = append(r.Overlaps, msg)
				r.Blame[a.Impl]++
			}
		}
	}
	for _, b := range candidate.TokenRegressions(sorted) {
		r.TokensBackwards = append(r.TokensBackwards, b.Msg)
		r.Blame[b.Term.Impl]++
	}
	r.Fence = CheckWrites(sorted, writes)
	for impl, n := range r.Fence.StaleBy {
		r.Blame[impl] += n
	}
	r.MaxNoLeader = maxGap(sorted, live)
	r.MaxNoLeaderAll = maxGap(sorted, whole)
	return r
}

func excused(a, b candidate.Term, pauses []Window, slack time.Duration) bool {
	for _, p := range pauses {
		if p.From <= b.Start && b.Start <= p.To+int64(slack) && a.End <= p.To+int64(slack) && a.Start < p.From {
			return true
		}
	}
	return false
}

// maxGap returns the longest part of w covered by no term.
func maxGap(terms []candidate.Term, w Window) time.Duration {
	if w.To <= w.From {
		return 0
	}
	var longest int64
	at := w.From              // covered up to here
	for _, t := range terms { // sorted by start
		if t.End <= at {
			continue
		}
		if t.Start > at {
			longest = max(longest, min(t.Start, w.To)-at)
		}
		at = max(at, t.End)
		if at >= w.To {
			break
		}
	}
	if at < w.To {
		longest = max(longest, w.To-at)
	}
	return time.Duration(longest)
}
