package chaos

import (
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
)

func TestFencedRejectsOlderTokens(t *testing.T) {
	var f Fenced
	for _, tok := range []uint64{5, 5, 7} {
		if err := f.Write(tok); err != nil {
			t.Fatalf("write %d: %v", tok, err)
		}
	}
	if err := f.Write(6); err == nil {
		t.Fatal("write with token 6 after 7 accepted")
	}
	if f.Highest() != 7 {
		t.Fatalf("highest = %d, want 7", f.Highest())
	}
}

func terms(evs ...candidate.Event) []candidate.Term {
	var r candidate.Recorder
	for _, ev := range evs {
		r.Add(ev)
	}
	return r.Terms(10_000)
}

func ev(kind, id, impl, token string, mono int64) candidate.Event {
	return candidate.Event{Ev: kind, ID: id, Impl: impl, Token: token, Mono: mono}
}

func wr(id, fence string, at int64, accepted bool) Write {
	return Write{ID: id, Fence: fence, Sent: at, Recv: at + 1, Accepted: accepted}
}

// TestCheckerFindsViolations is the control of the checker itself: it must
// fail term logs and write logs that break the rules, and pass clean ones.
// (TestIntegrationChaosControl does the same with real processes.)
func TestCheckerFindsViolations(t *testing.T) {
	const lh, cg, py = "leasehold", "client-go", candidate.PythonImpl
	tests := []struct {
		name                    string
		terms                   []candidate.Term
		writes                  []Write
		pauses                  map[string][]Window
		overlaps, paused, stale int
		backwards, fenced       int
		live                    Window
		maxNoLeader             time.Duration
		blame                   map[string]int // checked when set
	}{
		{
			name: "clean handovers",
			terms: terms(ev("start", "a", lh, "10", 100), ev("stop", "a", "", "", 200),
				ev("start", "b", cg, "1", 300), ev("exited", "b", "", "", 400),
				ev("start", "c", lh, "12", 450), ev("stop", "c", "", "", 1000)),
			writes: []Write{wr("a", "10", 100, true), wr("a", "10", 190, true), wr("b", "", 300, true), wr("c", "12", 460, true)},
			live:   Window{150, 1000}, maxNoLeader: 100,
		},
		{
			name: "two leaders at once, the older one fenced",
			terms: terms(ev("start", "a", lh, "10", 100), ev("start", "b", lh, "11", 150),
				ev("stop", "a", "", "", 200), ev("stop", "b", "", "", 300)),
			writes:   []Write{wr("a", "10", 110, true), wr("b", "11", 160, true), wr("a", "10", 190, false)},
			overlaps: 1, fenced: 1, live: Window{0, 400}, maxNoLeader: 100,
		},
		{
			name: "a new term with an older token",
			terms: terms(ev("start", "a", lh, "10", 100), ev("stop", "a", "", "", 200),
				ev("start", "b", lh, "9", 300), ev("stop", "b", "", "", 400)),
			writes:    []Write{wr("a", "10", 110, true), wr("b", "9", 310, false)},
			backwards: 1, fenced: 1,
		},
		{
			name: "frozen holder, excused by its pause and fenced",
			terms: terms(ev("start", "a", lh, "10", 100), ev("start", "b", lh, "11", 500),
				ev("stop", "a", "", "", 900), ev("stop", "b", "", "", 1000)),
			writes: []Write{wr("a", "10", 110, true), wr("b", "11", 510, true), wr("a", "10", 895, false)},
			pauses: map[string][]Window{"a": {{From: 200, To: 890}}},
			paused: 1, fenced: 1,
		},
		{
			name: "frozen holder without a token: its late write is accepted",
			terms: terms(ev("start", "a", cg, "1", 100), ev("start", "b", cg, "2", 500),
				ev("stop", "a", "", "", 900), ev("stop", "b", "", "", 1000)),
			writes: []Write{wr("a", "", 110, true), wr("b", "", 510, true), wr("a", "", 895, true)},
			pauses: map[string][]Window{"a": {{From: 200, To: 890}}},
			paused: 1, stale: 1,
		},
		{
			name: "frozen Leasehold holder after a client-go takeover: unfenceable, blamed on client-go",
			terms: terms(ev("start", "a", lh, "10", 100), ev("start", "b", cg, "2", 500),
				ev("stop", "a", "", "", 900), ev("stop", "b", "", "", 1000)),
			writes: []Write{wr("a", "10", 110, true), wr("b", "", 510, true), wr("a", "10", 895, true)},
			pauses: map[string][]Window{"a": {{From: 200, To: 890}}},
			paused: 1, stale: 1, blame: map[string]int{cg: 1},
		},
		{
			name: "a Python holder outlives its term: the overlap and its stale write are blamed on Python",
			terms: terms(ev("start", "a", py, "10", 100), ev("start", "b", lh, "11", 150),
				ev("stop", "a", "", "", 200), ev("stop", "b", "", "", 300)),
			writes:   []Write{wr("b", "11", 160, true), wr("a", "10", 170, true)},
			overlaps: 1, stale: 1, blame: map[string]int{py: 2},
		},
		{
			name: "a Python term with an older token than a Go one: blamed on Python",
			terms: terms(ev("start", "a", lh, "10", 100), ev("stop", "a", "", "", 200),
				ev("start", "b", py, "9", 300), ev("stop", "b", "", "", 400)),
			writes:    []Write{wr("a", "10", 110, true), wr("b", "9", 310, false)},
			backwards: 1, fenced: 1, blame: map[string]int{py: 1},
		},
		{
			name: "frozen Python holder after a Go takeover: excused, fenced by the Go token",
			terms: terms(ev("start", "a", py, "10", 100), ev("start", "b", lh, "11", 500),
				ev("stop", "a", "", "", 900), ev("stop", "b", "", "", 1000)),
			writes: []Write{wr("a", "10", 110, true), wr("b", "11", 510, true), wr("a", "10", 895, false)},
			pauses: map[string][]Window{"a": {{From: 200, To: 890}}},
			paused: 1, fenced: 1, blame: map[string]int{},
		},
		{
			name: "frozen Python holder after a client-go takeover: unfenceable, blamed on client-go",
			terms: terms(ev("start", "a", py, "10", 100), ev("start", "b", cg, "2", 500),
				ev("stop", "a", "", "", 900), ev("stop", "b", "", "", 1000)),
			writes: []Write{wr("a", "10", 110, true), wr("b", "", 510, true), wr("a", "10", 895, true)},
			pauses: map[string][]Window{"a": {{From: 200, To: 890}}},
			paused: 1, stale: 1, blame: map[string]int{cg: 1},
		},
		{
			name: "fencing switched off: an old token's write is accepted",
			terms: terms(ev("start", "a", lh, "10", 100), ev("start", "b", lh, "11", 150),
				ev("stop", "a", "", "", 200), ev("stop", "b", "", "", 300)),
			writes:   []Write{wr("b", "11", 160, true), wr("a", "10", 170, true), wr("a", "10", 190, true)},
			overlaps: 1, stale: 2,
		},
		{
			name: "a pause of the other process excuses nothing",
			terms: terms(ev("start", "a", lh, "10", 100), ev("start", "b", lh, "11", 500),
				ev("stop", "a", "", "", 900)),
			pauses:   map[string][]Window{"b": {{From: 200, To: 890}}},
			overlaps: 1,
		},
		{
			name:     "a term never stopped overlaps the next",
			terms:    terms(ev("start", "a", cg, "1", 100), ev("start", "b", cg, "2", 500)),
			overlaps: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.terms, tt.writes, tt.pauses, 50, tt.live)
			got := []int{len(r.Overlaps), len(r.PausedOverlaps), len(r.Fence.Stale), len(r.TokensBackwards), len(r.Fence.Fenced)}
			want := []int{tt.overlaps, tt.paused, tt.stale, tt.backwards, tt.fenced}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("overlaps, paused, stale, backwards, fenced = %v, want %v\n%s", got, want, strings.Join(append(r.Violations(), r.PausedOverlaps...), "\n"))
			}
			blamed := 0
			for _, n := range r.Blame {
				blamed += n
			}
			if blamed != len(r.Violations()) {
				t.Errorf("blame %v for %d violations", r.Blame, len(r.Violations()))
			}
			if tt.blame != nil && !reflect.DeepEqual(r.Blame, tt.blame) {
				t.Errorf("blame %v, want %v", r.Blame, tt.blame)
			}
			if r.Fence.Orphans != 0 {
				t.Errorf("%d writes outside any term", r.Fence.Orphans)
			}
			if n := len(candidate.Overlaps(tt.terms)); n != len(r.Overlaps)+len(r.PausedOverlaps) {
				t.Errorf("candidate.Overlaps found %d, checker %d+%d", n, len(r.Overlaps), len(r.PausedOverlaps))
			}
			if wantV := tt.overlaps + tt.stale + tt.backwards; len(r.Violations()) != wantV {
				t.Errorf("violations = %d, want %d", len(r.Violations()), wantV)
			}
			if r.MaxNoLeader != tt.maxNoLeader {
				t.Errorf("max without leader = %v, want %v", r.MaxNoLeader, tt.maxNoLeader)
			}
		})
	}
}

// TestStoreFencing drives the HTTP store the way candidates do.
func TestStoreFencing(t *testing.T) {
	for _, fencing := range []bool{true, false} {
		s, err := NewStore(fencing)
		if err != nil {
			t.Fatal(err)
		}
		post := func(query string) int {
			resp, err := http.Post(s.URL()+"?"+query, "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		codes := []int{post("id=a&fence=7&sent=1"), post("id=b&fence=8&sent=2"), post("id=a&fence=7&sent=3"), post("id=c&sent=4"), post("id=a&fence=x&sent=5"), post("fence=9&sent=6")}
		want := []int{200, 200, 409, 200, 400, 400}
		if !fencing {
			want[2] = 200
		}
		if !reflect.DeepEqual(codes, want) {
			t.Errorf("fencing %v: status codes %v, want %v", fencing, codes, want)
		}
		ws := s.Writes()
		if len(ws) != 4 || ws[2].Accepted != !fencing || ws[3].Fence != "" || ws[2].Sent != 3 {
			t.Errorf("fencing %v: log %+v", fencing, ws)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGenerateIsReproducible(t *testing.T) {
	tm := Timing{2 * time.Second, time.Second, 250 * time.Millisecond}
	a := Generate(42, 3, time.Minute, tm)
	b := Generate(42, 3, time.Minute, tm)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different schedules:\n%s\n%s", a, b)
	}
	if c := Generate(43, 3, time.Minute, tm); reflect.DeepEqual(a.Faults, c.Faults) {
		t.Fatal("seeds 42 and 43 gave the same schedule")
	}
	var total time.Duration
	seen := map[Kind]bool{}
	for _, f := range a.Faults {
		total += f.Gap + f.Dur + f.Then
		seen[f.Kind] = true
		if (f.Kind == Partition || f.Kind == Pause) && f.Dur <= tm.LeaseDuration {
			t.Errorf("%s shorter than the lease: %v", f.Kind, f.Dur)
		}
		if f.Target < 0 || f.Target >= 3 {
			t.Errorf("target %d out of range", f.Target)
		}
	}
	if total < time.Minute {
		t.Errorf("schedule lasts %v, want at least a minute", total)
	}
	if len(seen) < 4 {
		t.Errorf("only %d kinds in a minute of faults: %v", len(seen), seen)
	}
	if only := Generate(1, 2, 10*time.Second, tm, Kill); only.Faults[0].Kind != Kill {
		t.Errorf("kinds not honoured: %s", only)
	}
}

func TestSkewAndTolerance(t *testing.T) {
	tm := Timing{3 * time.Second, 1500 * time.Millisecond, 300 * time.Millisecond}
	s := Generate(9, 3, 10*time.Second, tm)
	a, b := s.Skew(0.3), s.Skew(0.3)
	if !reflect.DeepEqual(a.Rates, b.Rates) {
		t.Fatalf("same seed and drift, different rates: %v %v", a.Rates, b.Rates)
	}
	for i, r := range a.Rates {
		if r < 0.7 || r > 1.3 {
			t.Errorf("slot %d: rate %v outside [0.7, 1.3]", i, r)
		}
	}
	if s.Skew(0).Rates != nil || s.Rate(2) != 1 {
		t.Error("no drift must mean exact clocks")
	}
	// The bound for LD 3s / RD 1.5s: fastest over slowest below 2.
	s.Rates = []float64{0.8, 1.2, 1.0}
	if ok, ratio := s.Tolerated([]int{0, 1, 2}); !ok || math.Abs(ratio-1.5) > 1e-9 {
		t.Errorf("rates 0.8..1.2: tolerated %v, ratio %v; want true, 1.5", ok, ratio)
	}
	s.Rates = []float64{0.6, 1.3, 1.0}
	if ok, _ := s.Tolerated([]int{0, 1, 2}); ok {
		t.Error("rates 0.6..1.3 (x2.17) tolerated")
	}
	// Slot 0 is client-go on the real clock: the fastest is 1.3, the
	// slowest Leasehold clock 1.0.
	if ok, ratio := s.Tolerated([]int{1, 2}); !ok || math.Abs(ratio-1.3) > 1e-9 {
		t.Errorf("Leasehold in slots 1 and 2 (1.3, 1.0): tolerated %v, ratio %v; want true, 1.3", ok, ratio)
	}
	// A Leasehold holder 30% slow ends its term 2.14s after its last
	// renewal; a client-go observer renewing every 300ms may take over 2s
	// (LD-1s) after it: beyond the mixed-fleet bound, though x1.43 < 2.
	s.Rates = []float64{0.7, 0, 1.0}
	if ok, ratio := s.Tolerated([]int{0, 2}); ok || math.Abs(ratio-1/0.7) > 1e-9 {
		t.Errorf("mixed, Leasehold at 0.7 and 1.0: tolerated %v, ratio %v; want false, 1.43", ok, ratio)
	}
	s.Timing.RetryPeriod = time.Second
	if ok, _ := s.Tolerated([]int{0, 2}); !ok {
		t.Error("mixed with RP 1s, Leasehold at 0.7 and 1.0: not tolerated")
	}
	if ok, ratio := s.Tolerated(nil); !ok || ratio != 1 {
		t.Errorf("client-go only: tolerated %v, ratio %v; want true, 1", ok, ratio)
	}
}

// TestCheckRunPerShard: the runs of a shards fleet are checked per shard:
// members running different shards at once is the point, the same shard at
// once is an overlap, and a shard's stale write is judged against that
// shard's own terms.
func TestCheckRunPerShard(t *testing.T) {
	sh := func(s int) *int { return &s }
	tm := terms(
		candidate.Event{Ev: "start", ID: "a", Impl: "shards", Token: "10", Mono: 100, Shard: sh(0)},
		candidate.Event{Ev: "start", ID: "b", Impl: "shards", Token: "11", Mono: 110, Shard: sh(1)},
		candidate.Event{Ev: "start", ID: "b", Impl: "shards", Token: "12", Mono: 150, Shard: sh(0)},
		candidate.Event{Ev: "stop", ID: "a", Impl: "shards", Mono: 200, Shard: sh(0)},
		candidate.Event{Ev: "exited", ID: "b", Impl: "shards", Mono: 300},
	)
	writes := []Write{
		{ID: "b", Fence: "12", Sent: 160, Recv: 161, Accepted: true, Shard: "0"},
		{ID: "a", Fence: "10", Sent: 170, Recv: 171, Accepted: true, Shard: "0"},
		{ID: "b", Fence: "11", Sent: 180, Recv: 181, Accepted: true, Shard: "1"},
	}
	r := CheckRun(tm, writes, nil, 0, Window{100, 300}, Window{100, 300})
	if len(r.Overlaps) != 1 || !strings.HasPrefix(r.Overlaps[0], "shard 0: ") {
		t.Errorf("overlaps %q, want one on shard 0", r.Overlaps)
	}
	if len(r.Fence.Stale) != 1 || !strings.HasPrefix(r.Fence.Stale[0], "shard 0: a's write") {
		t.Errorf("stale %q, want a's write on shard 0", r.Fence.Stale)
	}
	if r.Terms != 3 || r.Blame["shards"] != 2 {
		t.Errorf("terms %d, blame %v", r.Terms, r.Blame)
	}
}

func TestStarved(t *testing.T) {
	term := func(id string, start int64) candidate.Term {
		return candidate.Term{ID: id, Impl: "lock", Start: start, End: start + 1}
	}
	// a and b take turns; c gets one turn, then waits while a and b hold
	// five times.
	terms := []candidate.Term{term("a", 1), term("b", 3), term("c", 5), term("a", 7), term("b", 9), term("a", 11), term("b", 13), term("a", 15), term("c", 17)}
	w := Window{From: 0, To: 20}
	if got := Starved(terms, []string{"a", "b", "c"}, w, 4); len(got) != 1 || !strings.HasPrefix(got[0], "c waited while 5 terms") {
		t.Errorf("Starved = %q, want c after 5 terms of others", got)
	}
	if got := Starved(terms, []string{"a", "b", "c"}, w, 5); len(got) != 0 {
		t.Errorf("Starved with limit 5 = %q, want none", got)
	}
	if got := Starved(terms, []string{"a", "b", "c"}, Window{From: 0, To: 12}, 4); len(got) != 0 {
		t.Errorf("Starved before c's long wait = %q, want none", got)
	}
}
