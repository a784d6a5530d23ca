package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
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

// Write is one write the Store received.
type Write struct {
	ID string
	// Fence is the writer's fencing token; empty for writers without one
	// (client-go), whose writes a resource cannot check.
	Fence string
	// Sent is when the writer decided to write, Recv when the resource
	// applied or rejected it (CLOCK_MONOTONIC ns).
	Sent, Recv int64
	Accepted   bool
	Reason     string
	// Shard is the shard a shards member wrote for ("" for others): each
	// shard is a resource of its own, with its own highest token.
	Shard string
}

// Store is the fenced resource of a run: an HTTP endpoint on loopback to
// which every leader writes directly (not through its fault proxy: the
// resource is elsewhere than the apiserver). With Fencing on, a write whose
// token is older than one already accepted is rejected (HTTP 409); writes
// without a token are always accepted. It logs every write for the checker.
type Store struct {
	fencing bool
	fenced  Fenced
	shards  map[string]*Fenced // per shard, for shards members
	ln      net.Listener
	srv     *http.Server
	done    chan struct{}

	mu     sync.Mutex
	writes []Write
}

// NewStore starts a Store on a free loopback port.
func NewStore(fencing bool) (*Store, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Store{fencing: fencing, ln: ln, done: make(chan struct{})}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// URL is where candidates write (their --write-url).
func (s *Store) URL() string { return "http://" + s.ln.Addr().String() + "/write" }

// Close stops the server and waits for it.
func (s *Store) Close() error {
	err := s.srv.Shutdown(context.Background())
	<-s.done
	return err
}

// Writes returns the log of writes, in the order they were received.
func (s *Store) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Write(nil), s.writes...)
}

func (s *Store) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	wr := Write{ID: q.Get(candidate.WriteID), Fence: q.Get(candidate.WriteFence), Shard: q.Get(candidate.WriteShard)}
	sent, err := strconv.ParseInt(q.Get(candidate.WriteSent), 10, 64)
	if wr.ID == "" || err != nil {
		http.Error(w, "write needs id and sent", http.StatusBadRequest)
		return
	}
	wr.Sent = sent
	var tok uint64
	if wr.Fence != "" {
		if tok, err = strconv.ParseUint(wr.Fence, 10, 64); err != nil {
			http.Error(w, fmt.Sprintf("bad fence %q: %v", wr.Fence, err), http.StatusBadRequest)
			return
		}
	}
	// Decide, stamp and log under one lock, so that the log's order is the
	// order in which the resource took its decisions.
	var ferr error
	s.mu.Lock()
	if wr.Fence != "" && s.fencing {
		f := &s.fenced
		if wr.Shard != "" {
			if s.shards == nil {
				s.shards = map[string]*Fenced{}
			}
			if s.shards[wr.Shard] == nil {
				s.shards[wr.Shard] = &Fenced{}
			}
			f = s.shards[wr.Shard]
		}
		ferr = f.Write(tok)
	}
	wr.Recv = candidate.Mono()
	wr.Accepted = ferr == nil
	if ferr != nil {
		wr.Reason = ferr.Error()
	}
	s.writes = append(s.writes, wr)
	s.mu.Unlock()
	if ferr != nil {
		http.Error(w, ferr.Error(), http.StatusConflict)
	}
}

// FenceResult is what the checker found in a Store's log.
type FenceResult struct {
	// Stale lists accepted writes made by a holder after a newer holder (one
	// whose term started later) had already written: the resource was
	// changed by a process that was no longer the leader. A safety
	// violation.
	Stale []string
	// Fenced lists rejected writes: a holder kept acting after a newer holder
	// had written, and the token check stopped it. Each goes with an overlap
	// (often a frozen holder's).
	Fenced []string
	// Writes and Accepted count the writes.
	Writes, Accepted int
	// Orphans are writes that fall in no term of their writer (a harness
	// problem).
	Orphans int
	// StaleBy counts the stale writes by the implementation at fault: the
	// writer's, unless the newer holder sent no token (client-go), in which
	// case no resource could have rejected the write and the newer holder's
	// implementation is blamed. Those are also counted in Unfenceable.
	StaleBy     map[string]int
	Unfenceable int
}

// CheckWrites judges the Store's log against the terms: each write belongs
// to its writer's term that started last before the write was sent; an
// accepted write is stale when a term that started later than its own had
// already had a write accepted.
func CheckWrites(terms []candidate.Term, writes []Write) FenceResult {
	byID := map[string][]candidate.Term{}
	for _, t := range terms {
		byID[t.ID] = append(byID[t.ID], t)
	}
	for _, ts := range byID {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Start < ts[j].Start })
	}
	termOf := func(w Write) (candidate.Term, bool) {
		ts := byID[w.ID]
		i := sort.Search(len(ts), func(i int) bool { return ts[i].Start > w.Sent })
		if i == 0 {
			return candidate.Term{}, false
		}
		return ts[i-1], true
	}
	ws := append([]Write(nil), writes...)
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Recv < ws[j].Recv })
	res := FenceResult{StaleBy: map[string]int{}}
	var newest candidate.Term // term with the latest start among accepted writes so far
	seen, newestFenced := false, false
	for _, w := range ws {
		res.Writes++
		t, ok := termOf(w)
		if !ok {
			res.Orphans++
			continue
		}
		if !w.Accepted {
			res.Fenced = append(res.Fenced, fmt.Sprintf("%s's write (token %s, sent %d) rejected at %d: %s", w.ID, w.Fence, w.Sent, w.Recv, w.Reason))
			continue
		}
		res.Accepted++
		if seen && newest.Start > t.Start && newest.ID != t.ID {
			fence := w.Fence
			if fence == "" {
				fence = "none"
			}
			msg := fmt.Sprintf("%s's write (%s, term from %d, token %s) accepted at %d after %s (%s, term from %d) had written",
				w.ID, t.Impl, t.Start, fence, w.Recv, newest.ID, newest.Impl, newest.Start)
			blame := t.Impl
			if w.Fence != "" && !newestFenced {
				msg += " without a token: unfenceable"
				blame = newest.Impl
				res.Unfenceable++
			}
			res.Stale = append(res.Stale, msg)
			res.StaleBy[blame]++
			continue
		}
		if !seen || t.Start > newest.Start {
			newest, seen, newestFenced = t, true, w.Fence != ""
		}
	}
	return res
}
