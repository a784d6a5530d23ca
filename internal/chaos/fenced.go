package chaos

import (
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/leasehold/leasehold/internal/candidate"
)

// Fenced is a resource guarded by fencing tokens: it accepts a write with
// token T only if T is at least the highest token it has accepted, and
// rejects older tokens. Safe for concurrent use.
type Fenced struct {
	mu      sync.Mutex
	highest uint64
	writes  int
}

// Write applies a write with token and reports whether it was accepted; a
// rejected write returns an error naming the newer token.
func (f *Fenced) Write(token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if token < f.highest {
		return fmt.Errorf("token %d is older than %d", token, f.highest)
	}
	f.highest = token
	f.writes++
	return nil
}

// Highest returns the highest token accepted so far.
func (f *Fenced) Highest() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.highest
}

// FenceResult is what replaying a term log against a Fenced resource found.
type FenceResult struct {
	// Stale lists writes made at the start of a term and rejected: a new
	// holder whose token is older than one already used. This is a safety
	// violation (the token order does not follow the term order).
	Stale []string
	// Fenced lists writes made at the end of a term and rejected: the holder
	// kept acting after a holder with a newer token had written. The resource
	// protected itself; each one goes with an overlap of the two terms.
	Fenced []string
	// Writes is the number of writes replayed.
	Writes int
}

// ReplayFenced derives writes from the Leasehold terms and replays them, in
// time order, against a fresh Fenced resource. The candidates do not write to
// a resource themselves; instead each term is taken to write with its token
// twice: when it starts (its first act as holder) and when it ends (the last
// instant its work still ran: its own "stop", or its process's exit). Terms
// of other implementations have no fencing token and are skipped.
func ReplayFenced(terms []candidate.Term) FenceResult {
	type write struct {
		at    int64
		token uint64
		term  candidate.Term
		end   bool
	}
	var ws []write
	var res FenceResult
	for _, t := range terms {
		if t.Impl != "leasehold" {
			continue
		}
		n, err := strconv.ParseUint(t.Token, 10, 64)
		if err != nil {
			res.Stale = append(res.Stale, fmt.Sprintf("%s: bad token %q", t.ID, t.Token))
			continue
		}
		ws = append(ws, write{at: t.Start, token: n, term: t}, write{at: t.End, token: n, term: t, end: true})
	}
	// Starts before ends at the same instant: a handover at one instant is
	// not a late write.
	sort.SliceStable(ws, func(i, j int) bool {
		if ws[i].at != ws[j].at {
			return ws[i].at < ws[j].at
		}
		return !ws[i].end && ws[j].end
	})
	var f Fenced
	for _, w := range ws {
		err := f.Write(w.token)
		if err == nil {
			continue
		}
		if w.end {
			res.Fenced = append(res.Fenced, fmt.Sprintf("%s's last write at %d rejected: %v", w.term.ID, w.at, err))
		} else {
			res.Stale = append(res.Stale, fmt.Sprintf("%s started at %d with a stale token: %v", w.term.ID, w.at, err))
		}
	}
	res.Writes = len(ws)
	return res
}
