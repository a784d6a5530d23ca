package candidate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Term is one leadership term of one candidate process, on the shared
// monotonic clock: from its "start" event to its "stop" event, or, if it
// never logged one (killed), to its "exited" event; Open when neither came.
type Term struct {
	ID, Impl   string
	Token      string
	Start, End int64
	Open       bool
	// Cause is why the term ended, as its process logged it.
	Cause string
	// Shard is the shard of a shards member's term, "" for others.
	Shard string
}

// Recorder collects events and turns them into terms. Not safe for
// concurrent use.
type Recorder struct {
	terms []Term
	open  map[string]int // id -> index of its open term
}

// Add records one event.
func (r *Recorder) Add(ev Event) {
	if r.open == nil {
		r.open = map[string]int{}
	}
	shard := ""
	if ev.Shard != nil {
		shard = strconv.Itoa(*ev.Shard)
	}
	key := ev.ID + "\x00" + shard
	switch ev.Ev {
	case "start":
		r.close(key, ev.Mono, "")
		r.open[key] = len(r.terms)
		r.terms = append(r.terms, Term{ID: ev.ID, Impl: ev.Impl, Token: ev.Token, Start: ev.Mono, Open: true, Shard: shard})
	case "stop":
		r.close(key, ev.Mono, ev.Cause)
	case "exited": // every open term of the process
		for k := range r.open {
			if strings.HasPrefix(k, ev.ID+"\x00") {
				r.close(k, ev.Mono, ev.Cause)
			}
		}
	}
}

func (r *Recorder) close(key string, at int64, cause string) {
	if i, ok := r.open[key]; ok {
		r.terms[i].End, r.terms[i].Open, r.terms[i].Cause = at, false, cause
		delete(r.open, key)
	}
}

// Terms returns the terms in order of their start; open terms end at now.
func (r *Recorder) Terms(now int64) []Term {
	out := append([]Term(nil), r.terms...)
	for i := range out {
		if out[i].Open {
			out[i].End = now
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// Overlaps returns a description of every pair of terms of different
// candidates that overlap in time.
func Overlaps(terms []Term) []string {
	var out []string
	for i, a := range terms {
		for _, b := range terms[i+1:] {
			if b.Start >= a.End {
				continue
			}
			if a.ID != b.ID {
				out = append(out, fmt.Sprintf("%s (%s, token %s) led until %d, but %s (%s, token %s) started at %d: overlap %.3fms",
					a.ID, a.Impl, a.Token, a.End, b.ID, b.Impl, b.Token, b.Start, float64(min(a.End, b.End)-b.Start)/1e6))
			}
		}
	}
	return out
}

// TokensBackwards returns every place where a Leasehold term's (elector or
// lock, Go or Python) token is not above the token of the Leasehold term
// before it.
func TokensBackwards(terms []Term) []string {
	var out []string
	for _, b := range TokenRegressions(terms) {
		out = append(out, b.Msg)
	}
	return out
}

// TokenRegression is a Leasehold term whose token is not a number or not
// above the token of the Leasehold term before it; Msg says which.
type TokenRegression struct {
	Term Term
	Msg  string
}

// TokenRegressions is TokensBackwards with the terms at fault, in order of
// their start; client-go terms, which have no token, are skipped.
func TokenRegressions(terms []Term) []TokenRegression {
	var out []TokenRegression
	var prev uint64
	var prevID string
	for _, t := range terms {
		if t.Impl == "client-go" {
			continue
		}
		n, err := strconv.ParseUint(t.Token, 10, 64)
		if err != nil {
			out = append(out, TokenRegression{t, fmt.Sprintf("%s: bad token %q", t.ID, t.Token)})
			continue
		}
		if n <= prev {
			out = append(out, TokenRegression{t, fmt.Sprintf("%s's token %d is not above %s's %d", t.ID, n, prevID, prev)})
		}
		prev, prevID = n, t.ID
	}
	return out
}
