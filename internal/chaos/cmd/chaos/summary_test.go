package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/leasehold/leasehold/internal/candidate"
	"github.com/leasehold/leasehold/internal/chaos"
)

// clean returns the result of a schedule that ran, applied its faults and
// found nothing wrong.
func clean(seed uint64, impl string) *chaos.Result {
	return &chaos.Result{
		Seed: seed, Impl: impl, Tolerated: true, RateRatio: 1,
		Injected: map[chaos.Kind]int{chaos.Kill: 1, chaos.Pause: 1}, Failed: map[chaos.Kind][]string{},
		Report: chaos.Report{Terms: 4, Blame: map[string]int{}, Fence: chaos.FenceResult{Writes: 40, Accepted: 40, StaleBy: map[string]int{}}},
	}
}

// with returns clean(seed, impl) changed by f.
func with(seed uint64, impl string, f func(*chaos.Result)) *chaos.Result {
	r := clean(seed, impl)
	f(r)
	return r
}

// cell returns the value in column of the row of fleet in a table whose
// first row holds the column names.
func cell(t *testing.T, rows [][]string, fleet, column string) string {
	t.Helper()
	c := slices.Index(rows[0], column)
	if c < 0 {
		t.Fatalf("no column %q in %q", column, rows[0])
	}
	for _, r := range rows[1:] {
		if r[0] == fleet {
			return r[c]
		}
	}
	t.Fatalf("no row %q", fleet)
	return ""
}

// TestVerdict feeds outcomes to a tally and checks the exit status, its
// reason, and that the problem shows in its table column and in the seeds
// listed below the table.
func TestVerdict(t *testing.T) {
	type want struct {
		table, column, value string // table: within, beyond, faults or control
	}
	tests := []struct {
		name                  string
		outcomes              []outcome
		perFleet              int
		noDeadline, noFencing bool
		code                  int
		why                   string // the reason for exit status 1
		below                 string // a line printed below the tables
		cells                 []want // in the leasehold row
	}{
		{
			name:     "clean runs pass",
			outcomes: []outcome{{clean(1, "leasehold"), nil}, {clean(2, "leasehold"), nil}},
			perFleet: 2,
			cells:    []want{{"within", "schedules", "2"}, {"within", "failed-runs", "0"}, {"faults", "kill", "2"}, {"faults", "failed-faults", "0"}},
		},
		{
			name: "a run that ended with an error counts and fails",
			outcomes: []outcome{{clean(1, "leasehold"), nil},
				{&chaos.Result{Seed: 2, Impl: "leasehold", Tolerated: true}, errors.New("chaos: no first leader: timed out")}},
			perFleet: 2, code: 1,
			why:   "leasehold: runs that failed: 1 (seeds 2)",
			below: "leasehold: runs that failed: 1, seeds 2",
			cells: []want{{"within", "schedules", "2"}, {"within", "failed-runs", "1"}, {"within", "empty-runs", "0"}},
		},
		{
			name:     "harness errors fail",
			outcomes: []outcome{{with(3, "leasehold", func(r *chaos.Result) { r.Errors = []string{"c1.0 exited: boom"} }), nil}},
			perFleet: 1, code: 1,
			why:   "leasehold: harness errors: 1 (seeds 3)",
			below: "leasehold: harness errors: 1, seeds 3",
			cells: []want{{"within", "errors", "1"}},
		},
		{
			name: "a process left over fails",
			outcomes: []outcome{{with(4, "leasehold", func(r *chaos.Result) {
				r.Leftover = []string{"c0.1 did not stop cleanly within 15s of SIGTERM"}
			}), nil}},
			perFleet: 1, code: 1,
			why:   "leasehold: processes left over: 1 (seeds 4)",
			below: "leasehold: processes left over: 1, seeds 4",
			cells: []want{{"within", "orphans", "1"}},
		},
		{
			name:     "writes outside every term fail",
			outcomes: []outcome{{with(5, "leasehold", func(r *chaos.Result) { r.Fence.Orphans = 2 }), nil}},
			perFleet: 1, code: 1,
			why:   "leasehold: writes outside every term (orphan writes): 2 (seeds 5)",
			cells: []want{{"within", "orphan-writes", "2"}},
		},
		{
			name:     "a run with no term fails",
			outcomes: []outcome{{with(6, "leasehold", func(r *chaos.Result) { r.Terms = 0 }), nil}},
			perFleet: 1, code: 1,
			why:   "leasehold: runs with no term or no accepted write: 1 (seeds 6)",
			below: "leasehold: runs with no term or no accepted write: 1, seeds 6",
			cells: []want{{"within", "empty-runs", "1"}},
		},
		{
			name:     "a run with no accepted write fails",
			outcomes: []outcome{{with(7, "leasehold", func(r *chaos.Result) { r.Fence.Accepted = 0 }), nil}},
			perFleet: 1, code: 1,
			why:   "leasehold: runs with no term or no accepted write: 1 (seeds 7)",
			cells: []want{{"within", "empty-runs", "1"}},
		},
		{
			name: "a fault that failed to apply counts as failed, not injected",
			outcomes: []outcome{{with(8, "leasehold", func(r *chaos.Result) {
				r.Injected = map[chaos.Kind]int{chaos.Pause: 1}
				r.Failed[chaos.Kill] = []string{"+1s kill leader for 1s: candidate c0.0: not started"}
			}), nil}},
			perFleet: 1, code: 1,
			why:   "leasehold: kill faults that failed to apply: 1 (seeds 8)",
			below: "leasehold: kill faults that failed to apply: 1, seeds 8",
			cells: []want{{"faults", "kill", "0"}, {"faults", "pause", "1"}, {"faults", "failed-faults", "1"}},
		},
		{
			name:     "a schedule that did not run fails",
			outcomes: []outcome{{clean(1, "leasehold"), nil}},
			perFleet: 2, code: 1,
			why: "leasehold: 1 of 2 schedules did not run",
		},
		{
			name: "Leasehold breaking safety within the bound fails",
			outcomes: []outcome{{with(9, "leasehold", func(r *chaos.Result) {
				r.Overlaps, r.Blame = []string{"c0.0 led until 5, but c1.0 started at 4"}, map[string]int{"leasehold": 1}
			}), nil}},
			perFleet: 1, code: 1,
			why:   "leasehold: Leasehold members broke safety within the clock-rate bound (seeds 9)",
			cells: []want{{"within", "seeds-leasehold-broke", "9"}},
		},
		{
			name: "Python members breaking safety within the bound fail",
			outcomes: []outcome{{with(14, "leasehold", func(r *chaos.Result) {
				r.Fence.Stale, r.Blame = []string{"c0.1's write accepted after c1.0 had written"}, map[string]int{candidate.PythonImpl: 1}
			}), nil}},
			perFleet: 1, code: 1,
			why:   "leasehold: Python Leasehold members broke safety within the clock-rate bound (seeds 14)",
			cells: []want{{"within", "by-python", "1"}, {"within", "seeds-python-broke", "14"}, {"within", "by-leasehold", "0"}},
		},
		{
			name: "client-go breaking safety next to Python members passes",
			outcomes: []outcome{{with(15, "leasehold", func(r *chaos.Result) {
				r.Overlaps, r.Blame = []string{"overlap"}, map[string]int{"client-go": 1}
			}), nil}},
			perFleet: 1,
			cells:    []want{{"within", "by-client-go", "1"}, {"within", "by-python", "0"}, {"within", "seeds-python-broke", "-"}},
		},
		{
			name: "a control run with violations by Python members passes",
			outcomes: []outcome{{with(16, "leasehold", func(r *chaos.Result) {
				r.Overlaps, r.Blame = []string{"overlap"}, map[string]int{candidate.PythonImpl: 1}
			}), nil}},
			perFleet: 1, noDeadline: true,
			cells: []want{{"control", "verdict", "shown"}, {"control", "violations-by-leasehold", "1"}},
		},
		{
			name: "Leasehold overlapping beyond the clock-rate bound passes",
			outcomes: []outcome{{with(10, "leasehold", func(r *chaos.Result) {
				r.Tolerated, r.Overlaps, r.Blame = false, []string{"overlap"}, map[string]int{"leasehold": 1}
			}), nil}},
			perFleet: 1,
			cells:    []want{{"beyond", "overlaps", "1"}, {"within", "schedules", "0"}},
		},
		{
			name: "a control run with no violation fails",
			outcomes: []outcome{{clean(11, "leasehold"), nil},
				{with(11, "client-go", func(r *chaos.Result) { r.Blame = map[string]int{"client-go": 1} }), nil}},
			perFleet: 1, noDeadline: true, code: 1,
			why:   "leasehold: control run found no violation by Leasehold members",
			cells: []want{{"control", "verdict", "MISSED"}},
		},
		{
			name: "a control run with Leasehold violations passes",
			outcomes: []outcome{{with(12, "leasehold", func(r *chaos.Result) {
				r.Overlaps, r.Blame = []string{"overlap"}, map[string]int{"leasehold": 1}
			}), nil}, {clean(12, "lock"), nil}},
			perFleet: 1, noDeadline: true,
			cells: []want{{"control", "verdict", "shown"}},
		},
		{
			name: "a control run still fails on harness problems",
			outcomes: []outcome{{with(13, "leasehold", func(r *chaos.Result) {
				r.Blame, r.Fence.Stale, r.Leftover = map[string]int{"leasehold": 1}, []string{"stale"}, []string{"c0.0: its exit was never seen"}
			}), nil}},
			perFleet: 1, noFencing: true, code: 1,
			why:   "leasehold: processes left over: 1 (seeds 13)",
			cells: []want{{"control", "verdict", "shown"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			order := []string{"leasehold", "client-go", "lock"}
			tl := newTally(order, tt.perFleet, tt.noDeadline, tt.noFencing)
			for _, impl := range order[1:] { // the other fleets passed
				if slices.ContainsFunc(tt.outcomes, func(o outcome) bool { return o.res.Impl == impl }) {
					continue
				}
				for i := range tt.perFleet {
					r := clean(uint64(100+i), impl)
					if controlApplies(impl, tt.noDeadline, tt.noFencing) {
						r.Blame[impl] = 1
					}
					tl.add(outcome{r, nil})
				}
			}
			for _, o := range tt.outcomes {
				tl.add(o)
			}
			code, why := tl.verdict()
			if code != tt.code {
				t.Errorf("exit status %d, want %d; reasons %q", code, tt.code, why)
			}
			if want := []string{tt.why}; tt.code != 0 && !slices.Equal(why, want) {
				t.Errorf("reasons %q, want %q", why, want)
			}
			if tt.code == 0 && len(why) > 0 {
				t.Errorf("exit status 0 with reasons %q", why)
			}
			var out bytes.Buffer
			tl.print(&out)
			if got := tl.printVerdict(&out); got != code {
				t.Errorf("printVerdict returned %d, verdict %d", got, code)
			}
			if tt.below != "" && !strings.Contains(out.String(), "\n  "+tt.below+"\n") {
				t.Errorf("no line %q below the tables:\n%s", tt.below, out.String())
			}
			for _, w := range tt.cells {
				var rows [][]string
				switch w.table {
				case "within", "beyond":
					s := &tl.fleets["leasehold"].within
					if w.table == "beyond" {
						s = &tl.fleets["leasehold"].beyond
					}
					rows = [][]string{resultColumns, s.row("leasehold")}
				case "faults":
					rows = [][]string{faultColumns(), tl.fleets["leasehold"].faultRow("leasehold")}
				case "control":
					rows = [][]string{controlColumns, tl.controlRow("leasehold")}
				}
				if got := cell(t, rows, "leasehold", w.column); got != w.value {
					t.Errorf("%s table, column %s: %q, want %q", w.table, w.column, got, w.value)
				}
			}
		})
	}
}

// TestTablesKeepTheirColumns: the columns scripts read stay where they were;
// new ones go at the end.
func TestTablesKeepTheirColumns(t *testing.T) {
	old := []string{"fleet", "schedules", "terms", "overlaps", "paused-overlaps", "writes", "fenced-writes", "stale-writes",
		"of-them-unfenceable", "tokens-back", "by-leasehold", "by-client-go", "errors", "max-no-leader-after-heal", "max-no-leader-run",
		"seeds-leasehold-broke", "seeds-client-go-broke"}
	if !slices.Equal(resultColumns[:len(old)], old) {
		t.Errorf("results columns %q, want them to start with %q", resultColumns, old)
	}
	if s := (&summary{}).row("x"); len(s) != len(resultColumns) {
		t.Errorf("a row has %d cells for %d columns", len(s), len(resultColumns))
	}
	if f := newTally([]string{"x"}, 1, false, false).fleets["x"].faultRow("x"); len(f) != len(faultColumns()) {
		t.Errorf("a faults row has %d cells for %d columns", len(f), len(faultColumns()))
	}
}

// TestControlApplies: -no-deadline switches off the deadline of Leasehold
// electors (Go and Python) only; -no-fencing protects every Leasehold
// member; client-go has neither.
func TestControlApplies(t *testing.T) {
	for _, tt := range []struct {
		impl                  string
		noDeadline, noFencing bool
		want                  bool
	}{
		{"leasehold", true, false, true}, {"mixed", true, false, true}, {"lock", true, false, false}, {"client-go", true, false, false},
		{"leasehold", false, true, true}, {"mixed", false, true, true}, {"lock", false, true, true}, {"client-go", false, true, false},
		{"leasehold", false, false, false},
		{"python", true, false, true}, {"mixed-python", true, false, true}, {"python", false, true, true}, {"mixed-python", false, true, true},
		{"python", false, false, false},
	} {
		if got := controlApplies(tt.impl, tt.noDeadline, tt.noFencing); got != tt.want {
			t.Errorf("controlApplies(%s, no deadline %v, no fencing %v) = %v, want %v", tt.impl, tt.noDeadline, tt.noFencing, got, tt.want)
		}
	}
}
