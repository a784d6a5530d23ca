package chaos

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/candidate"
)

// newTestRun returns a run of one slot whose process "c0.0" was never
// started, behind a proxy to nowhere: every fault that signals the process
// fails, every fault on the proxy applies.
func newTestRun(t *testing.T) *run {
	t.Helper()
	p, err := NewProxy("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &run{
		env:   Env{Logf: t.Logf},
		sched: Schedule{Seed: 1, Candidates: 1, Timing: Timing{LeaseDuration: time.Second, RenewDeadline: 500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}},
		impl:  "leasehold", fleet: candidate.NewFleet([]string{"/nonexistent"}, nil, nil),
		proxies: []*Proxy{p}, slot: []string{"c0.0"}, slotOf: map[string]int{"c0.0": 0},
		started: map[string]bool{}, exited: map[string]bool{}, clean: map[string]bool{}, killed: map[string]bool{},
		leading: map[string]int64{}, pauses: map[string][]Window{}, gen: []int{1},
	}
}

// TestInjectCountsFailedFaults applies faults for real; those that signal a
// process that is not running fail and must be counted as failed, with
// their error, and not as injected.
func TestInjectCountsFailedFaults(t *testing.T) {
	tests := []struct {
		fault  Fault
		failed bool
	}{
		{Fault{Kind: Reset}, false},
		{Fault{Kind: RespLatency, Delay: time.Millisecond, Dur: time.Millisecond}, false},
		{Fault{Kind: Partition, Dur: time.Millisecond}, false},
		{Fault{Kind: Pause, Dur: time.Millisecond}, true},
		{Fault{Kind: Kill}, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.fault.Kind), func(t *testing.T) {
			r := newTestRun(t)
			res := newResult("leasehold", r.sched)
			if err := r.inject(t.Context(), tt.fault, res); err != nil {
				t.Fatalf("inject: %v", err)
			}
			injected, failed := res.Injected[tt.fault.Kind], len(res.Failed[tt.fault.Kind])
			if tt.failed {
				if injected != 0 || failed != 1 {
					t.Fatalf("injected %d, failed %v; want the fault failed, not injected", injected, res.Failed)
				}
				if msg := res.Failed[tt.fault.Kind][0]; !strings.Contains(msg, "not started") || !strings.Contains(msg, string(tt.fault.Kind)) {
					t.Errorf("failure %q does not say which fault failed and why", msg)
				}
			} else if injected != 1 || failed != 0 {
				t.Fatalf("injected %d, failed %v; want the fault injected", injected, res.Failed)
			}
			if len(r.pauses["c0.0"]) != 0 {
				t.Errorf("pause windows %v recorded for a process that never froze", r.pauses["c0.0"])
			}
		})
	}
}

// TestInjectStopsOnContext: a fault cut short by the end of the run is
// neither injected nor failed; the run ends with ctx's error.
func TestInjectStopsOnContext(t *testing.T) {
	r := newTestRun(t)
	res := newResult("leasehold", r.sched)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.inject(ctx, Fault{Kind: Partition, Dur: time.Hour}, res); err == nil {
		t.Fatal("inject with a done context returned nil")
	}
	if len(res.Injected)+len(res.Failed) != 0 {
		t.Errorf("injected %v, failed %v; want neither", res.Injected, res.Failed)
	}
}

// TestExitsJudged: a process must log its exit before it ends, unless a
// Kill fault killed it; otherwise it crashed (an error) or, once the fleet
// was told to stop, did not stop cleanly (left over). A process whose end
// was never seen is left over too.
func TestExitsJudged(t *testing.T) {
	r := newTestRun(t)
	for _, id := range []string{"clean", "killed", "crashed", "failed", "leftover", "never"} {
		r.started[id] = true
	}
	r.killed["killed"] = true
	for _, ev := range []candidate.Event{
		{Ev: "exit", ID: "clean"}, {Ev: "exited", ID: "clean"},
		{Ev: "exited", ID: "killed"},
		{Ev: "exited", ID: "crashed"},
		{Ev: "exit", ID: "failed", Err: "boom"}, {Ev: "exited", ID: "failed"},
	} {
		r.add(ev)
	}
	r.stopping = true
	r.add(candidate.Event{Ev: "exited", ID: "leftover"})
	errs, leftover := r.problems()
	wantErrs := []string{"crashed exited without logging why (crashed?)", "failed exited: boom"}
	if !reflect.DeepEqual(errs, wantErrs) {
		t.Errorf("errors %q, want %q", errs, wantErrs)
	}
	wantLeft := []string{"leftover did not stop cleanly within 15s of SIGTERM", "never: its exit was never seen"}
	if !reflect.DeepEqual(leftover, wantLeft) {
		t.Errorf("left over %q, want %q", leftover, wantLeft)
	}
}

// TestPythonMembersAreLeaseholdMembers: the slots of a fleet, and which of
// them get a skewed clock and count towards the clock-rate bound. Python
// members run on an injectable clock like Go Leasehold members; client-go
// members do not.
func TestPythonMembersAreLeaseholdMembers(t *testing.T) {
	tests := []struct {
		impl  string
		slots []string
	}{
		{"leasehold", []string{"leasehold", "leasehold", "leasehold"}},
		{"mixed", []string{"leasehold", "client-go", "leasehold"}},
		{"python", []string{"python", "python", "python"}},
		{"mixed-python", []string{"python", "leasehold", "client-go"}},
	}
	tm := Timing{LeaseDuration: 3 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 300 * time.Millisecond}
	for _, tt := range tests {
		t.Run(tt.impl, func(t *testing.T) {
			var got []string
			for i := range 3 {
				got = append(got, implOf(tt.impl, i))
			}
			if !reflect.DeepEqual(got, tt.slots) {
				t.Fatalf("slots %v, want %v", got, tt.slots)
			}
			if want := slices.Contains(got, "python"); hasPython(tt.impl, 3) != want {
				t.Errorf("hasPython = %v, want %v", !want, want)
			}
			// Slot 0 runs 40% slow, the others exact: RD 1.5s on the slow
			// clock is 2.5s of real time, within LD 3s but not within
			// LD-1s, which a client-go observer counts in a mixed fleet.
			sched := Schedule{Seed: 1, Candidates: 3, Timing: tm, Rates: []float64{0.6, 1, 1}}
			res := newResult(tt.impl, sched)
			skewed := 0
			if got[0] != "client-go" {
				skewed = 1
			}
			if res.Injected[ClockRate] != skewed {
				t.Errorf("skewed clocks counted %d, want %d", res.Injected[ClockRate], skewed)
			}
			wantOK := !slices.Contains(got, "client-go")
			if res.Tolerated != wantOK {
				t.Errorf("tolerated = %v (ratio %.2f), want %v", res.Tolerated, res.RateRatio, wantOK)
			}
		})
	}
}

// TestPythonFleetNeedsItsCommand: a fleet with Python members does not run
// without the command that starts them.
func TestPythonFleetNeedsItsCommand(t *testing.T) {
	for _, impl := range []string{"python", "mixed-python"} {
		_, err := Run(t.Context(), Env{}, impl, Schedule{Seed: 1, Candidates: 3})
		if err == nil || !strings.Contains(err.Error(), "Env.Python") {
			t.Errorf("%s without Env.Python: error %v, want one naming Env.Python", impl, err)
		}
	}
}
